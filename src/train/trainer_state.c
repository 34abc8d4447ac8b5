/* --save_state / --resume: the whole training position in one folder, so a resumed run
 * continues bit for bit. See trainer_internal.h.
 *
 * The folder (kohya's names: "<output_name>-<epoch:06d>-state", "<output_name>-step<step:08d>-
 * state", "<output_name>-state"; "epoch" / "at" / "last" without --output_name, as kohya's
 * default_if_none) holds state.safetensors (every number below) and state.json (a summary
 * for people). It is written under "<folder>.tmp-<pid>" and renamed into place, so a run
 * killed while saving leaves the previous state whole; what such a run leaves behind (its
 * "<name>.tmp-<pid>" / "<name>.old-<pid>" folders and files) is removed by the next run that
 * saves or resumes a state in the folder, once that process is gone. kohya's folders (accelerate's
 * model.safetensors, optimizer.bin, random_states_0.pkl) are refused on --resume: their
 * contents cannot give a bit-identical continuation. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_util.h"
#include "base/log.h"
#include "formats/safetensors.h"
#include "train/trainer_internal.h"

#define STATE_FILE   "state.safetensors"
#define STATE_JSON   "state.json"
#define STATE_FORMAT "sdti-train-state-1"

static int add_i64(TensorSet *s, const char *name, int64_t v, Error *err) {
    int64_t one = 1;
    return tensor_set_add_copy(s, name, DTYPE_I64, 1, &one, &v, err);
}

static int build_state(const Trainer *t, int epoch, size_t position, TensorSet *s, Error *err) {
    char name[128];
    int64_t shape[2] = {t->n_vec, t->width};
    if (tensor_set_add_copy(s, "rows", DTYPE_F32, 2, shape, t->rows, err) != 0 ||
        optimizer_state_save(&t->opt, s, "optimizer.", err) != 0 ||
        add_i64(s, "global_step", t->global_step, err) != 0 ||
        add_i64(s, "epoch", epoch, err) != 0 ||
        add_i64(s, "position_in_epoch", (int64_t)position, err) != 0 ||
        add_i64(s, "lr_scheduler_step", t->global_step, err) != 0 ||
        add_i64(s, "dataset_step", t->dataset_step, err) != 0 ||
        add_i64(s, "shared_step", t->shared_step, err) != 0)
        return -1;
    /* the epoch's batch order, needed to continue inside it */
    if (position > 0) {
        int64_t n = (int64_t)t->perm_total;
        if (tensor_set_add_copy(s, "epoch_order", DTYPE_I64, 1, &n, t->perm, err) != 0)
            return -1;
    }
    uint8_t g[TORCH_RNG_STATE_SIZE];
    torch_rng_get_state(&t->g, g);
    int64_t gsize = TORCH_RNG_STATE_SIZE;
    if (tensor_set_add_copy(s, "torch_rng_state", DTYPE_U8, 1, &gsize, g, err) != 0)
        return -1;
    int64_t py[PY_MT_N + 1];
    for (int i = 0; i < PY_MT_N; i++)
        py[i] = t->py.mt[i];
    py[PY_MT_N] = t->py.index;
    int64_t pysize = PY_MT_N + 1;
    if (tensor_set_add_copy(s, "python_random_state", DTYPE_I64, 1, &pysize, py, err) != 0)
        return -1;
    for (size_t d = 0; d < t->dataset_count; d++) {
        const Dataset *ds = &t->datasets[d];
        snprintf(name, sizeof name, "dataset.%zu.seed", d);
        if (add_i64(s, name, ds->seed, err) != 0)
            return -1;
        snprintf(name, sizeof name, "dataset.%zu.current_epoch", d);
        if (add_i64(s, name, ds->current_epoch, err) != 0)
            return -1;
        /* the shuffled orders themselves (each epoch's reshuffle works on the last one) */
        int64_t bshape[2] = {(int64_t)ds->batch_count, 2};
        int64_t *b = malloc(sizeof *b * (ds->batch_count ? ds->batch_count * 2 : 1));
        if (!b)
            return error_set(err, "out of memory");
        for (size_t i = 0; i < ds->batch_count; i++) {
            b[2 * i] = (int64_t)ds->batches[i].bucket;
            b[2 * i + 1] = (int64_t)ds->batches[i].batch_index;
        }
        snprintf(name, sizeof name, "dataset.%zu.batches", d);
        int rc = tensor_set_add_copy(s, name, DTYPE_I64, 2, bshape, b, err);
        free(b);
        if (rc != 0)
            return -1;
        for (size_t k = 0; k < ds->bucket_count; k++) {
            int64_t len = (int64_t)ds->bucket_len[k];
            int64_t *items = malloc(sizeof *items * (len ? (size_t)len : 1));
            if (!items)
                return error_set(err, "out of memory");
            for (int64_t i = 0; i < len; i++)
                items[i] = (int64_t)ds->bucket_items[k][i];
            snprintf(name, sizeof name, "dataset.%zu.bucket.%zu", d, k);
            rc = tensor_set_add_copy(s, name, DTYPE_I64, 1, &len, items, err);
            free(items);
            if (rc != 0)
                return -1;
        }
    }
    return tensor_set_set_meta(s, "format", STATE_FORMAT, err);
}

