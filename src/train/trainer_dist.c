/* The trainer's data-parallel steps (docs/distributed.md): which samples of a global batch
 * are this rank's, the sum of every rank's row gradients before the optimizer step, and the
 * latent cache made once on rank 0 and shared. With one rank each is a no-op. See
 * trainer_internal.h and dist.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "train/dist.h"
#include "train/trainer_internal.h"

void trainer_dist_share(int count, int *first, int *share) {
    int64_t r = dist_rank(), p = dist_size();
    int lo = (int)((int64_t)count * r / p), hi = (int)((int64_t)count * (r + 1) / p);
    *first = lo;
    *share = hi - lo;
}

int trainer_dist_after_micro_step(Trainer *t, int rc, float *loss, Error *err) {
    (void)t;
    if (dist_any_error(rc, err) != 0)
        return -1;
    return dist_allreduce_sum_floats(loss, 1, err);
}

/* Every rank's accumulated rows become their sum, on every rank in the same order (by id):
 * first which rows any rank used (a 0/1 mask over the token ids, summed), then the rows. The
 * clip_grad_norm of the optimizer step sees all of them, as kohya's norm of the whole
 * embedding matrix's gradient does. */
int trainer_dist_combine_grads(Trainer *t, Error *err) {
    if (dist_size() == 1)
        return 0;
    RowGradAcc *a = &t->acc;
    int w = t->width;
    int ids = t->ti.ids[t->n_vec - 1] + 1;
    for (int j = 0; j < a->count; j++)
        if (a->ids[j] >= ids)
            ids = a->ids[j] + 1;
    float n = (float)ids;
    /* the ranks' id ranges agree (the same tokenizer), but take the largest to be safe */
    float *mask = NULL, *rows = NULL;
    int rc = 0;
    {
        float *sizes = calloc((size_t)dist_size(), sizeof *sizes);
        rc = sizes ? 0 : error_set(err, "out of memory");
        if (rc == 0)
            sizes[dist_rank()] = n;
        rc = dist_any_error(rc, err);
        if (rc == 0)
            rc = dist_allreduce_sum_floats(sizes, (size_t)dist_size(), err);
        for (int r = 0; rc == 0 && r < dist_size(); r++)
            if (sizes[r] > (float)ids)
                ids = (int)sizes[r];
        free(sizes);
        if (rc != 0)
            return -1;
    }
    mask = calloc((size_t)ids, sizeof *mask);
    rc = mask ? 0 : error_set(err, "out of memory");
    if (dist_any_error(rc, err) != 0) {
        free(mask);
        return -1;
    }
    for (int j = 0; j < a->count; j++)
        mask[a->ids[j]] = 1;
    if (dist_allreduce_sum_floats(mask, (size_t)ids, err) != 0) {
        free(mask);
        return -1;
    }
    int used = 0;
    for (int i = 0; i < ids; i++)
        if (mask[i] > 0)
            mask[i] = (float)used++; /* the row's place in the combined list */
        else
            mask[i] = -1;
    rows = calloc((size_t)(used ? used : 1) * (size_t)w, sizeof *rows);
    int32_t *row_ids = malloc(sizeof *row_ids * (size_t)(used ? used : 1));
    rc = rows && row_ids ? 0 : error_set(err, "out of memory");
    if (rc == 0 && a->count > 0 && a->width != w)
        rc = error_set(err, "gradient rows of width %d, the model's is %d", a->width, w);
    if (dist_any_error(rc, err) != 0) {
        free(mask);
        free(rows);
        free(row_ids);
        return -1;
    }
    for (int j = 0; j < a->count; j++)
        memcpy(rows + (size_t)mask[a->ids[j]] * w, a->rows + (size_t)j * w, sizeof(float) * w);
    for (int i = 0; i < ids; i++)
        if (mask[i] >= 0)
            row_ids[(int)mask[i]] = i;
    free(mask);
    rc = dist_allreduce_sum_floats(rows, (size_t)used * w, err);
    if (rc == 0) {
        free(a->ids);
        free(a->rows);
        a->ids = row_ids;
        a->rows = rows;
        a->count = a->cap = used;
        a->width = w;
        return 0;
    }
    free(rows);
    free(row_ids);
    return -1;
}

