// labels: cli
/* Data-parallel `sdti train` under `mpirun -np 2` (docs/distributed.md) on the tiny SD1 fixture
 * model, one thread per rank:
 *   - 2 ranks of batch 1 give the embedding of one process of batch 2 (the same samples, noise
 *     and timesteps; only the float sums differ), to 1e-6 relative: plain, and with cached
 *     latents, gradient accumulation and a bucket whose last batch leaves one rank nothing;
 *   - a 2-rank run stopped by --max_train_steps and resumed, and a run resumed from the step
 *     state an uninterrupted run left on the way (what a killed run leaves), end bit-identical
 *     to the uninterrupted run; that state resumed by one process of batch 2 ends within 1e-6;
 *   - one rank that meets an unreadable image stops the job with that rank's message, and
 *     neither the final embedding nor a temporary file is left in the output folder.
 * Skipped (with a message) when sdti is built without MPI or mpirun cannot start 2 ranks. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "text/embedding_file.h"
#include "train_support.h"

/* root may run mpirun only with both variables; passive OpenMP waits on a shared machine */
#define MPIRUN                                                                                     \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive "           \
    "mpirun -np 2 --oversubscribe --bind-to none -x OMP_WAIT_POLICY "

static const char *BASE =
    "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string mytok "
    "--init_word cat --num_vectors_per_token 2 --learning_rate 5e-3 --flip_aug "
    "--shuffle_caption --seed 5 --save_model_as safetensors --num_cpu_threads_per_process 1 "
    "--output_dir '%s' %s";

/* Runs sdti train in one process (ranks 0) or under mpirun -np 2; returns the exit code. */
static int train(int ranks, const char *data, const char *out, const char *extra, char **log) {
    char args[8192], cmd[16384];
    snprintf(args, sizeof args, BASE, data, out, extra);
    snprintf(cmd, sizeof cmd, "%s'%s' train --pretrained_model_name_or_path '%s' %s",
             ranks > 1 ? MPIRUN : "OMP_WAIT_POLICY=passive ", getenv("SDTI_BIN"),
             test_fixture(TRAIN_SUPPORT_MODEL), args);
    return test_run(cmd, log);
}

static void train_ok(int ranks, const char *data, const char *out, const char *extra) {
    char *log = NULL;
    int rc = train(ranks, data, out, extra, &log);
    CHECKF(rc == 0, "%d rank(s): sdti train %s failed (%d): %s", ranks, extra, rc, log ? log : "");
    free(log);
}

static bool load(const char *path, Embedding *e) {
    Error err = {0};
    embedding_init(e);
    bool ok = embedding_load(path, e, &err) == 0;
    CHECKF(ok, "%s: %s", path, err.message);
    return ok;
}

/* max relative difference of two embedding files; -1 when either is unreadable */
static double rel_diff(const char *a, const char *b, bool *bit_equal) {
    Embedding ea, eb;
    bool ok_a = load(a, &ea), ok_b = load(b, &eb);
    double d = -1;
    if (ok_a && ok_b && ea.num_vectors == eb.num_vectors && ea.dim == eb.dim) {
        size_t n = (size_t)ea.num_vectors * ea.dim;
        d = test_max_rel_err(ea.data, eb.data, n);
        if (bit_equal)
            *bit_equal = memcmp(ea.data, eb.data, sizeof(float) * n) == 0;
    }
    embedding_free(&ea);
    embedding_free(&eb);
    return d;
}

static void expect_close(const char *what, const char *a, const char *b) {
    double d = rel_diff(a, b, NULL);
    printf("%s: max relative difference %.3g\n", what, d);
    CHECKF(d >= 0 && d <= 1e-6, "%s: %s and %s differ by %.3g (1e-6 allowed)", what, a, b, d);
}

static void expect_same(const char *what, const char *a, const char *b) {
    bool same = false;
    double d = rel_diff(a, b, &same);
    CHECKF(same, "%s: %s and %s are not bit-identical (%.3g)", what, a, b, d);
}

static bool mpi_usable(void) {
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' --version", getenv("SDTI_BIN"));
    bool built = test_run(cmd, &out) == 0 && out && strstr(out, "mpi: yes");
    free(out);
    if (!built) {
        printf("test_train_mpi: skipped: sdti is built without MPI (install libopenmpi-dev "
               "openmpi-bin and reconfigure)\n");
        return false;
    }
    out = NULL;
    bool runs = test_run(MPIRUN "true", &out) == 0;
    if (!runs)
        printf("test_train_mpi: skipped: `mpirun -np 2` does not start here: %s\n", out ? out : "");
    free(out);
    return runs;
}

/* True when dir holds a file whose name contains `part`. */
static bool dir_has(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, part))
            found = true;
    if (d)
        closedir(d);
    return found;
}