static int write_json(const Trainer *t, const char *dir, int epoch, size_t position, Error *err) {
    char *path = path_join(dir, STATE_JSON);
    if (!path)
        return error_set(err, "out of memory");
    AtomicFile af;
    int rc = atomic_file_open(&af, path, err);
    if (rc == 0) {
        fprintf(af.fp,
                "{\"format\": \"%s\", \"global_step\": %lld, \"epoch\": %d, "
                "\"position_in_epoch\": %zu, \"max_train_steps\": %lld, \"optimizer\": \"%s\", "
                "\"num_vectors\": %d, \"width\": %d}\n",
                STATE_FORMAT, (long long)t->global_step, epoch, position,
                (long long)t->max_train_steps, optimizer_kind_name(t->opt.cfg.kind), t->n_vec,
                t->width);
        rc = atomic_file_commit(&af, err);
    }
    free(path);
    return rc;
}

/* Removes a state folder: our two files, then the folder (anything else in it keeps it). */
static void remove_state_dir(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    remove(path);
    snprintf(path, sizeof path, "%s/%s", dir, STATE_JSON);
    remove(path);
    rmdir(dir);
}

/* The pid of a leftover name "<name>.tmp-<pid>" / "<name>.old-<pid>" that sdti train writes
 * (<name> an embedding, a state folder or a state's file), or 0. */
static long leftover_pid(const char *name) {
    const char *p = NULL;
    for (const char *s = name; (s = strchr(s, '.')) != NULL; s++)
        if (strncmp(s, ".tmp-", 5) == 0 || strncmp(s, ".old-", 5) == 0)
            p = s + 5;
    if (!p || !*p)
        return 0;
    static const char *const kinds[] = {".pt", ".safetensors", ".ckpt", "-state", STATE_JSON};
    size_t base = (size_t)(p - 5 - name);
    bool ours = false;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        size_t k = strlen(kinds[i]);
        ours = ours || (base >= k && strncmp(name + base - k, kinds[i], k) == 0);
    }
    if (!ours)
        return 0;
    char *end;
    long pid = strtol(p, &end, 10);
    return *end == '\0' && pid > 0 ? pid : 0;
}

/* Removes what runs killed while writing left in `dir` (a process that no longer exists:
 * kill(pid, 0) says ESRCH): temporary embedding files, temporary and moved-aside state
 * folders (only the files a state holds, and their own temporary files). */
static void remove_leftovers(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = leftover_pid(e->d_name);
        if (pid == 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (file_is_dir(path)) {
            if (depth == 0)
                remove_leftovers(path, 1);
            remove_state_dir(path);
        } else
            remove(path);
        log_info("removed %s, left by a stopped run (process %ld)", path, pid);
    }
    closedir(d);
}

