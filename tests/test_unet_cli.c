// labels: cli golden
/* `sdti forward --component unet` against the diffusers fixtures of
 * tools/reference/make_unet_fixtures.py (their files double as --inputs): both tiny
 * pipelines, in the diffusers and single-file LDM layouts, with and without
 * --gradient_checkpointing, fp16 weight storage; a float32 timestep; and the errors for
 * missing and mis-shaped inputs. Error measure: max|ours - ref| / max|ref|, 1e-4 in fp32,
 * 1e-2 with --mixed_precision fp16. */
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

static void compare(const char *out_path, const TensorSet *ref, const char *name, double tol,
                    const char *label) {
    TensorSet got;
    tensor_set_init(&got);
    Error err = {{0}};
    if (safetensors_open(out_path, &got, &err) != 0) {
        CHECKF(0, "%s: %s", label, err.message);
        return;
    }
    const NamedTensor *g = tensor_set_find(&got, name), *r = tensor_set_find(ref, name);
    CHECKF(g && r && g->dtype == DTYPE_F32 && g->nbytes == r->nbytes, "%s: output %s missing",
           label, name);
    if (g && r && g->nbytes == r->nbytes && g->dtype == DTYPE_F32) {
        double e = rel_error(g->data, r->data, (size_t)tensor_numel(r));
        printf("%s %s: %.2e\n", label, name, e);
        CHECKF(e <= tol, "%s: %s error %.3g > %.0e", label, name, e, tol);
    }
    tensor_set_free(&got);
}

static int run_forward(const char *model, const char *inputs, const char *out, const char *extra,
                       char **output) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' forward --model '%s' --component unet --inputs '%s' --out '%s' --threads 2 %s",
             getenv("SDTI_BIN"), model, inputs, out, extra);
    return test_run(cmd, output);
}

static void check(const char *tmp, const char *model, const char *fixture, const char *extra,
                  double tol) {
    TensorSet ref;
    tensor_set_init(&ref);
    Error err = {{0}};
    const char *inputs = test_fixture(fixture);
    char in_copy[1024], out[1024];
    snprintf(in_copy, sizeof in_copy, "%s", inputs);
    snprintf(out, sizeof out, "%s/out.safetensors", tmp);
    if (safetensors_open(in_copy, &ref, &err) != 0) {
        CHECKF(0, "%s: %s", fixture, err.message);
        return;
    }
    char *log = NULL;
    int rc = run_forward(test_fixture(model), in_copy, out, extra, &log);
    CHECKF(rc == 0, "sdti forward %s %s %s failed: %s", model, fixture, extra, log);
    if (rc == 0) {
        char label[512];
        snprintf(label, sizeof label, "%s %s %s", model, fixture, extra);
        compare(out, &ref, "out", tol, label);
        compare(out, &ref, "grad_encoder_hidden_states", tol, label);
    }
    free(log);
    tensor_set_free(&ref);
}

/* Writes the fixture's tensors minus `drop`, with `replace` given a new dtype/shape. */
static void write_variant(const char *fixture, const char *path, const char *drop,
                          const char *float_timestep, int bad_ehs) {
    TensorSet src, dst;
    tensor_set_init(&src);
    tensor_set_init(&dst);
    Error err = {{0}};
    CHECK_OK(safetensors_open(test_fixture(fixture), &src, &err), &err);
    for (size_t i = 0; i < src.count; i++) {
        const NamedTensor *t = &src.items[i];
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        if (float_timestep && strcmp(t->name, "timestep") == 0) {
            float ts[16];
            const int64_t *v = t->data;
            for (int64_t j = 0; j < t->shape[0] && j < 16; j++)
                ts[j] = (float)v[j];
            CHECK_OK(tensor_set_add_copy(&dst, t->name, DTYPE_F32, 1, t->shape, ts, &err), &err);
            continue;
        }
        if (bad_ehs && strcmp(t->name, "encoder_hidden_states") == 0) {
            int64_t shape[3] = {t->shape[0], t->shape[1] * 2, t->shape[2] / 2};
            CHECK_OK(tensor_set_add(&dst, t->name, t->dtype, 3, shape, t->data, &err), &err);
            continue;
        }
        CHECK_OK(tensor_set_add(&dst, t->name, t->dtype, t->ndim, t->shape, t->data, &err), &err);
    }
    CHECK_OK(safetensors_write(path, &dst, &err), &err);
    tensor_set_free(&dst);
    tensor_set_free(&src);
}

int main(void) {
    const char *tmp = test_tmp_dir("test_unet_cli");
    check(tmp, "models/sd1-tiny/diffusers", "unet/sd1-8x12.safetensors", "", 1e-4);
    check(tmp, "models/sd1-tiny/ldm.safetensors", "unet/sd1-8x8.safetensors",
          "--gradient_checkpointing", 1e-4);
    check(tmp, "models/sd2-tiny/diffusers", "unet/sd2-8x12.safetensors", "--gradient_checkpointing",
          1e-4);
    check(tmp, "models/sd2-tiny/ldm.safetensors", "unet/sd2-8x8.safetensors",
          "--mixed_precision fp16", 1e-2);

    /* a float32 timestep works as the int64 one */
    char path[1024];
    snprintf(path, sizeof path, "%s/float_timestep.safetensors", tmp);
    write_variant("unet/sd1-8x8.safetensors", path, NULL, "float", 0);
    TensorSet ref;
    tensor_set_init(&ref);
    Error err = {{0}};
    CHECK_OK(safetensors_open(test_fixture("unet/sd1-8x8.safetensors"), &ref, &err), &err);
    char out[1024], *log = NULL;
    snprintf(out, sizeof out, "%s/out_float.safetensors", tmp);
    CHECK(run_forward(test_fixture("models/sd1-tiny/diffusers"), path, out, "", &log) == 0);
    compare(out, &ref, "out", 1e-4, "float32 timestep");
    compare(out, &ref, "grad_encoder_hidden_states", 1e-4, "float32 timestep");
    free(log);
    tensor_set_free(&ref);

    /* errors name the tensor and the file */
    const char *needed[3] = {"sample", "timestep", "encoder_hidden_states"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/missing_%s.safetensors", tmp, needed[i]);
        write_variant("unet/sd1-8x8.safetensors", path, needed[i], NULL, 0);
        int rc = run_forward(test_fixture("models/sd1-tiny/diffusers"), path, out, "", &log);
        char want[256];
        snprintf(want, sizeof want, "no tensor '%s'", needed[i]);
        CHECKF(rc != 0 && log && strstr(log, want) && strstr(log, path), "missing %s: rc %d, %s",
               needed[i], rc, log);
        free(log);
    }
    snprintf(path, sizeof path, "%s/bad_ehs.safetensors", tmp);
    write_variant("unet/sd2-8x8.safetensors", path, NULL, NULL, 1);
    int rc = run_forward(test_fixture("models/sd2-tiny/diffusers"), path, out, "", &log);
    CHECKF(rc != 0 && log && strstr(log, "'encoder_hidden_states' has shape [2, 154, 4]") &&
               strstr(log, path),
           "mis-shaped encoder_hidden_states: rc %d, %s", rc, log);
    free(log);
    return test_finish();
}