/* The torch generator's state as floats (each byte exactly), so a sum in which only rank 0
 * adds anything copies rank 0's state to every rank. */
static int share_generator(Trainer *t, Error *err) {
    uint8_t bytes[TORCH_RNG_STATE_SIZE];
    float f[TORCH_RNG_STATE_SIZE];
    torch_rng_get_state(&t->g, bytes);
    for (size_t i = 0; i < TORCH_RNG_STATE_SIZE; i++)
        f[i] = dist_rank() == 0 ? (float)bytes[i] : 0.0f;
    if (dist_allreduce_sum_floats(f, TORCH_RNG_STATE_SIZE, err) != 0)
        return -1;
    for (size_t i = 0; i < TORCH_RNG_STATE_SIZE; i++)
        bytes[i] = (uint8_t)f[i];
    return torch_rng_set_state(&t->g, bytes, sizeof bytes, "rank 0's generator", err);
}

int trainer_dist_cache_latents(Trainer *t, Error *err) {
    if (dist_size() == 1)
        return trainer_cache_latents(t, err);
    /* rank 0 encodes (drawing the sample noise from the shared generator in the one-process
     * order, and writing the .npz files alone), the others wait and receive */
    int rc = dist_rank() == 0 ? trainer_cache_latents(t, err) : 0;
    if (rc == 0 && dist_rank() != 0) {
        t->cache = calloc(t->dataset_count, sizeof *t->cache);
        rc = t->cache ? 0 : error_set(err, "out of memory");
        for (size_t d = 0; d < t->dataset_count && rc == 0; d++) {
            const Dataset *ds = &t->datasets[d];
            t->cache[d] = calloc(ds->image_count ? ds->image_count : 1, sizeof **t->cache);
            rc = t->cache[d] ? 0 : error_set(err, "out of memory");
            for (size_t i = 0; i < ds->image_count && rc == 0; i++) {
                const DatasetImage *im = &ds->images[i];
                int lh, lw;
                vae_latent_size(&t->vae.cfg, im->bucket.height, im->bucket.width, &lh, &lw);
                size_t n = (size_t)t->vae.cfg.latent_channels * lh * lw;
                CachedLatents *c = &t->cache[d][i];
                c->latents = calloc(n, sizeof(float));
                if (ds->config->subsets[im->subset].flip_aug)
                    c->flipped = calloc(n, sizeof(float));
                if (!c->latents || (ds->config->subsets[im->subset].flip_aug && !c->flipped))
                    rc = error_set(err, "out of memory");
            }
        }
    }
    if (dist_any_error(rc, err) != 0)
        return -1;
    for (size_t d = 0; d < t->dataset_count; d++) {
        const Dataset *ds = &t->datasets[d];
        for (size_t i = 0; i < ds->image_count; i++) {
            const DatasetImage *im = &ds->images[i];
            int lh, lw;
            vae_latent_size(&t->vae.cfg, im->bucket.height, im->bucket.width, &lh, &lw);
            size_t n = (size_t)t->vae.cfg.latent_channels * lh * lw;
            CachedLatents *c = &t->cache[d][i];
            if (dist_allreduce_sum_floats(c->latents, n, err) != 0 ||
                (c->flipped && dist_allreduce_sum_floats(c->flipped, n, err) != 0))
                return -1;
        }
    }
    return share_generator(t, err);
}

int trainer_dist_threads(int requested) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    int local = dist_local_size();
    if (dist_size() == 1)
        return requested;
    int threads = requested > 0 ? requested : (int)(cores / local > 0 ? cores / local : 1);
    if ((long)threads * local > cores && dist_rank() == 0)
        log_warning("%d ranks on this machine x %d threads each = %ld threads on %ld cores: "
                    "oversubscribed, every rank slows down; lower --num_cpu_threads_per_process "
                    "or the ranks per machine",
                    local, threads, (long)threads * local, cores);
    return threads;
}
