/* A training dataset as kohya builds one from its configuration (library/train_util.py:
 * DreamBoothDataset / FineTuningDataset.__init__, BaseDataset.make_buckets, shuffle_buckets,
 * __getitem__):
 *   - images: each subset's folder (non-recursive, kohya's extensions, sorted), or the
 *     fine-tuning metadata .json / .jsonl; captions from caption files, class tokens or
 *     metadata; sizes from the image headers;
 *   - regularisation balancing: reg images are repeated round-robin until they match the
 *     train images (with repeats), each with loss weight prior_loss_weight;
 *   - buckets: every image (times its repeats) in its aspect-ratio bucket, batches of
 *     batch_size within a bucket; the batch order and the buckets are shuffled with Python's
 *     random seeded with seed + epoch, as kohya does (the first shuffle, at build time, uses
 *     seed 0: kohya shuffles before set_seed);
 *   - a sample: the image loaded, resized and cropped to its bucket, flipped (flip_aug),
 *     colour-augmented (color_aug), as a [-1, 1] CHW tensor, and its caption processed;
 *     the random draws follow kohya's order per image: flip, crop, colour, caption.
 * kohya's data loader also draws from torch (the DataLoader's shuffle of the batch list);
 * that order belongs to the trainer. */
#ifndef SDTI_TRAIN_DATASET_H
#define SDTI_TRAIN_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "train/buckets.h"
#include "train/captions.h"
#include "train/dataset_config.h"
#include "train/py_random.h"

typedef struct DatasetImage {
    char *path;    /* the file to load */
    char *caption; /* raw: caption file, class tokens, or metadata caption + tags */
    size_t subset; /* index into config->subsets */
    bool is_reg;
    int num_repeats;
    int width, height; /* original size */
    BucketReso bucket, resized;
    char *cond_path; /* ControlNet-style datasets: the conditioning (mask) image, else NULL */
} DatasetImage;

typedef struct BucketBatch {
    size_t bucket, batch_index;
} BucketBatch;

typedef struct Dataset {
    const DatasetConfig *config; /* borrowed: outlives the dataset */
    DatasetImage *images;        /* kohya's image_data order */
    size_t image_count;
    int64_t num_train_images, num_reg_images; /* with repeats */
    BucketManager manager;
    BucketReso *bucket_resos; /* sorted by (width, height) with buckets enabled */
    size_t **bucket_items;    /* image indices, each repeated num_repeats times */
    size_t *bucket_len;
    size_t bucket_count;
    BucketBatch *batches;
    size_t batch_count;
    int64_t seed;
    int current_epoch;
    double mean_ar_error;
} Dataset;

/* Scans images and captions, balances reg images, reads sizes, assigns buckets, builds the
 * batch list and shuffles it as kohya's make_buckets does (random.seed(0), in `rng`).
 * Errors name the image, caption file or metadata file. */
int dataset_build(const DatasetConfig *config, PyRandom *rng, Dataset *out, Error *err);
void dataset_free(Dataset *ds);

/* set_seed after building (kohya: random.randint(0, 2**31) drawn once for every dataset). */
void dataset_set_seed(Dataset *ds, int64_t seed);
/* set_current_epoch: one reshuffle (random.seed(seed + epoch)) per epoch step forward. */
void dataset_set_epoch(Dataset *ds, int epoch, PyRandom *rng);

/* The images of batch `b` (indices into images); returns the count (<= batch_size). */
size_t dataset_batch_images(const Dataset *ds, size_t b, const size_t **indices);

typedef struct DatasetSample {
    float *pixels; /* 3 x bucket.height x bucket.width in [-1, 1], or NULL (load_pixels off) */
    int width, height;
    bool flipped;
    float loss_weight; /* prior_loss_weight for reg images, else 1 */
    double crop_ltrb[4];
    float *alpha_mask; /* height x width in [0, 1] with the subset's alpha_mask, else NULL */
    char *caption;     /* processed */
} DatasetSample;

/* One image of a batch, as __getitem__ prepares it. With load_pixels false (latents are
 * cached) the flip is still drawn and the caption processed, as kohya does. */
int dataset_load_sample(const Dataset *ds, size_t image_index, bool load_pixels,
                        const CaptionReplacement *repl, size_t repl_count, const CaptionStep *step,
                        PyRandom *rng, DatasetSample *out, Error *err);
void dataset_sample_free(DatasetSample *s);

/* The pixels kohya encodes when caching latents (load_images_and_masks_for_caching): the image
 * resized and center-cropped to its bucket, no random draws; `flipped` mirrors it (the
 * latents_flipped of flip_aug). out: 3 x bucket.height x bucket.width floats; alpha_mask
 * (may be NULL) gets bucket.height x bucket.width values when the subset has alpha_mask. */
int dataset_load_for_cache(const Dataset *ds, size_t image_index, bool flipped, float *out,
                           float *alpha_mask, Error *err);

/* kohya's is_latent_cacheable: caching needs no color_aug and no random_crop in any subset
 * (the same message as kohya's assert otherwise). */
int dataset_check_latents_cacheable(const Dataset *ds, Error *err);

/* Before training: the token string must occur in the captions of the training (not reg)
 * images. None at all is an error
 * (training would learn nothing); some without it is a warning with a count and examples.
 * Skipped when templates replace the captions. */
int dataset_check_token_string(const Dataset *datasets, size_t count, const char *token_string,
                               Error *err);

#endif
