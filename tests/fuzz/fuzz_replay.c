/* libFuzzer target: `sdti train --replay FILE` (trainer_replay.c) checks a replay file against
 * the run before the trainer trusts its indices: for any file, trainer_replay_open must fail
 * with a one-line message naming the file, or give micro-batches whose image indices lie in
 * the dataset and whose draws stay inside their buffers (ASan watches the copies); never a
 * crash, a leak or UB. Odd first byte: the rest is the file as it is (the safetensors header
 * mutated freely). Even: a structured file, so that the checks after parsing are reached:
 * for each of latents, order, timesteps and noise a dtype and shape from a small table
 * (with zero and huge dimensions), the "images" names and "format" from the input, the
 * tensors' bytes from the rest. The run: 3 images of 64x64 (8x8 latents with 4 channels),
 * 1 to 4 steps, 1 to 3 accumulation steps. */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "train/trainer_internal.h"
#include "train/trainer_replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Input {
    const uint8_t *p;
    size_t n;
} Input;

static unsigned take(Input *in) {
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static const int64_t dims_table[16] = {
    0, 1, 2, 3, 4, 8, 5, 6, 7, 9, 16, 65536, 2147483648LL, 4294967297LL, 1LL << 40, INT64_MAX};

/* Adds one tensor with a shape from the table (most often the expected rank), filled
 * cyclically from the input's tail; returns -1 when it would be too large to build. */
static int add_tensor(TensorSet *set, const char *name, int want_ndim, DType want, Input *in,
                      const Input *pool) {
    unsigned b = take(in);
    static const DType dtypes[4] = {DTYPE_F32, DTYPE_I64, DTYPE_F16, DTYPE_I32};
    DType dtype = b & 3 ? want : dtypes[(b >> 2) & 3];
    int ndim = want_ndim + ((b >> 4) & 3) - ((b >> 4) & 3 ? 2 : 0); /* rank - 1, +1 or as is */
    if (ndim < 0 || ndim > 6)
        ndim = want_ndim;
    int64_t shape[8];
    int64_t numel = 1;
    bool zero = false;
    for (int i = 0; i < ndim; i++) {
        shape[i] = dims_table[take(in) & 15];
        zero = zero || shape[i] == 0;
    }
    for (int i = 0; i < ndim && !zero; i++) {
        if (shape[i] > 65536 || numel * shape[i] > 65536)
            return -1;
        numel *= shape[i];
    }
    if (zero)
        numel = 0;
    size_t nbytes = (size_t)numel * dtype_size(dtype);
    uint8_t *bytes = malloc(nbytes ? nbytes : 1);
    if (!bytes)
        return -1;
    for (size_t i = 0; i < nbytes; i++)
        bytes[i] = pool->n ? pool->p[i % pool->n] : 0;
    Error err;
    int rc = tensor_set_add_copy(set, name, dtype, ndim, shape, bytes, &err);
    free(bytes);
    return rc;
}

static int write_structured(const char *path, Input in, Error *err) {
    TensorSet set;
    tensor_set_init(&set);
    /* names and format first, the tensor bytes come from what is left */
    char names[64];
    size_t nl = take(&in) % sizeof names;
    size_t k = 0;
    for (; k < nl && in.n; k++) {
        unsigned c = take(&in);
        names[k] = c ? (char)c : 'x'; /* no NUL inside */
    }
    names[k] = '\0';
    unsigned flags = take(&in);
    Input shapes = in;
    Input pool = {in.p + (in.n > 24 ? 24 : in.n), in.n > 24 ? in.n - 24 : 0};
    int rc = add_tensor(&set, "latents", 4, DTYPE_F32, &shapes, &pool);
    rc = rc ? rc : add_tensor(&set, "order", 2, DTYPE_I64, &shapes, &pool);
    rc = rc ? rc : add_tensor(&set, "timesteps", 2, DTYPE_I64, &shapes, &pool);
    rc = rc ? rc : add_tensor(&set, "noise", 5, DTYPE_F32, &shapes, &pool);
    rc = rc ? rc
            : tensor_set_set_meta(&set, "format", flags & 1 ? "sdti-replay-0" : "sdti-replay-1",
                                  err);
    if (rc == 0 && !(flags & 2))
        rc = tensor_set_set_meta(&set, "images", names, err);
    rc = rc ? rc : safetensors_write(path, &set, err);
    tensor_set_free(&set);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz_replay.%ld.safetensors", dir, (long)getpid());
    Error err;
    err.message[0] = '\0';
    if (data[0] & 1) {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data + 2, 1, size - 2, f) != size - 2 || fclose(f) != 0)
            abort();
    } else if (write_structured(path, (Input){data + 2, size - 2}, &err) != 0) {
        unlink(path);
        return 0;
    }

    /* the run the file is checked against */
    TrainOptions o;
    memset(&o, 0, sizeof o);
    o.replay = path;
    o.gradient_accumulation_steps = 1 + data[1] % 3;
    static char name_a[] = "/data/img/a.png", name_b[] = "/data/img/b.png",
                name_c[] = "/data/img/c.png";
    DatasetImage images[3];
    memset(images, 0, sizeof images);
    char *names[3] = {name_a, name_b, name_c};
    for (int i = 0; i < 3; i++) {
        images[i].path = names[i];
        images[i].bucket.width = 64;
        images[i].bucket.height = 64;
    }
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.image_count = 3;
    static Trainer t; /* large: not on the stack */
    memset(&t, 0, sizeof t);
    t.o = &o;
    t.datasets = &ds;
    t.dataset_count = 1;
    t.vae.cfg.latent_channels = 4;
    t.vae.cfg.num_levels = 4;
    t.max_train_steps = 1 + (data[1] >> 2) % 4;
    t.n_vec = 2;
    t.width = 8;
    float rows[16] = {0};
    t.rows = rows;
    noise_schedule_init(&t.schedule, false);

    if (trainer_replay_open(&t, &err) == 0) {
        size_t per = 4 * 8 * 8;
        int64_t micro = t.max_train_steps * o.gradient_accumulation_steps;
        for (int64_t m = 0; m < micro; m++) {
            const size_t *idx = NULL;
            int batch = trainer_replay_images(&t, &idx);
            if (batch < 1 || batch > 65536 || !idx)
                abort();
            for (int i = 0; i < batch; i++)
                if (idx[i] >= ds.image_count)
                    abort();
            float *lat = malloc(sizeof(float) * per * (size_t)batch);
            float *noise = malloc(sizeof(float) * per * (size_t)batch);
            float *noisy = malloc(sizeof(float) * per * (size_t)batch);
            int64_t *times = malloc(sizeof(int64_t) * (size_t)batch);
            if (!lat || !noise || !noisy || !times)
                abort();
            trainer_replay_draws(&t, batch, per, lat, noise, noisy, times);
            for (int i = 0; i < batch; i++)
                if (times[i] < 0 || times[i] > 999)
                    abort();
            trainer_replay_record_loss(&t, 0.5f);
            if ((m + 1) % o.gradient_accumulation_steps == 0)
                trainer_replay_record_step(&t, rows, 1e-3);
            free(lat);
            free(noise);
            free(noisy);
            free(times);
        }
    } else if (err.message[0] == '\0' || strchr(err.message, '\n') ||
               (!strstr(err.message, path) && strcmp(err.message, "out of memory") != 0)) {
        abort(); /* one line, naming the file */
    }
    trainer_replay_free(&t);
    unlink(path);
    return 0;
}
