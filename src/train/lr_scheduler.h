/* Learning-rate schedules as kohya's train_util.get_scheduler_fix builds them from
 * transformers' schedule functions (LambdaLR: lr = base_lr * lambda(step), in double), and
 * kohya's step counting: the scheduler steps once per optimizer step (accelerate skips it on
 * micro-steps that only accumulate gradients), its total is --max_train_steps (optimizer
 * steps), --lr_warmup_steps below 1 (a float) is a ratio of that total, truncated. */
#ifndef SDTI_TRAIN_LR_SCHEDULER_H
#define SDTI_TRAIN_LR_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

typedef enum LrSchedulerKind {
    LR_CONSTANT,
    LR_CONSTANT_WITH_WARMUP,
    LR_LINEAR,
    LR_COSINE,
    LR_COSINE_WITH_RESTARTS,
    LR_POLYNOMIAL,
    LR_COSINE_WITH_MIN_LR,
    LR_INVERSE_SQRT,
    LR_ADAFACTOR, /* transformers' AdafactorSchedule: Adafactor computes its own rate */
} LrSchedulerKind;

/* kohya's int_or_float option value (--lr_warmup_steps, --lr_decay_steps): an integer count,
 * or a ratio of the total steps. */
typedef struct StepsOrRatio {
    bool is_ratio;
    double value; /* steps when !is_ratio (a whole number) */
} StepsOrRatio;

/* kohya's int_or_float: "10%" -> ratio 0.1; a number below 1 -> ratio; otherwise it must be an
 * integer ("1.5" is an error, as int("1.5") is in Python). */
int steps_or_ratio_parse(const char *text, const char *option, StepsOrRatio *out, Error *err);

typedef struct LrSchedulerSettings {
    const char *name;           /* --lr_scheduler, default "constant" */
    const char *scheduler_type; /* --lr_scheduler_type: a custom class; "" or NULL: none */
    double learning_rate;
    StepsOrRatio warmup; /* --lr_warmup_steps */
    int64_t max_train_steps;
    int64_t num_cycles; /* --lr_scheduler_num_cycles, default 1 */
    double power;       /* --lr_scheduler_power, default 1 */
    bool has_timescale;
    int64_t timescale; /* --lr_scheduler_timescale */
    bool has_min_lr_ratio;
    double min_lr_ratio;     /* --lr_scheduler_min_lr_ratio */
    const char *const *args; /* --lr_scheduler_args key=value */
    int arg_count;
    bool adafactor_relative_step; /* the optimizer is Adafactor with relative_step: kohya then
                                     replaces the scheduler with "adafactor:<lr>" */
} LrSchedulerSettings;

typedef struct LrScheduler {
    LrSchedulerKind kind;
    double base_lr;
    int64_t warmup_steps;
    int64_t training_steps;
    double num_cycles; /* restarts: kohya's integer; cosine 0.5; cosine_with_min_lr n / 2 */
    double power;
    double lr_end; /* polynomial, default 1e-7 (--lr_scheduler_args lr_end=...) */
    double min_lr_rate;
    double timescale;
} LrScheduler;

int lr_scheduler_resolve(LrScheduler *s, const LrSchedulerSettings *settings, Error *err);
const char *lr_scheduler_kind_name(LrSchedulerKind kind);

/* The learning rate of optimizer step `step` (0 for the first step): lambda(step) * base. */
double lr_scheduler_lr(const LrScheduler *s, int64_t step);

/* kohya's epoch arithmetic with gradient accumulation: optimizer steps per epoch =
 * ceil(batches / accumulation); epochs = ceil(max_train_steps / that). */
int64_t lr_steps_per_epoch(int64_t batches_per_epoch, int64_t gradient_accumulation_steps);
int64_t lr_epochs_for(int64_t max_train_steps, int64_t steps_per_epoch);
/* Whether micro-step `batch_index` (0-based within the epoch) ends an accumulation: every
 * accumulation-th batch, and the last batch of the epoch (accelerate syncs at the end of the
 * data loader). The loss is always divided by the accumulation count. */
bool lr_is_sync_step(int64_t batch_index, int64_t batches_per_epoch,
                     int64_t gradient_accumulation_steps);

#endif
