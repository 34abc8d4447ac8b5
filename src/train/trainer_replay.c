/* `sdti train --replay FILE`: the draws of a run taken from a file, the trajectory recorded.
 * See trainer_replay.h. */
#define _POSIX_C_SOURCE 200809L
#include "train/trainer_replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "train/trainer_internal.h"

#define REPLAY_FORMAT     "sdti-replay-1"
#define REPLAY_TRAJECTORY "replay_trajectory.safetensors"

typedef struct TrainerReplay {
    TensorSet set;
    int micro_batches, batch, images, channels, height, width;
    float *latents;  /* [images, C, h, w] */
    float *noise;    /* [micro_batches, batch, C, h, w] */
    int64_t *order;  /* [micro_batches, batch]: replay image indices */
    int64_t *times;  /* [micro_batches, batch] */
    size_t *dataset; /* [images]: the dataset's index of each replay image */
    size_t *idx;     /* [batch]: the current micro-batch's dataset indices */
    int micro;       /* the next micro-batch */
    /* the trajectory */
    int steps, step_cap, losses;
    float *loss, *grad, *rows, *rows_init, *lr;
} TrainerReplay;

static const NamedTensor *find(const TrainerReplay *r, const char *path, const char *name,
                               DType dtype, int ndim, Error *err) {
    const NamedTensor *n = tensor_set_find(&r->set, name);
    if (!n || n->dtype != dtype || n->ndim != ndim) {
        error_set(err,
                  "--replay %s: no %dD %s tensor \"%s\" (write the file with "
                  "tools/reference/kohya_ti_step.py)",
                  path, ndim, dtype_display_name(dtype), name);
        return NULL;
    }
    return n;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The metadata's comma-separated file names -> the dataset's image indices. */
static int map_images(TrainerReplay *r, const Dataset *ds, const char *path, Error *err) {
    const char *list = tensor_set_get_meta(&r->set, "images");
    if (!list)
        return error_set(err, "--replay %s: no \"images\" metadata", path);
    char *copy = strdup(list);
    r->dataset = calloc((size_t)r->images, sizeof *r->dataset);
    if (!copy || !r->dataset) {
        free(copy);
        return error_set(err, "out of memory");
    }
    int n = 0, rc = 0;
    char *save = NULL;
    for (char *name = strtok_r(copy, ",", &save); name && rc == 0;
         name = strtok_r(NULL, ",", &save), n++) {
        if (n >= r->images) {
            rc = error_set(err, "--replay %s: more image names than latents (%d)", path, r->images);
            break;
        }
        size_t i = 0;
        while (i < ds->image_count && strcmp(base_name(ds->images[i].path), name) != 0)
            i++;
        if (i == ds->image_count)
            rc = error_set(err, "--replay %s: image %s is not in the dataset", path, name);
        r->dataset[n] = i;
    }
    if (rc == 0 && n != r->images)
        rc = error_set(err, "--replay %s: %d image names for %d latents", path, n, r->images);
    free(copy);
    return rc;
}

static int check_shapes(TrainerReplay *r, const Trainer *t, const char *path, Error *err) {
    const NamedTensor *lat = find(r, path, "latents", DTYPE_F32, 4, err);
    const NamedTensor *order = lat ? find(r, path, "order", DTYPE_I64, 2, err) : NULL;
    const NamedTensor *times = order ? find(r, path, "timesteps", DTYPE_I64, 2, err) : NULL;
    const NamedTensor *noise = times ? find(r, path, "noise", DTYPE_F32, 5, err) : NULL;
    if (!noise)
        return -1;
    r->images = (int)lat->shape[0];
    r->channels = (int)lat->shape[1];
    r->height = (int)lat->shape[2];
    r->width = (int)lat->shape[3];
    r->micro_batches = (int)order->shape[0];
    r->batch = (int)order->shape[1];
    const int64_t want[5] = {order->shape[0], order->shape[1], lat->shape[1], lat->shape[2],
                             lat->shape[3]};
    if (times->shape[0] != want[0] || times->shape[1] != want[1] ||
        memcmp(noise->shape, want, sizeof want) != 0 || r->images < 1 || r->batch < 1)
        return error_set(err, "--replay %s: order, timesteps and noise disagree in shape", path);
    if (r->channels != t->vae.cfg.latent_channels)
        return error_set(err, "--replay %s: %d latent channels, the model has %d", path,
                         r->channels, t->vae.cfg.latent_channels);
    size_t per = (size_t)r->channels * r->height * r->width;
    r->latents = malloc(sizeof(float) * per * (size_t)r->images);
    r->noise = malloc(sizeof(float) * per * (size_t)r->micro_batches * r->batch);
    r->order = malloc(sizeof(int64_t) * (size_t)r->micro_batches * r->batch);
    r->times = malloc(sizeof(int64_t) * (size_t)r->micro_batches * r->batch);
    r->idx = calloc((size_t)r->batch, sizeof *r->idx);
    if (!r->latents || !r->noise || !r->order || !r->times || !r->idx)
        return error_set(err, "out of memory");
    if (tensor_to_f32(lat, r->latents, err) != 0 || tensor_to_f32(noise, r->noise, err) != 0)
        return -1;
    memcpy(r->order, order->data, order->nbytes);
    memcpy(r->times, times->data, times->nbytes);
    for (size_t i = 0; i < (size_t)r->micro_batches * r->batch; i++) {
        if (r->order[i] < 0 || r->order[i] >= r->images)
            return error_set(err, "--replay %s: order[%zu] = %lld is not an image index", path, i,
                             (long long)r->order[i]);
        if (r->times[i] < 0 || r->times[i] >= NOISE_SCHEDULE_STEPS)
            return error_set(err, "--replay %s: timesteps[%zu] = %lld is outside 0..999", path, i,
                             (long long)r->times[i]);
    }
    return 0;
}

int trainer_replay_open(Trainer *t, Error *err) {
    const char *path = t->o->replay;
    TrainerReplay *r = calloc(1, sizeof *r);
    if (!r)
        return error_set(err, "out of memory");
    t->replay = r;
    tensor_set_init(&r->set);
    if (safetensors_open(path, &r->set, err) != 0)
        return error_prefix(err, "--replay: ");
    const char *format = tensor_set_get_meta(&r->set, "format");
    if (!format || strcmp(format, REPLAY_FORMAT) != 0)
        return error_set(err,
                         "--replay %s: not a replay file (format \"%s\", want \"%s\"; write it "
                         "with tools/reference/kohya_ti_step.py)",
                         path, format ? format : "", REPLAY_FORMAT);
    if (t->dataset_count != 1)
        return error_set(err, "--replay needs exactly one dataset (the run has %zu)",
                         t->dataset_count);
    if (check_shapes(r, t, path, err) != 0 || map_images(r, &t->datasets[0], path, err) != 0)
        return -1;
    for (int i = 0; i < r->images; i++) {
        const DatasetImage *im = &t->datasets[0].images[r->dataset[i]];
        int lh, lw;
        vae_latent_size(&t->vae.cfg, im->bucket.height, im->bucket.width, &lh, &lw);
        if (lh != r->height || lw != r->width)
            return error_set(err, "--replay %s: latents of %dx%d, the image %s gives %dx%d", path,
                             r->width, r->height, im->path, lw, lh);
    }
    int64_t accum = t->o->gradient_accumulation_steps > 0 ? t->o->gradient_accumulation_steps : 1;
    if ((int64_t)r->micro_batches < t->max_train_steps * accum)
        return error_set(err, "--replay %s: %d batches, the run needs up to %lld", path,
                         r->micro_batches, (long long)(t->max_train_steps * accum));
    size_t nw = (size_t)t->n_vec * t->width;
    r->step_cap = (int)t->max_train_steps;
    r->loss = calloc((size_t)r->micro_batches, sizeof *r->loss);
    r->grad = calloc((size_t)r->step_cap * nw, sizeof *r->grad);
    r->rows = calloc((size_t)r->step_cap * nw, sizeof *r->rows);
    r->lr = calloc((size_t)r->step_cap, sizeof *r->lr);
    r->rows_init = malloc(sizeof *r->rows_init * nw);
    if (!r->loss || !r->grad || !r->rows || !r->lr || !r->rows_init)
        return error_set(err, "out of memory");
    memcpy(r->rows_init, t->rows, sizeof *r->rows_init * nw);
    return 0;
}

void trainer_replay_free(Trainer *t) {
    TrainerReplay *r = t->replay;
    if (!r)
        return;
    tensor_set_free(&r->set);
    free(r->latents);
    free(r->noise);
    free(r->order);
    free(r->times);
    free(r->dataset);
    free(r->idx);
    free(r->loss);
    free(r->grad);
    free(r->rows);
    free(r->rows_init);
    free(r->lr);
    free(r);
    t->replay = NULL;
}

int trainer_replay_images(Trainer *t, const size_t **idx) {
    TrainerReplay *r = t->replay;
    int m = r->micro < r->micro_batches ? r->micro : r->micro_batches - 1; /* open checked */
    for (int i = 0; i < r->batch; i++)
        r->idx[i] = r->dataset[r->order[(size_t)m * r->batch + i]];
    *idx = r->idx;
    return r->batch;
}

void trainer_replay_draws(Trainer *t, int batch, size_t per_sample, float *latents, float *noise,
                          float *noisy, int64_t *timesteps) {
    TrainerReplay *r = t->replay;
    int m = r->micro < r->micro_batches ? r->micro : r->micro_batches - 1;
    for (int i = 0; i < batch; i++) {
        size_t at = (size_t)m * r->batch + i;
        memcpy(latents + per_sample * i, r->latents + per_sample * (size_t)r->order[at],
               sizeof(float) * per_sample);
        memcpy(noise + per_sample * i, r->noise + per_sample * at, sizeof(float) * per_sample);
        timesteps[i] = r->times[at];
    }
    noise_schedule_add_noise(&t->schedule, batch, per_sample, latents, noise, timesteps, noisy);
    r->micro++;
}

void trainer_replay_record_loss(Trainer *t, float loss) {
    TrainerReplay *r = t->replay;
    if (r->losses < r->micro_batches)
        r->loss[r->losses++] = loss;
}

void trainer_replay_record_step(Trainer *t, const float *grad_rows, double lr) {
    TrainerReplay *r = t->replay;
    if (r->steps >= r->step_cap)
        return;
    size_t nw = (size_t)t->n_vec * t->width, at = (size_t)r->steps * nw;
    memcpy(r->grad + at, grad_rows, sizeof(float) * nw);
    memcpy(r->rows + at, t->rows, sizeof(float) * nw);
    r->lr[r->steps++] = (float)lr;
}

int trainer_replay_write(Trainer *t, Error *err) {
    TrainerReplay *r = t->replay;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", t->o->output_dir, REPLAY_TRAJECTORY);
    TensorSet s;
    tensor_set_init(&s);
    int64_t nl = r->losses, ns = r->steps;
    int64_t rows_shape[3] = {ns, t->n_vec, t->width};
    int rc = tensor_set_add_copy(&s, "loss", DTYPE_F32, 1, &nl, r->loss, err);
    rc = rc ? rc : tensor_set_add_copy(&s, "lr", DTYPE_F32, 1, &ns, r->lr, err);
    rc = rc ? rc : tensor_set_add_copy(&s, "grad", DTYPE_F32, 3, rows_shape, r->grad, err);
    rc = rc ? rc : tensor_set_add_copy(&s, "rows", DTYPE_F32, 3, rows_shape, r->rows, err);
    rc = rc ? rc
            : tensor_set_add_copy(&s, "rows_init", DTYPE_F32, 2, rows_shape + 1, r->rows_init, err);
    rc = rc ? rc : tensor_set_set_meta(&s, "format", "sdti-replay-trajectory-1", err);
    rc = rc ? rc : safetensors_write(path, &s, err);
    tensor_set_free(&s);
    if (rc == 0)
        fprintf(stderr, "sdti train: the replay trajectory is %s\n", path);
    return rc;
}
