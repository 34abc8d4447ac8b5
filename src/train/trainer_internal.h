/* Shared between trainer.c (setup and loop), trainer_step.c (one micro-batch) and
 * trainer_save.c (saving, progress). */
#ifndef SDTI_TRAIN_TRAINER_INTERNAL_H
#define SDTI_TRAIN_TRAINER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/phase_timer.h"
#include "base/rng_torch.h"
#include "cli/train_options.h"
#include "models/clip_text.h"
#include "models/model_files.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/vae_file.h"
#include "nn/nn_context.h"
#include "text/ti_tokens.h"
#include "text/tokenizer.h"
#include "train/captions.h"
#include "train/dataset.h"
#include "train/loss.h"
#include "train/lr_scheduler.h"
#include "train/noise_schedule.h"
#include "train/optimizer.h"
#include "train/py_random.h"

/* The summed gradient of every token row the micro-batches since the last optimizer step
 * used (kohya's embedding-matrix gradient, its zero rows left out). */
typedef struct RowGradAcc {
    int count, cap, width;
    int32_t *ids;
    float *rows; /* [count, width] */
} RowGradAcc;

/* Latents of one image, cached (kohya's cache_latents): the plain and, with flip_aug, the
 * mirrored image's. */
typedef struct CachedLatents {
    float *latents, *flipped;
    float *alpha_mask; /* alpha_mask subsets: the unflipped mask at bucket size, else NULL */
} CachedLatents;

typedef struct Trainer {
    const TrainOptions *o;
    const LrSchedulerSettings *lr; /* max_train_steps replaced by the run's */
    NnContext *ctx;
    ModelFiles mf;
    bool mf_open;
    Tokenizer *tok;
    TiTokens ti;
    bool ti_made;
    DType storage; /* --mixed_precision weight storage */
    ClipText clip;
    bool clip_bound;
    Unet *unet;
    Vae vae;
    bool vae_loaded;
    VaeFile vae_file; /* --vae: the separate VAE's weights, which `vae` binds */
    bool vae_file_open;
    DatasetGroupConfig group;
    Dataset *datasets;
    size_t dataset_count;
    CachedLatents **cache; /* [dataset][image] or NULL without caching */
    CaptionTiReplacements repl;
    bool repl_made;
    int chunks; /* --max_token_length: 77-token rows per caption */
    int width;  /* text encoder width */
    int n_vec;
    float *rows; /* [n_vec, width]: the trained rows */
    /* The matrix the optimizer steps: the new rows alone (elementwise optimizers: the other
     * rows' updates are undone by kohya's restore, so they are never made), or, for
     * Adafactor, whose factored second moment mixes every row, kohya's whole embedding matrix
     * [vocab + n_vec, width] (full), restored from orig after every step. */
    int64_t param_rows, first_param_id;
    float *full, *orig;
    NoiseSchedule schedule;
    TorchGenerator g; /* torch's global generator */
    PyRandom py;      /* Python's global `random` */
    Optimizer opt;
    bool opt_made;
    LrScheduler sched;
    RowGradAcc acc;
    /* per-shape state, remade when the batch shape changes */
    ClipTextRun run;
    bool run_made;
    UnetArena *arena;
    int64_t max_train_steps;
    int64_t global_step;
    /* kohya's token warm-up step as the dataset sees it: the collator copies the shared
     * current_step value into the dataset after each batch is loaded, and the loop body sets
     * that value to global_step afterwards, so captions see the step with a lag */
    int64_t dataset_step, shared_step;
    int epoch; /* 0-based */
    int epochs;
    int64_t *perm;     /* the current epoch's batch order [perm_total] (for --save_state) */
    size_t perm_total; /* batches per epoch */
    const char *output_name;
    char last_saved[4096];
    struct TrainerReplay *replay; /* --replay (trainer_replay.h), else NULL */
    struct TrainerSample *sample; /* --sample_prompts (trainer_sample.h), else NULL */
    PhaseTimer prof;              /* SDTI_PROFILE: the step's time per phase */
} Trainer;

/* trainer_step.c */
void row_grad_acc_free(RowGradAcc *a);
int row_grad_acc_add(RowGradAcc *a, const ClipRowGrads *g, Error *err);
/* Caches every image's latents (memory, and kohya's .npz with --cache_latents_to_disk). */
int trainer_cache_latents(Trainer *t, Error *err);
/* One micro-batch: forward, loss, backward into t->acc. *loss gets the batch loss. */
int trainer_micro_step(Trainer *t, size_t dataset, size_t batch, float grad_scale, float *loss,
                       Error *err);

/* trainer_dist.c: data parallel over the ranks of dist.h (no-ops with one rank). A global
 * batch of `count` samples: this rank takes [first, first + share) (balanced; maybe none). */
void trainer_dist_share(int count, int *first, int *share);
/* After every micro-batch on every rank: agrees on errors, sums the ranks' losses. */
int trainer_dist_after_micro_step(Trainer *t, int rc, float *loss, Error *err);
/* Before every optimizer step: t->acc becomes the sum of every rank's rows. */
int trainer_dist_combine_grads(Trainer *t, Error *err);
/* trainer_cache_latents on rank 0, its latents and generator state copied to every rank. */
int trainer_dist_cache_latents(Trainer *t, Error *err);
/* Threads per rank: --num_cpu_threads_per_process, else the cores / the ranks on this machine;
 * warns when they oversubscribe the machine. */
int trainer_dist_threads(int requested);

/* trainer_debug.c: prints every sample of the first epoch (caption, token ids, bucket,
 * repeats) */
int trainer_debug_dataset(Trainer *t, Error *err);

/* trainer_save.c */
/* Writes the current rows as <output_dir>/<name><ext> (the writers are atomic). */
int trainer_save(Trainer *t, const char *name, Error *err);
/* kohya's names: "<output_name>-<epoch:06d>", "<output_name>-step<step:08d>"; then the file
 * --save_last_n_epochs / --save_last_n_steps no longer keep is removed. */
int trainer_save_epoch(Trainer *t, int epoch_number, int save_every_n_epochs, Error *err);
int trainer_save_step(Trainer *t, Error *err);

/* trainer_state.c: --save_state / --resume. A state is the position before batch `position`
 * of epoch `epoch` (0-based; position 0: the epoch has not started, its order is drawn anew). */
int trainer_state_save(Trainer *t, const char *name, int epoch, size_t position, Error *err);
/* kohya's folder names and removals (--save_last_n_*_state, else --save_last_n_*). */
int trainer_state_save_step(Trainer *t, size_t position, Error *err);
int trainer_state_save_epoch(Trainer *t, int epoch_number, int save_every_n_epochs, Error *err);
int trainer_state_save_end(Trainer *t, int epoch, size_t position, Error *err);
/* Restores rows, optimizer, step counters, RNGs and the datasets' orders from `dir` (after
 * setup, latent caching included); the epoch order goes to perm[total] when position > 0. */
int trainer_state_load(Trainer *t, const char *dir, int64_t *perm, size_t total, int *epoch,
                       size_t *position, Error *err);

typedef struct Progress {
    double start, last_print;
    int64_t start_step; /* global_step when the run (or the resumed run) started */
    double loss_sum;
    int64_t loss_count;
    bool tty;
} Progress;
void progress_init(Progress *p);
/* The caller adds each micro-batch's loss to loss_sum / loss_count (reset every epoch). */
void progress_update(Progress *p, const Trainer *t, bool final);

#endif
