// labels: golden
/* Every layout of both tiny reference pipelines loads to the same tensors: the diffusers
 * folder (written by diffusers itself) is the reference; the LDM .safetensors / .ckpt files
 * were checked by tools/reference against diffusers' own single-file loader. Also the
 * architecture read from each layout, and the errors for folders and ids that are not models. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "models/model_files.h"
#include "test_util.h"

static void compare_components(const ModelFiles *ref, const ModelFiles *got, const char *label,
                               bool half) {
    for (int c = 0; c < COMPONENT_COUNT; c++) {
        const TensorSet *a = &ref->components[c], *b = &got->components[c];
        CHECKF(a->count == b->count, "%s %s: %zu tensors, reference has %zu", label,
               model_component_name((ModelComponent)c), b->count, a->count);
        size_t mismatched = 0;
        const char *first_bad = NULL;
        for (size_t i = 0; i < a->count; i++) {
            const NamedTensor *ta = &a->items[i];
            const NamedTensor *tb = tensor_set_find(b, ta->name);
            bool same = tb && tb->ndim == ta->ndim &&
                        memcmp(tb->shape, ta->shape, sizeof(int64_t) * (size_t)ta->ndim) == 0;
            if (same && !half) {
                same = tb->dtype == ta->dtype && tb->nbytes == ta->nbytes &&
                       memcmp(tb->data, ta->data, ta->nbytes) == 0;
            } else if (same) {
                /* The fp16 file must hold exactly the reference values rounded to fp16. */
                size_t n = (size_t)tensor_numel(ta);
                float *fa = malloc(n * sizeof *fa + 1);
                uint16_t *ha = malloc(n * 2 + 1);
                same = fa && ha && tb->dtype == DTYPE_F16 && ta->dtype == DTYPE_F32 &&
                       tensor_to_f32(ta, fa, NULL) == 0;
                if (same) {
                    dtype_convert_from_f32(DTYPE_F16, fa, ha, n);
                    same = memcmp(ha, tb->data, n * 2) == 0;
                }
                free(fa);
                free(ha);
            }
            if (!same) {
                mismatched++;
                if (!first_bad)
                    first_bad = ta->name;
            }
        }
        CHECKF(mismatched == 0, "%s %s: %zu tensors differ from the reference (first: %s)", label,
               model_component_name((ModelComponent)c), mismatched, first_bad ? first_bad : "-");
    }
}

static void compare_config(const ModelConfig *a, const ModelConfig *b, const char *label) {
    CHECKF(a->version == b->version, "%s: version", label);
    CHECKF(memcmp(&a->clip, &b->clip, sizeof a->clip) == 0, "%s: text encoder config differs",
           label);
    const UnetConfig *ua = &a->unet, *ub = &b->unet;
    CHECKF(ua->num_levels == ub->num_levels &&
               memcmp(ua->block_out_channels, ub->block_out_channels,
                      sizeof ua->block_out_channels) == 0 &&
               ua->layers_per_block == ub->layers_per_block,
           "%s: UNet channels or levels differ", label);
    CHECKF(memcmp(ua->heads, ub->heads, sizeof ua->heads) == 0, "%s: UNet heads differ", label);
    CHECKF(ua->upcast_attention == ub->upcast_attention,
           "%s: UNet upcast_attention differs (%d vs %d)", label, ua->upcast_attention,
           ub->upcast_attention);
    CHECKF(ua->norm_num_groups == ub->norm_num_groups, "%s: UNet norm_num_groups differs", label);
    CHECKF(memcmp(ua, ub, sizeof *ua) == 0, "%s: UNet config differs", label);
    CHECKF(memcmp(&a->vae, &b->vae, sizeof a->vae) == 0, "%s: VAE config differs", label);
    CHECKF(a->prediction == b->prediction, "%s: prediction type differs", label);
}