int trainer_state_save(Trainer *t, const char *name, int epoch, size_t position, Error *err) {
    char dir[4096], tmp[4200], old[4200], file[4300];
    remove_leftovers(t->o->output_dir, 0);
    int len = snprintf(dir, sizeof dir, "%s/%s", t->o->output_dir, name);
    if (len < 0 || (size_t)len >= sizeof dir)
        return error_set(err, "--output_dir/--output_name: path too long");
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid());
    snprintf(old, sizeof old, "%s.old-%ld", dir, (long)getpid());
    remove_state_dir(tmp);
    if (mkdir(tmp, 0777) != 0)
        return error_set(err, "%s: cannot create the folder: %s", tmp, strerror(errno));
    TensorSet s;
    tensor_set_init(&s);
    int rc = build_state(t, epoch, position, &s, err);
    snprintf(file, sizeof file, "%s/%s", tmp, STATE_FILE);
    rc = rc ? rc : safetensors_write(file, &s, err);
    tensor_set_free(&s);
    rc = rc ? rc : write_json(t, tmp, epoch, position, err);
    if (rc == 0) {
        bool had_old = file_is_dir(dir);
        if (had_old && rename(dir, old) != 0)
            rc = error_set(err, "%s: cannot move the old state aside: %s", dir, strerror(errno));
        if (rc == 0 && rename(tmp, dir) != 0)
            rc = error_set(err, "%s: cannot rename to %s: %s", tmp, dir, strerror(errno));
        if (rc == 0 && had_old)
            remove_state_dir(old);
    }
    if (rc != 0) {
        remove_state_dir(tmp);
        return error_prefix(err, "saving the state %s: ", dir);
    }
    log_info("saved the state %s", dir);
    return 0;
}

static const char *state_model_name(const Trainer *t, const char *fallback) {
    return t->o->output_name ? t->o->output_name : fallback;
}

int trainer_state_save_step(Trainer *t, size_t position, Error *err) {
    char name[1100];
    const char *model = state_model_name(t, "at");
    snprintf(name, sizeof name, "%s-step%08lld-state", model, (long long)t->global_step);
    if (trainer_state_save(t, name, t->epoch, position, err) != 0)
        return -1;
    const TrainOptions *o = t->o;
    long last = o->has_save_last_n_steps_state && o->save_last_n_steps_state
                    ? o->save_last_n_steps_state
                    : (o->has_save_last_n_steps ? o->save_last_n_steps : -1);
    if (last >= 0 && o->save_every_n_steps > 0) {
        long long remove_no = (long long)t->global_step - last - 1;
        /* Python's modulo: the result takes the divisor's sign */
        long long m = remove_no % o->save_every_n_steps;
        if (m < 0)
            m += o->save_every_n_steps;
        remove_no -= m;
        if (remove_no > 0) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/%s-step%08lld-state", o->output_dir, model, remove_no);
            if (file_is_dir(dir)) {
                remove_state_dir(dir);
                log_info("removed the old state %s", dir);
            }
        }
    }
    return 0;
}

int trainer_state_save_epoch(Trainer *t, int epoch_number, int save_every_n_epochs, Error *err) {
    char name[1100];
    const char *model = state_model_name(t, "epoch");
    snprintf(name, sizeof name, "%s-%06d-state", model, epoch_number);
    /* the epoch is over: a resume starts the next one from its beginning */
    if (trainer_state_save(t, name, epoch_number, 0, err) != 0)
        return -1;
    const TrainOptions *o = t->o;
    long last = o->has_save_last_n_epochs_state && o->save_last_n_epochs_state
                    ? o->save_last_n_epochs_state
                    : (o->has_save_last_n_epochs ? o->save_last_n_epochs : -1);
    if (last >= 0) {
        long remove_no = epoch_number - (long)save_every_n_epochs * last;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s-%06ld-state", o->output_dir, model, remove_no);
        if (remove_no != epoch_number && file_is_dir(dir)) {
            remove_state_dir(dir);
            log_info("removed the old state %s", dir);
        }
    }
    return 0;
}

