// labels: golden cli
/* `sdti train --replay` against kohya's textual-inversion step in PyTorch
 * (tools/reference/kohya_ti_step.py, fixtures in tests/fixtures/train_replay/): the reference
 * drew every sample order, timestep and noise of a K = 5 step run and wrote them with the
 * latents and its trajectory; sdti replays the draws and must follow the same trajectory: the
 * initial rows (init word), the learning rate, the loss of every step, the new rows' clipped
 * gradient and the rows after every step.
 *   sd1: epsilon, clip_skip 2, clipping that acts on most steps;
 *   sd2: v-prediction (--v2 --v_parameterization), some steps clipped;
 * both with N = 2 vectors, batch 2, AdamW, cosine schedule with warm-up, with and without
 * --gradient_checkpointing, and under --mixed_precision fp16 / bf16;
 *   sd1_accum: --gradient_accumulation_steps 2 (10 micro-batches), --max_token_length 150
 *   (two 77-token chunks), --min_snr_gamma 5, a linear schedule;
 *   sd2_adafactor: Adafactor (relative_step=False ...) over kohya's whole embedding matrix.
 * Tolerances (max|d| / max|ref|): 1e-4 for the float32 runs (about 1e-6 measured). Mixed
 * precision is not the same arithmetic on both sides: kohya runs the UNet and the text encoder
 * under autocast (half-precision matmuls, half latents and noise), sdti stores the weights in
 * the half type and computes in float32; measured 1.1e-3 (fp16) and 9e-3 (bf16) on the
 * gradients, so 5e-3 and 3e-2 are allowed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "formats/tensor_set.h"
#include "test_util.h"

typedef struct ReplayCase {
    const char *fixture; /* train_replay/<fixture>.safetensors */
    const char *model;   /* models/<model>/diffusers */
    const char *extra;   /* more sdti options */
    double tol;
} ReplayCase;

static const ReplayCase CASES[] = {
    {"sd1_fp32", "sd1-tiny", "", 1e-4},
    {"sd1_fp32", "sd1-tiny", "--gradient_checkpointing", 1e-4},
    {"sd2_fp32", "sd2-tiny", "", 1e-4},
    {"sd2_fp32", "sd2-tiny", "--gradient_checkpointing", 1e-4},
    {"sd1_accum_fp32", "sd1-tiny", "", 1e-4},
    {"sd2_adafactor_fp32", "sd2-tiny", "", 1e-4},
    {"sd1_fp16", "sd1-tiny", "", 5e-3},
    {"sd1_bf16", "sd1-tiny", "--gradient_checkpointing", 3e-2},
    {"sd2_fp16", "sd2-tiny", "--gradient_checkpointing", 5e-3},
    {"sd2_bf16", "sd2-tiny", "", 3e-2},
};

/* Compares `name` of the trajectory with `expected_<name>` of the replay file. */
static void compare(const TensorSet *got, const TensorSet *ref, const char *name, double tol,
                    const char *label) {
    char ref_name[64];
    snprintf(ref_name, sizeof ref_name, "expected_%s", name);
    size_t n = 0, m = 0;
    float *a = test_load_f32(got, name, &n), *b = test_load_f32(ref, ref_name, &m);
    CHECKF(a && b && n == m && n > 0, "%s: %s has %zu values, the reference %zu", label, name, n,
           m);
    if (a && b && n == m && n > 0) {
        double e = test_max_rel_err(a, b, n);
        printf("%-42s %-9s max rel err %.3g (allowed %.0e)\n", label, name, e, tol);
        CHECKF(e <= tol, "%s: %s differs from the reference by %.3g (allowed %g)", label, name, e,
               tol);
    }
    free(a);
    free(b);
}

static void run_case(const ReplayCase *c, int index) {
    char replay[1024], label[128], out[1024], cmd[8192];
    snprintf(replay, sizeof replay, "%s/train_replay/%s.safetensors", SDTI_FIXTURES, c->fixture);
    snprintf(label, sizeof label, "%s %s", c->fixture, c->extra);
    snprintf(out, sizeof out, "%s/case%d", test_tmp_dir("test_train_replay"), index);
    TensorSet ref;
    tensor_set_init(&ref);
    Error err = {0};
    CHECK_OK(safetensors_open(replay, &ref, &err), &err);
    const char *args = tensor_set_get_meta(&ref, "sdti_args");
    CHECKF(args != NULL, "%s: no sdti_args metadata", replay);
    if (args) {
        char model[1024], images[1024];
        snprintf(model, sizeof model, "%s/models/%s/diffusers", SDTI_FIXTURES, c->model);
        snprintf(images, sizeof images, "%s", test_fixture("train_replay/images"));
        snprintf(
            cmd, sizeof cmd,
            "rm -rf '%s' && OMP_WAIT_POLICY=passive %s train --pretrained_model_name_or_path '%s' "
            "--train_data_dir '%s' --output_dir '%s' --replay '%s' %s %s",
            out, getenv("SDTI_BIN"), model, images, out, replay, args, c->extra);
        char *log = NULL;
        int rc = test_run(cmd, &log);
        CHECKF(rc == 0, "%s: sdti train failed (%d):\n%s", label, rc, log ? log : "");
        free(log);
        char traj[1200];
        snprintf(traj, sizeof traj, "%s/replay_trajectory.safetensors", out);
        TensorSet got;
        tensor_set_init(&got);
        if (rc == 0 && safetensors_open(traj, &got, &err) == 0) {
            compare(&got, &ref, "rows_init", 1e-6, label);
            compare(&got, &ref, "lr", 1e-6, label);
            compare(&got, &ref, "loss", c->tol, label);
            compare(&got, &ref, "grad", c->tol, label);
            compare(&got, &ref, "rows", c->tol, label);
        } else {
            CHECKF(rc != 0, "%s: cannot read %s: %s", label, traj, err.message);
        }
        tensor_set_free(&got);
    }
    tensor_set_free(&ref);
}

/* A file that is not a replay file, and a run longer than the file: clear errors. */
static void test_refusals(void) {
    char cmd[8192], model[1024], images[1024], replay[1024];
    const char *out = test_tmp_dir("test_train_replay_refusals");
    snprintf(model, sizeof model, "%s", test_fixture("models/sd1-tiny/diffusers"));
    snprintf(images, sizeof images, "%s", test_fixture("train_replay/images"));
    snprintf(replay, sizeof replay, "%s", test_fixture("train_replay/sd1_fp32.safetensors"));
    const char *base = "OMP_WAIT_POLICY=passive %s train --pretrained_model_name_or_path '%s' "
                       "--train_data_dir '%s' "
                       "--output_dir '%s/o' --resolution 32 --caption_extension .txt "
                       "--token_string mytok --num_vectors_per_token 2 --train_batch_size 2 "
                       "--replay '%s' %s";
    char *log = NULL;
    snprintf(cmd, sizeof cmd, base, getenv("SDTI_BIN"), model, images, out,
             test_fixture("train_math/train_math.safetensors"), "--max_train_steps 1");
    CHECK(test_run(cmd, &log) == 1 && log && strstr(log, "not a replay file"));
    free(log);
    snprintf(cmd, sizeof cmd, base, getenv("SDTI_BIN"), model, images, out, replay,
             "--max_train_steps 6");
    CHECK(test_run(cmd, &log) == 1 && log && strstr(log, "5 batches, the run needs up to 6"));
    free(log);
}

int main(void) {
    if (!getenv("SDTI_BIN")) {
        printf("SDTI_BIN not set: skipped\n");
        return test_finish();
    }
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        run_case(&CASES[i], (int)i);
    test_refusals();
    return test_finish();
}