static void check_model(const char *name, SdVersion version) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", test_fixture("models/"));
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    Error err = {{0}};
    ModelFiles ref, got;
    snprintf(path, sizeof path, "%s/diffusers", dir);
    if (model_files_open(path, NULL, &ref, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    CHECKF(ref.config.version == version, "%s: detected %s", name,
           sd_version_name(ref.config.version));
    static const char *const files[] = {"ldm.safetensors", "ldm.ckpt", "ldm-fp16.ckpt"};
    for (int f = 0; f < 3; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        if (model_files_open(path, NULL, &got, &err) != 0) {
            CHECKF(false, "%s: %s", path, err.message);
            continue;
        }
        compare_components(&ref, &got, path, f == 2);
        compare_config(&ref.config, &got.config, path);
        CHECKF(got.report.unexpected_count == 0, "%s: %zu unexpected keys (first: %s)", path,
               got.report.unexpected_count,
               got.report.unexpected_count ? got.report.unexpected[0] : "");
        CHECKF(got.report.ignored_count > 0, "%s: the EMA/DDPM extras were not seen", path);
        model_files_close(&got);
    }
    model_files_close(&ref);
}

/* sd1-tiny/diffusers-variants: sharded UNet, .bin text encoder, fp16-variant VAE. */
static void check_variants(void) {
    char ref_path[600], var_path[600];
    snprintf(ref_path, sizeof ref_path, "%s", test_fixture("models/sd1-tiny/diffusers"));
    snprintf(var_path, sizeof var_path, "%s", test_fixture("models/sd1-tiny/diffusers-variants"));
    Error err = {{0}};
    ModelFiles ref, var, half;
    if (model_files_open(ref_path, NULL, &ref, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    if (model_files_open(var_path, NULL, &var, &err) != 0) {
        CHECKF(false, "%s", err.message);
        model_files_close(&ref);
        return;
    }
    /* UNet and text encoder are fp32 in both; the VAE variant is fp16. */
    for (int c = 0; c < COMPONENT_COUNT; c++) {
        const TensorSet *a = &ref.components[c], *b = &var.components[c];
        size_t bad = 0;
        for (size_t i = 0; i < a->count; i++) {
            const NamedTensor *tb = tensor_set_find(b, a->items[i].name);
            if (!tb)
                bad++;
            else if (c != COMPONENT_VAE && (tb->nbytes != a->items[i].nbytes ||
                                            memcmp(tb->data, a->items[i].data, tb->nbytes) != 0))
                bad++;
            else if (c == COMPONENT_VAE && tb->dtype != DTYPE_F16)
                bad++;
        }
        CHECKF(bad == 0 && a->count == b->count, "variants %s: %zu of %zu tensors differ",
               model_component_name((ModelComponent)c), bad, a->count);
    }
    /* The fp16 VAE variant (cast by torch) equals the fp16 checkpoint's VAE (cast by torch). */
    char half_path[600];
    snprintf(half_path, sizeof half_path, "%s", test_fixture("models/sd1-tiny/ldm-fp16.ckpt"));
    if (model_files_open(half_path, NULL, &half, &err) == 0) {
        const TensorSet *a = &var.components[COMPONENT_VAE], *b = &half.components[COMPONENT_VAE];
        size_t bad = 0;
        for (size_t i = 0; i < a->count; i++) {
            const NamedTensor *tb = tensor_set_find(b, a->items[i].name);
            if (!tb || tb->nbytes != a->items[i].nbytes ||
                memcmp(tb->data, a->items[i].data, tb->nbytes) != 0)
                bad++;
        }
        CHECKF(bad == 0, "fp16 VAE variant vs fp16 checkpoint: %zu tensors differ", bad);
        model_files_close(&half);
    } else {
        CHECKF(false, "%s", err.message);
    }
    model_files_close(&var);
    model_files_close(&ref);
}

static void check_errors(void) {
    Error err = {{0}};
    ModelFiles mf;
    const char *tmp = test_tmp_dir("test_model_files");
    char path[1024], cmd[3000];

    snprintf(path, sizeof path, "%s/empty", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    CHECK(system(cmd) == 0);
    CHECK_FAILS_WITH(model_files_open(path, NULL, &mf, &err), &err, "no model_index.json");

    snprintf(path, sizeof path, "%s/nothing-here.safetensors", tmp);
    CHECK_FAILS_WITH(model_files_open(path, NULL, &mf, &err), &err, "no such file or folder");

    snprintf(path, sizeof path, "%s/notes.txt", tmp);
    test_write_file(path, "hello, world\n", 13);
    CHECK_FAILS_WITH(model_files_open(path, NULL, &mf, &err), &err, "unrecognised first bytes");

    /* A model id: absent from the cache, then present (a snapshot linking to the fixture). */
    snprintf(path, sizeof path, "%s/hub", tmp);
    setenv("HF_HUB_CACHE", path, 1);
    setenv("HF_HOME", tmp, 1);
    CHECK_FAILS_WITH(model_files_open("nobody/no-such-model", NULL, &mf, &err), &err,
                     "models--nobody--no-such-model");
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/hub/models--test--sd1-tiny/refs' "
             "'%s/hub/models--test--sd1-tiny/snapshots' && "
             "printf 'abc123\\n' > '%s/hub/models--test--sd1-tiny/refs/main' && "
             "ln -sfn '%s' '%s/hub/models--test--sd1-tiny/snapshots/abc123'",
             tmp, tmp, tmp, test_fixture("models/sd1-tiny/diffusers"), tmp);
    CHECK(system(cmd) == 0);
    if (model_files_open("test/sd1-tiny", NULL, &mf, &err) == 0) {
        CHECK(mf.layout == LAYOUT_DIFFUSERS && mf.config.version == SD_VERSION_1);
        CHECK(strstr(mf.path, "snapshots/abc123") != NULL);
        model_files_close(&mf);
    } else {
        CHECKF(false, "HF cache lookup: %s", err.message);
    }

    /* --v2 on an SD1 model names both. */
    ModelOpenOptions v2 = {.v2 = true};
    CHECK_FAILS_WITH(
        model_files_open(test_fixture("models/sd1-tiny/ldm.safetensors"), &v2, &mf, &err), &err,
        "--v2 says SD2.x, but the weights are SD1.x");
}

int main(void) {
    check_model("sd1-tiny", SD_VERSION_1);
    check_model("sd2-tiny", SD_VERSION_2);
    check_variants();
    check_errors();
    return test_finish();
}