int trainer_state_save_end(Trainer *t, int epoch, size_t position, Error *err) {
    char name[1100];
    snprintf(name, sizeof name, "%s-state", state_model_name(t, "last"));
    return trainer_state_save(t, name, epoch, position, err);
}

/* ------------------------------------------------------------------------------------------ */

static int get_exact(const TensorSet *s, const char *name, DType dtype, size_t count,
                     const NamedTensor **out, Error *err) {
    const NamedTensor *n = tensor_set_find(s, name);
    if (!n)
        return error_set(err, "'%s' is missing", name);
    if (n->dtype != dtype || n->nbytes != count * dtype_size(dtype))
        return error_set(err, "'%s' has the wrong type or size (the state of another run?)", name);
    *out = n;
    return 0;
}

static int get_i64(const TensorSet *s, const char *name, int64_t *v, Error *err) {
    const NamedTensor *n = NULL;
    if (get_exact(s, name, DTYPE_I64, 1, &n, err) != 0)
        return -1;
    memcpy(v, n->data, sizeof *v);
    return 0;
}

static int load_datasets(Trainer *t, const TensorSet *s, Error *err) {
    char name[128];
    for (size_t d = 0; d < t->dataset_count; d++) {
        Dataset *ds = &t->datasets[d];
        int64_t seed, cur;
        snprintf(name, sizeof name, "dataset.%zu.seed", d);
        if (get_i64(s, name, &seed, err) != 0)
            return -1;
        snprintf(name, sizeof name, "dataset.%zu.current_epoch", d);
        if (get_i64(s, name, &cur, err) != 0)
            return -1;
        const NamedTensor *n;
        snprintf(name, sizeof name, "dataset.%zu.batches", d);
        if (get_exact(s, name, DTYPE_I64, ds->batch_count * 2, &n, err) != 0)
            return -1;
        const int64_t *b = n->data;
        for (size_t i = 0; i < ds->batch_count; i++) {
            if (b[2 * i] < 0 || (size_t)b[2 * i] >= ds->bucket_count || b[2 * i + 1] < 0)
                return error_set(err, "'%s': batch %zu is out of range", name, i);
        }
        /* check every bucket before changing anything */
        for (size_t k = 0; k < ds->bucket_count; k++) {
            char bname[128];
            snprintf(bname, sizeof bname, "dataset.%zu.bucket.%zu", d, k);
            const NamedTensor *bn;
            if (get_exact(s, bname, DTYPE_I64, ds->bucket_len[k], &bn, err) != 0)
                return -1;
            const int64_t *items = bn->data;
            for (size_t i = 0; i < ds->bucket_len[k]; i++)
                if (items[i] < 0 || (size_t)items[i] >= ds->image_count)
                    return error_set(err, "'%s': image %lld is out of range", bname,
                                     (long long)items[i]);
        }
        for (size_t i = 0; i < ds->batch_count; i++) {
            ds->batches[i].bucket = (size_t)b[2 * i];
            ds->batches[i].batch_index = (size_t)b[2 * i + 1];
        }
        for (size_t k = 0; k < ds->bucket_count; k++) {
            char bname[128];
            snprintf(bname, sizeof bname, "dataset.%zu.bucket.%zu", d, k);
            const int64_t *items = tensor_set_find(s, bname)->data;
            for (size_t i = 0; i < ds->bucket_len[k]; i++)
                ds->bucket_items[k][i] = (size_t)items[i];
        }
        ds->seed = seed;
        ds->current_epoch = (int)cur;
    }
    return 0;
}

