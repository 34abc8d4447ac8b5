// labels: cli golden
/* `sdti forward --component vae-encode / vae-decode` on the single-file LDM layouts of both
 * tiny pipelines (sd1-tiny's VAE attention is stored as 1x1 convolutions there, sd2-tiny's as
 * linear weights) against the diffusers fixtures of tools/reference/make_vae_fixtures.py, whose
 * files double as the --inputs. Error measure: max|ours - ref| / max|ref|, 1e-4 in fp32, 1e-2
 * with fp16 weights (the fp16 checkpoint, and --mixed_precision bf16). Also the errors for a
 * missing and a mis-shaped input tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "test_util.h"

static double rel_error(const float *got, const float *ref, size_t n) {
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= diff))
            diff = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > mag)
            mag = fabs(ref[i]);
    }
    return mag > 0 ? diff / mag : diff;
}

static void compare(const TensorSet *got, const char *got_name, const TensorSet *ref,
                    const char *ref_name, double tol, const char *label) {
    const NamedTensor *g = tensor_set_find(got, got_name), *r = tensor_set_find(ref, ref_name);
    CHECKF(g && r && g->dtype == DTYPE_F32 && g->ndim == r->ndim &&
               memcmp(g->shape, r->shape, sizeof(int64_t) * (size_t)r->ndim) == 0,
           "%s: output %s missing or shaped unlike the reference %s", label, got_name, ref_name);
    if (!g || !r || g->nbytes != r->nbytes || g->dtype != DTYPE_F32)
        return;
    double e = rel_error(g->data, r->data, (size_t)tensor_numel(r));
    printf("%s %s: %.2e\n", label, got_name, e);
    CHECKF(e <= tol, "%s: %s error %.3g > %.0e", label, got_name, e, tol);
}

static int run_forward(const char *model, const char *component, const char *inputs,
                       const char *out, const char *extra, char **output) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' forward --model '%s' --component %s --inputs '%s' --out '%s' --threads 2 %s",
             getenv("SDTI_BIN"), model, component, inputs, out, extra);
    return test_run(cmd, output);
}

static void check_layout(const char *tmp, const char *model, const char *file, const char *extra,
                         double tol) {
    char model_path[1024], rel[256], out[1024], label[256];
    snprintf(rel, sizeof rel, "models/%s/%s", model, file);
    snprintf(model_path, sizeof model_path, "%s", test_fixture(rel));
    const int sizes[][2] = {{32, 32}, {32, 48}};
    for (int s = 0; s < 2; s++) {
        snprintf(rel, sizeof rel, "vae/%s-%dx%d.safetensors", model, sizes[s][0], sizes[s][1]);
        const char *inputs = test_fixture(rel);
        snprintf(label, sizeof label, "%s/%s %s %dx%d", model, file, extra, sizes[s][0],
                 sizes[s][1]);
        TensorSet ref;
        tensor_set_init(&ref);
        Error err = {{0}};
        CHECK_OK(safetensors_open(inputs, &ref, &err), &err);
        const char *components[] = {"vae-encode", "vae-decode"};
        for (int c = 0; c < 2; c++) {
            snprintf(out, sizeof out, "%s/%s.safetensors", tmp, components[c]);
            char *log = NULL;
            int rc = run_forward(model_path, components[c], inputs, out, extra, &log);
            CHECKF(rc == 0, "%s %s: exit %d: %s", label, components[c], rc, log ? log : "");
            free(log);
            TensorSet got;
            tensor_set_init(&got);
            if (rc == 0 && safetensors_open(out, &got, &err) == 0) {
                if (c == 0) {
                    compare(&got, "mean", &ref, "mean", tol, label);
                    compare(&got, "logvar", &ref, "logvar", tol, label);
                } else {
                    compare(&got, "image", &ref, "decoded", tol, label);
                }
            }
            tensor_set_free(&got);
        }
        tensor_set_free(&ref);
    }
}

static void check_input_errors(const char *tmp) {
    char model[1024], inputs[1024], out[1024];
    snprintf(model, sizeof model, "%s", test_fixture("models/sd1-tiny/ldm.safetensors"));
    snprintf(inputs, sizeof inputs, "%s/bad-inputs.safetensors", tmp);
    snprintf(out, sizeof out, "%s/bad-out.safetensors", tmp);
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    static const float zeros[2 * 3 * 16 * 16];
    const int64_t shape[4] = {2, 3, 16, 16}; /* 3 channels: an image, not latents */
    CHECK_OK(tensor_set_add(&set, "latents", DTYPE_F32, 4, shape, zeros, &err), &err);
    CHECK_OK(safetensors_write(inputs, &set, &err), &err);
    tensor_set_free(&set);

    char *log = NULL;
    int rc = run_forward(model, "vae-encode", inputs, out, "", &log);
    CHECKF(rc != 0 && log && strstr(log, "no tensor 'image'") && strstr(log, "bad-inputs"),
           "missing image: exit %d: %s", rc, log ? log : "");
    free(log);
    rc = run_forward(model, "vae-decode", inputs, out, "", &log);
    CHECKF(rc != 0 && log && strstr(log, "'latents' has shape [2, 3, 16, 16]") &&
               strstr(log, "bad-inputs"),
           "mis-shaped latents: exit %d: %s", rc, log ? log : "");
    free(log);
}

int main(void) {
    const char *tmp = test_tmp_dir("test_vae_cli");
    check_layout(tmp, "sd1-tiny", "ldm.safetensors", "", 1e-4);
    check_layout(tmp, "sd2-tiny", "ldm.safetensors", "", 1e-4);
    check_layout(tmp, "sd2-tiny", "diffusers", "", 1e-4);
    check_layout(tmp, "sd1-tiny", "ldm-fp16.ckpt", "--mixed_precision fp16", 1e-2);
    check_layout(tmp, "sd2-tiny", "ldm.ckpt", "--mixed_precision bf16", 1e-2);
    check_input_errors(tmp);
    return test_finish();
}