int main(void) {
    if (!getenv("SDTI_BIN") || !mpi_usable())
        return test_finish();
    char tmp[512], data[1024], data5[1024], dir[1100], a[1400], b[1400], out[1100], extra[4096];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_mpi"));
    snprintf(dir, sizeof dir, "%s/data/2_thing", tmp);
    train_support_make_images(dir, 6, "mytok, a red thing, on a table, photo");
    snprintf(data, sizeof data, "%s/data", tmp);
    /* 5 images: batches of 2, 2 and 1 (the last leaves rank 0 nothing) */
    snprintf(dir, sizeof dir, "%s/data5/1_thing", tmp);
    train_support_make_images(dir, 5, "mytok, a red thing, on a table, photo");
    snprintf(data5, sizeof data5, "%s/data5", tmp);

    /* 2 ranks x batch 1 == 1 process x batch 2 */
    snprintf(out, sizeof out, "%s/one", tmp);
    train_ok(1, data, out, "--train_batch_size 2 --max_train_steps 5");
    snprintf(out, sizeof out, "%s/two", tmp);
    train_ok(2, data, out, "--train_batch_size 1 --max_train_steps 5");
    snprintf(a, sizeof a, "%s/one/mytok.safetensors", tmp);
    snprintf(b, sizeof b, "%s/two/mytok.safetensors", tmp);
    expect_close("5 steps, 2 ranks vs 1 process", a, b);

    const char *acc = "--max_train_steps 4 --cache_latents --gradient_accumulation_steps 2";
    snprintf(out, sizeof out, "%s/one_acc", tmp);
    snprintf(extra, sizeof extra, "--train_batch_size 2 %s", acc);
    train_ok(1, data5, out, extra);
    snprintf(out, sizeof out, "%s/two_acc", tmp);
    snprintf(extra, sizeof extra, "--train_batch_size 1 %s", acc);
    train_ok(2, data5, out, extra);
    snprintf(a, sizeof a, "%s/one_acc/mytok.safetensors", tmp);
    snprintf(b, sizeof b, "%s/two_acc/mytok.safetensors", tmp);
    expect_close("cached latents, accumulation, a short batch: 2 ranks vs 1 process", a, b);

    /* resume: uninterrupted 8 steps (leaving a state at step 3) against stopped + resumed */
    snprintf(out, sizeof out, "%s/full", tmp);
    train_ok(2, data, out,
             "--train_batch_size 1 --max_train_steps 8 --save_every_n_steps 3 --save_state");
    snprintf(out, sizeof out, "%s/part", tmp);
    train_ok(2, data, out, "--train_batch_size 1 --max_train_steps 3 --save_state_on_train_end");
    snprintf(extra, sizeof extra, "--train_batch_size 1 --max_train_steps 8 --resume '%s/part/%s'",
             tmp, "mytok-state");
    train_ok(2, data, out, extra);
    snprintf(a, sizeof a, "%s/full/mytok.safetensors", tmp);
    snprintf(b, sizeof b, "%s/part/mytok.safetensors", tmp);
    expect_same("2 ranks stopped at step 3 and resumed", a, b);

    snprintf(out, sizeof out, "%s/killed", tmp);
    snprintf(extra, sizeof extra, "--train_batch_size 1 --max_train_steps 8 --resume '%s/full/%s'",
             tmp, "mytok-step00000003-state");
    train_ok(2, data, out, extra);
    snprintf(b, sizeof b, "%s/killed/mytok.safetensors", tmp);
    expect_same("2 ranks resumed from the step-3 state of the uninterrupted run", a, b);

    /* the same global batch in one process continues the 2-rank state */
    snprintf(out, sizeof out, "%s/one_resumed", tmp);
    snprintf(extra, sizeof extra, "--train_batch_size 2 --max_train_steps 8 --resume '%s/full/%s'",
             tmp, "mytok-step00000003-state");
    train_ok(1, data, out, extra);
    snprintf(b, sizeof b, "%s/one_resumed/mytok.safetensors", tmp);
    expect_close("the 2-rank state resumed by 1 process of batch 2", a, b);

    /* a broken image: in each global batch of 2, rank 0 takes one image and rank 1 the other
     * (img1.png, truncated inside its data: the header still gives the size for the buckets) */
    snprintf(dir, sizeof dir, "%s/bad/1_thing", tmp);
    train_support_make_images(dir, 2, "mytok, a red thing, on a table, photo");
    snprintf(a, sizeof a, "%s/img1.png", dir);
    CHECK(truncate(a, 200) == 0);
    snprintf(data, sizeof data, "%s/bad", tmp);
    snprintf(out, sizeof out, "%s/bad_out", tmp);
    char *log = NULL;
    int rc = train(2, data, out, "--train_batch_size 1 --max_train_steps 4 --save_every_n_steps 1",
                   &log);
    CHECKF(rc != 0, "a truncated image did not stop the job: %s", log ? log : "");
    CHECKF(log && strstr(log, "sdti train: rank ") && strstr(log, "img1.png") &&
               strstr(log, "truncated"),
           "the failing rank's message is missing: %s", log ? log : "");
    free(log);
    CHECKF(!dir_has(out, "mytok") && !dir_has(out, ".tmp"), "%s holds files from the failed job",
           out);
    return test_finish();
}