static int load_state(Trainer *t, const TensorSet *s, int64_t *perm, size_t total, int *epoch,
                      size_t *position, Error *err) {
    const char *format = tensor_set_get_meta(s, "format");
    if (!format || strcmp(format, STATE_FORMAT) != 0)
        return error_set(err, "not an sdti state (format '%s', expected '%s')",
                         format ? format : "none", STATE_FORMAT);
    const NamedTensor *n = NULL;
    if (get_exact(s, "rows", DTYPE_F32, (size_t)t->n_vec * t->width, &n, err) != 0)
        return error_prefix(err, "the state's rows do not fit %d vectors of width %d: ", t->n_vec,
                            t->width);
    int64_t step, ep, pos, dstep, sstep;
    if (get_i64(s, "global_step", &step, err) != 0 || get_i64(s, "epoch", &ep, err) != 0 ||
        get_i64(s, "position_in_epoch", &pos, err) != 0 ||
        get_i64(s, "dataset_step", &dstep, err) != 0 || get_i64(s, "shared_step", &sstep, err) != 0)
        return -1;
    if (step < 0 || ep < 0 || ep > 1000000000 || pos < 0 || (size_t)pos > total)
        return error_set(err,
                         "step %lld, epoch %lld, position %lld: out of range for this "
                         "dataset (%zu batches per epoch)",
                         (long long)step, (long long)ep, (long long)pos, total);
    if (pos > 0) {
        const NamedTensor *o;
        if (get_exact(s, "epoch_order", DTYPE_I64, total, &o, err) != 0)
            return error_prefix(err, "(the dataset has %zu batches per epoch) ", total);
        const int64_t *p = o->data;
        for (size_t i = 0; i < total; i++)
            if (p[i] < 0 || (size_t)p[i] >= total)
                return error_set(err, "'epoch_order' is out of range");
        memcpy(perm, p, sizeof *perm * total);
    }
    const NamedTensor *g, *py;
    if (get_exact(s, "torch_rng_state", DTYPE_U8, TORCH_RNG_STATE_SIZE, &g, err) != 0 ||
        get_exact(s, "python_random_state", DTYPE_I64, PY_MT_N + 1, &py, err) != 0)
        return -1;
    const int64_t *pw = py->data;
    if (pw[PY_MT_N] < 0 || pw[PY_MT_N] > PY_MT_N)
        return error_set(err, "'python_random_state': bad position");
    if (torch_rng_set_state(&t->g, g->data, g->nbytes, "torch_rng_state", err) != 0)
        return -1;
    if (optimizer_state_load(&t->opt, s, "optimizer.", err) != 0 || load_datasets(t, s, err) != 0)
        return -1;
    for (int i = 0; i < PY_MT_N; i++)
        t->py.mt[i] = (uint32_t)pw[i];
    t->py.index = (int)pw[PY_MT_N];
    memcpy(t->rows, n->data, n->nbytes);
    if (t->full) {
        size_t vocab = (size_t)t->param_rows - (size_t)t->n_vec, w = (size_t)t->width;
        memcpy(t->full + vocab * w, t->rows, n->nbytes);
    }
    t->global_step = step;
    t->dataset_step = dstep;
    t->shared_step = sstep;
    *epoch = (int)ep;
    *position = (size_t)pos;
    return 0;
}

int trainer_state_load(Trainer *t, const char *dir, int64_t *perm, size_t total, int *epoch,
                       size_t *position, Error *err) {
    char file[4200];
    int len = snprintf(file, sizeof file, "%s/%s", dir, STATE_FILE);
    if (len < 0 || (size_t)len >= sizeof file)
        return error_set(err, "--resume %s: path too long", dir);
    if (!file_is_dir(dir))
        return error_set(err, "--resume %s: no such folder", dir);
    remove_leftovers(t->o->output_dir, 0);
    if (!file_exists(file))
        return error_set(err,
                         "--resume %s: no %s in it (not a state sdti saved; kohya's / "
                         "accelerate's state folders cannot be resumed by sdti)",
                         dir, STATE_FILE);
    TensorSet s;
    tensor_set_init(&s);
    int rc = safetensors_open(file, &s, err);
    rc = rc ? rc : load_state(t, &s, perm, total, epoch, position, err);
    tensor_set_free(&s);
    if (rc != 0)
        return error_prefix(err, "--resume %s: ", file);
    log_info("resumed from %s: step %lld, epoch %d, batch %zu of the epoch", dir,
             (long long)t->global_step, *epoch + 1, *position);
    return 0;
}
