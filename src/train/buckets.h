/* Aspect-ratio buckets as kohya makes them (library/model_util.py make_bucket_resolutions;
 * library/train_util.py BucketManager and BaseDataset.adjust_min_max_bucket_reso_by_steps).
 * Sizes are (width, height) as in kohya. */
#ifndef SDTI_TRAIN_BUCKETS_H
#define SDTI_TRAIN_BUCKETS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

typedef struct BucketReso {
    int width, height;
} BucketReso;

/* make_bucket_resolutions: the square of the area of max_reso floored to `divisible`, plus
 * for each width from min_size to max_size in steps the largest height within the area (and
 * its transpose), sorted by (width, height). malloc'd array in *out. */
int bucket_make_resolutions(BucketReso max_reso, int min_size, int max_size, int divisible,
                            BucketReso **out, size_t *count, Error *err);

/* BaseDataset.adjust_min_max_bucket_reso_by_steps: min floored / max raised to a multiple of
 * steps (a warning is logged), then the checks that the resolution lies within them. */
int bucket_adjust_min_max(BucketReso resolution, int *min_reso, int *max_reso, int steps,
                          Error *err);

typedef struct BucketManager {
    bool no_upscale;
    BucketReso max_reso;
    int min_size, max_size, reso_steps;
    BucketReso *predefined; /* the candidate resolutions (sorted), or NULL with no_upscale */
    double *predefined_ar;
    size_t predefined_count;
} BucketManager;

/* BucketManager(no_upscale, max_reso, min_size, max_size, reso_steps) + make_buckets()
 * (the predefined list is only made without no_upscale, as kohya does). */
int bucket_manager_init(BucketManager *m, bool no_upscale, BucketReso max_reso, int min_size,
                        int max_size, int reso_steps, Error *err);
/* Without buckets, kohya uses one fixed bucket of the resolution. */
int bucket_manager_init_single(BucketManager *m, BucketReso resolution, Error *err);
void bucket_manager_free(BucketManager *m);

/* select_bucket: the bucket for an image of w x h, the size to resize it to before the crop,
 * and the aspect-ratio error. Fails (naming the size) when the result would be empty. */
int bucket_select(const BucketManager *m, int image_w, int image_h, BucketReso *bucket,
                  BucketReso *resized, double *ar_error, Error *err);

/* BucketManager.get_crop_ltrb: the crop (left, top, right, bottom) recorded with latents,
 * in float as kohya's Python computes it. */
void bucket_crop_ltrb(BucketReso bucket, int image_w, int image_h, double ltrb[4]);

#endif
