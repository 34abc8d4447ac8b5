/* Saving the trained rows as kohya does (TextualInversionTrainer.save_weights, train_util's
 * file names) and the progress line. See trainer.h. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno, mkdir */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "train/dist.h"
#include "train/trainer_internal.h"

static const char *save_ext(const TrainOptions *o) {
    if (o->save_model_as && strcmp(o->save_model_as, "safetensors") == 0)
        return ".safetensors";
    if (o->save_model_as && strcmp(o->save_model_as, "ckpt") == 0)
        return ".ckpt";
    return ".pt";
}

static DType save_dtype(const TrainOptions *o) {
    if (o->save_precision && strcmp(o->save_precision, "fp16") == 0)
        return DTYPE_F16;
    if (o->save_precision && strcmp(o->save_precision, "bf16") == 0)
        return DTYPE_BF16;
    return DTYPE_F32;
}

int trainer_save(Trainer *t, const char *name, Error *err) {
    const TrainOptions *o = t->o;
    for (size_t i = 0; i < (size_t)t->n_vec * t->width; i++)
        if (!isfinite(t->rows[i]))
            return error_set(err,
                             "the trained rows hold NaN or Inf at step %lld: not saved (last "
                             "good save: %s)",
                             (long long)t->global_step, t->last_saved[0] ? t->last_saved : "none");
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s%s", o->output_dir, name, save_ext(o));
    if (len < 0 || (size_t)len >= sizeof path)
        return error_set(err, "--output_dir/--output_name: path too long");
    Embedding e;
    embedding_init(&e);
    int rc = ti_tokens_extract(&t->ti, t->rows, t->width, &e, err);
    if (rc == 0 && strcmp(save_ext(o), ".safetensors") == 0) {
        KohyaMetadataArgs m = {
            .v2 = o->v2,
            .v_parameterization = o->v_parameterization,
            .title = o->metadata_title ? o->metadata_title : t->output_name,
            .resolution = o->resolution,
            .timestamp = (int64_t)time(NULL),
            .clip_skip = o->has_clip_skip ? o->clip_skip : -1,
            .min_timestep = o->has_min_timestep ? o->min_timestep : -1,
            .max_timestep = o->has_max_timestep ? o->max_timestep : -1,
            .implementation_version = "sdti/" SDTI_VERSION,
            .author = o->metadata_author,
            .description = o->metadata_description,
            .license = o->metadata_license,
            .tags = o->metadata_tags,
            .usage_hint = o->metadata_usage_hint,
            .thumbnail = o->metadata_thumbnail,
            .merged_from = o->metadata_merged_from,
            .trigger_phrase = o->metadata_trigger_phrase,
            .preprocessor = o->metadata_preprocessor,
            .is_negative_embedding = o->metadata_is_negative_embedding,
        };
        rc = embedding_set_kohya_metadata(&e, &m, err);
        if (rc == 0)
            rc = embedding_save_kohya_safetensors(&e, path, save_dtype(o), err);
    } else if (rc == 0) {
        rc = embedding_save_kohya_pt(&e, path, save_dtype(o), err);
    }
    embedding_free(&e);
    if (rc != 0)
        return error_prefix(err, "saving %s: ", path);
    snprintf(t->last_saved, sizeof t->last_saved, "%s", path);
    log_info("saved %s", path);
    return 0;
}

/* kohya's remove_model: the older file goes if it exists. */
static void remove_old(const Trainer *t, const char *name) {
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s%s", t->o->output_dir, name, save_ext(t->o));
    if (len > 0 && (size_t)len < sizeof path && remove(path) == 0)
        log_info("removed %s", path);
}

int trainer_save_epoch(Trainer *t, int epoch_number, int save_every_n_epochs, Error *err) {
    char name[1024];
    snprintf(name, sizeof name, "%s-%06d", t->output_name, epoch_number);
    if (trainer_save(t, name, err) != 0)
        return -1;
    /* get_remove_epoch_no: epoch - save_every_n_epochs * save_last_n_epochs */
    if (t->o->has_save_last_n_epochs) {
        long remove_no = epoch_number - (long)save_every_n_epochs * t->o->save_last_n_epochs;
        if (remove_no >= 0) {
            snprintf(name, sizeof name, "%s-%06ld", t->output_name, remove_no);
            remove_old(t, name);
        }
    }
    return 0;
}

int trainer_save_step(Trainer *t, Error *err) {
    char name[1024];
    snprintf(name, sizeof name, "%s-step%08lld", t->output_name, (long long)t->global_step);
    if (trainer_save(t, name, err) != 0)
        return -1;
    /* get_remove_step_no: step - save_last_n_steps - 1, down to a multiple of
     * save_every_n_steps (Python's modulo: a negative number stays negative) */
    if (t->o->has_save_last_n_steps) {
        long long remove_no = (long long)t->global_step - t->o->save_last_n_steps - 1;
        if (remove_no >= 0)
            remove_no -= remove_no % t->o->save_every_n_steps;
        if (remove_no >= 0) {
            snprintf(name, sizeof name, "%s-step%08lld", t->output_name, remove_no);
            remove_old(t, name);
        }
    }
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_init(Progress *p) {
    memset(p, 0, sizeof *p);
    p->start = p->last_print = now_seconds();
    p->tty = isatty(fileno(stderr)) != 0;
}

/* step/total, epoch, the mean loss of the epoch's micro-batches so far (kohya's "avr_loss"), it/s,
 * ETA. A terminal gets one line rewritten in place; otherwise a line every 30 s and at the end. */
void progress_update(Progress *p, const Trainer *t, bool final) {
    if (dist_rank() != 0) /* one progress line for the job: rank 0's */
        return;
    char ranks[32] = "";
    if (dist_size() > 1)
        snprintf(ranks, sizeof ranks, " (%d ranks)", dist_size());
    double now = now_seconds();
    if (!final && !p->tty && now - p->last_print < 30 && t->global_step != 1)
        return;
    p->last_print = now;
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)(t->global_step - p->start_step) / elapsed : 0;
    double eta = rate > 0 ? (double)(t->max_train_steps - t->global_step) / rate : 0;
    double mean = p->loss_count ? p->loss_sum / (double)p->loss_count : 0;
    fprintf(stderr,
            "%ssteps %lld/%lld%s  epoch %d/%d  avr_loss %.4f  %.2f it/s  %.2f s/it  ETA "
            "%02d:%02d:%02d%s",
            p->tty ? "\r" : "", (long long)t->global_step, (long long)t->max_train_steps, ranks,
            t->epoch + 1, t->epochs, mean, rate, rate > 0 ? 1 / rate : 0, (int)(eta / 3600),
            (int)fmod(eta / 60, 60), (int)fmod(eta, 60), p->tty && !final ? "" : "\n");
    fflush(stderr);
}
