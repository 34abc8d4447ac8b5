#include "train/lr_scheduler.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch rounds a * b + c twice unless it fuses on purpose (written as fmaf here); clang would
   fuse such expressions under -march=native (GCC in -std=c11 mode does not). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Python's math.pi */
static const double kPi = 3.141592653589793;

int steps_or_ratio_parse(const char *text, const char *option, StepsOrRatio *out, Error *err) {
    size_t len = strlen(text);
    char *end;
    errno = 0;
    if (len > 0 && text[len - 1] == '%') {
        char buf[64];
        if (len >= sizeof buf)
            return error_set(err, "--%s: '%s' is not a valid percentage", option, text);
        memcpy(buf, text, len - 1);
        buf[len - 1] = '\0';
        double v = strtod(buf, &end);
        if (end == buf || *end || errno || !isfinite(v))
            return error_set(err, "--%s: '%s' is not a valid percentage", option, text);
        *out = (StepsOrRatio){true, v / 100.0};
        return 0;
    }
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return error_set(err, "--%s: '%s' is not an int or float", option, text);
    if (v < 1.0) {
        *out = (StepsOrRatio){true, v};
        return 0;
    }
    /* Python's int(text): digits only, with an optional sign and surrounding spaces */
    long long n = strtoll(text, &end, 10);
    if (end == text || *end || errno)
        return error_set(err,
                         "--%s: '%s' is not an int or float (a value of 1 or more must be "
                         "a whole number of steps)",
                         option, text);
    *out = (StepsOrRatio){false, (double)n};
    return 0;
}

static int64_t steps_of(StepsOrRatio v, int64_t total) {
    if (v.is_ratio)
        return (int64_t)(v.value * (double)total); /* Python int(): truncation */
    return (int64_t)v.value;
}

const char *lr_scheduler_kind_name(LrSchedulerKind kind) {
    static const char *const names[] = {
        "constant",   "constant_with_warmup", "linear",       "cosine",   "cosine_with_restarts",
        "polynomial", "cosine_with_min_lr",   "inverse_sqrt", "adafactor"};
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "?";
}

static int parse_args(LrScheduler *s, const LrSchedulerSettings *st, Error *err) {
    for (int i = 0; i < st->arg_count; i++) {
        const char *arg = st->args[i], *eq = strchr(arg, '=');
        if (!eq || strchr(eq + 1, '='))
            return error_set(err, "--lr_scheduler_args: '%s' is not key=value", arg);
        size_t klen = (size_t)(eq - arg);
        if (s->kind == LR_POLYNOMIAL && klen == 6 && strncmp(arg, "lr_end", 6) == 0) {
            char *end;
            errno = 0;
            double v = strtod(eq + 1, &end);
            if (end == eq + 1 || *end || errno || !isfinite(v))
                return error_set(err, "--lr_scheduler_args: lr_end expects a number, got '%s'",
                                 eq + 1);
            s->lr_end = v;
            continue;
        }
        return error_set(err, "--lr_scheduler_args: %.*s=... is not supported yet by sdti for %s",
                         (int)klen, arg, lr_scheduler_kind_name(s->kind));
    }
    return 0;
}

int lr_scheduler_resolve(LrScheduler *s, const LrSchedulerSettings *st, Error *err) {
    memset(s, 0, sizeof *s);
    const char *name = st->name && *st->name ? st->name : "constant";
    int64_t total = st->max_train_steps;
    s->base_lr = st->learning_rate;
    s->training_steps = total;
    s->warmup_steps = steps_of(st->warmup, total);
    s->power = st->power;
    s->lr_end = 1e-7;
    if (st->scheduler_type && *st->scheduler_type)
        return error_set(err, "--lr_scheduler_type %s is not supported yet by sdti",
                         st->scheduler_type);
    if (total < 1)
        return error_set(err, "--max_train_steps must be at least 1 (got %lld)", (long long)total);
    if (s->warmup_steps < 0)
        return error_set(err, "--lr_warmup_steps must not be negative");

    bool adafactor = strncmp(name, "adafactor", 9) == 0 && (name[9] == '\0' || name[9] == ':');
    if (st->adafactor_relative_step)
        adafactor = true; /* kohya: args.lr_scheduler = f"adafactor:{lr}" */
    else if (adafactor)
        return error_set(err, "--lr_scheduler adafactor needs --optimizer_type AdaFactor with "
                              "relative_step (as kohya asserts)");
    static const LrSchedulerKind kinds[] = {
        LR_CONSTANT,   LR_CONSTANT_WITH_WARMUP, LR_LINEAR,      LR_COSINE, LR_COSINE_WITH_RESTARTS,
        LR_POLYNOMIAL, LR_COSINE_WITH_MIN_LR,   LR_INVERSE_SQRT};
    bool found = false;
    if (adafactor) {
        s->kind = LR_ADAFACTOR;
        found = true;
    } else {
        for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
            if (strcmp(name, lr_scheduler_kind_name(kinds[i])) == 0) {
                s->kind = kinds[i];
                found = true;
            }
    }
    if (!found) {
        if (strcmp(name, "reduce_lr_on_plateau") == 0 ||
            strcmp(name, "cosine_warmup_with_min_lr") == 0 ||
            strcmp(name, "warmup_stable_decay") == 0 || strcmp(name, "piecewise_constant") == 0)
            return error_set(err, "--lr_scheduler %s is not supported yet by sdti", name);
        return error_set(err,
                         "--lr_scheduler: '%s' is not a scheduler kohya knows (constant, "
                         "constant_with_warmup, linear, cosine, cosine_with_restarts, "
                         "polynomial, cosine_with_min_lr, inverse_sqrt, adafactor, ...)",
                         name);
    }
    if ((s->kind == LR_CONSTANT || s->kind == LR_ADAFACTOR) && s->warmup_steps != 0)
        return error_set(err,
                         "%s does not require `num_warmup_steps`. Set None or 0 (kohya's error: "
                         "drop --lr_warmup_steps%s)",
                         s->kind == LR_ADAFACTOR ? "adafactor" : "constant",
                         s->kind == LR_ADAFACTOR
                             ? "; Adafactor with relative_step uses kohya's adafactor scheduler"
                             : "");
    switch (s->kind) {
    case LR_COSINE:
        s->num_cycles = 0.5;
        break;
    case LR_COSINE_WITH_RESTARTS:
        s->num_cycles = (double)st->num_cycles;
        break;
    case LR_COSINE_WITH_MIN_LR:
        if (!st->has_min_lr_ratio)
            return error_set(err, "--lr_scheduler cosine_with_min_lr needs "
                                  "--lr_scheduler_min_lr_ratio");
        s->num_cycles = (double)st->num_cycles / 2.0;
        s->min_lr_rate = st->min_lr_ratio;
        break;
    case LR_INVERSE_SQRT:
        /* transformers: timescale None -> num_warmup_steps or 10000 */
        s->timescale = st->has_timescale ? (double)st->timescale
                       : s->warmup_steps ? (double)s->warmup_steps
                                         : 10000.0;
        break;
    default:
        break;
    }
    if (parse_args(s, st, err) != 0)
        return -1;
    if (s->kind == LR_POLYNOMIAL && !(s->base_lr > s->lr_end))
        return error_set(err, "lr_end (%g) must be smaller than initial lr (%g)", s->lr_end,
                         s->base_lr);
    return 0;
}

static double warmup_factor(int64_t step, int64_t warmup) {
    return (double)step / (double)(warmup > 1 ? warmup : 1);
}

/* transformers' lr lambdas, term by term */
static double lambda_of(const LrScheduler *s, int64_t step) {
    int64_t w = s->warmup_steps, total = s->training_steps;
    switch (s->kind) {
    case LR_CONSTANT:
    case LR_ADAFACTOR:
        return 1.0;
    case LR_CONSTANT_WITH_WARMUP:
        return step < w ? warmup_factor(step, w) : 1.0;
    case LR_LINEAR: {
        if (step < w)
            return warmup_factor(step, w);
        int64_t span = total - w > 1 ? total - w : 1;
        double v = (double)(total - step) / (double)span;
        return v > 0.0 ? v : 0.0;
    }
    case LR_COSINE:
    case LR_COSINE_WITH_MIN_LR:
    case LR_COSINE_WITH_RESTARTS: {
        if (step < w)
            return warmup_factor(step, w);
        int64_t span = total - w > 1 ? total - w : 1;
        double progress = (double)(step - w) / (double)span;
        double f;
        if (s->kind == LR_COSINE_WITH_RESTARTS) {
            if (progress >= 1.0)
                return 0.0;
            double x = fmod(s->num_cycles * progress, 1.0); /* Python %: both positive here */
            f = 0.5 * (1.0 + cos(kPi * x));
        } else {
            f = 0.5 * (1.0 + cos(kPi * s->num_cycles * 2.0 * progress));
            f = f * (1.0 - s->min_lr_rate) + s->min_lr_rate;
        }
        return f > 0.0 ? f : 0.0;
    }
    case LR_POLYNOMIAL: {
        if (step < w)
            return warmup_factor(step, w);
        if (step > total)
            return s->lr_end / s->base_lr;
        double range = s->base_lr - s->lr_end;
        double decay_steps = (double)(total - w);
        double remaining = 1.0 - (double)(step - w) / decay_steps;
        double decay = range * pow(remaining, s->power) + s->lr_end;
        return decay / s->base_lr;
    }
    case LR_INVERSE_SQRT: {
        if (step < w)
            return warmup_factor(step, w);
        double shift = s->timescale - (double)w;
        return 1.0 / sqrt(((double)step + shift) / s->timescale);
    }
    }
    return 1.0;
}

double lr_scheduler_lr(const LrScheduler *s, int64_t step) {
    return s->base_lr * lambda_of(s, step);
}

int64_t lr_steps_per_epoch(int64_t batches_per_epoch, int64_t gradient_accumulation_steps) {
    int64_t a = gradient_accumulation_steps > 0 ? gradient_accumulation_steps : 1;
    return (batches_per_epoch + a - 1) / a;
}

int64_t lr_epochs_for(int64_t max_train_steps, int64_t steps_per_epoch) {
    if (steps_per_epoch < 1)
        return 0;
    return (max_train_steps + steps_per_epoch - 1) / steps_per_epoch;
}

bool lr_is_sync_step(int64_t batch_index, int64_t batches_per_epoch,
                     int64_t gradient_accumulation_steps) {
    int64_t a = gradient_accumulation_steps > 0 ? gradient_accumulation_steps : 1;
    return (batch_index + 1) % a == 0 || batch_index + 1 == batches_per_epoch;
}
