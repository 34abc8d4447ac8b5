// labels: golden cli
/* sdti train --vae (kohya's separate VAE, model_util.load_vae): a VAE of the sd1-tiny shapes
 * with other weights, in the layouts kohya reads (a diffusers folder, a VAE-only LDM
 * .safetensors, a whole-checkpoint-style {"state_dict": first_stage_model.*} .ckpt; fixtures:
 * tools/reference/make_train_vae_fixtures.py), encodes a fixed image as diffusers'
 * AutoencoderKL does (mean and logvar within 1e-4, max|d| / max|ref|); a file without VAE
 * weights and a missing path are errors naming them. Then the CLI: latents cached to disk with
 * --vae pointing at the model's own VAE in another layout (its diffusers vae/ folder) are the
 * bytes of the run without --vae, with the other VAE they differ, and a wrong --vae stops the
 * run naming the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "models/model_files.h"
#include "models/vae.h"
#include "models/vae_file.h"
#include "test_util.h"
#include "train/latent_cache.h"
#include "train_support.h"

static void check_layout(NnContext *ctx, const VaeConfig *cfg, const TensorSet *ex,
                         const char *rel) {
    Error err = {{0}};
    VaeFile vf;
    Vae vae;
    const char *path = test_fixture(rel);
    if (vae_file_open(path, &vf, &err) != 0) {
        CHECKF(false, "vae_file_open(%s): %s", rel, err.message);
        return;
    }
    CHECKF(vf.report.unexpected_count == 0, "%s: %zu unexpected keys", rel,
           vf.report.unexpected_count);
    if (vae_load(&vae, &vf.vae, cfg, VAE_ENCODER, DTYPE_F32, &err) != 0) {
        CHECKF(false, "vae_load(%s): %s", rel, err.message);
        vae_file_close(&vf);
        return;
    }
    size_t ni = 0, nm = 0, nl = 0;
    float *image = test_load_f32(ex, "image", &ni);
    float *mean_ref = test_load_f32(ex, "mean", &nm);
    float *logvar_ref = test_load_f32(ex, "logvar", &nl);
    CHECK(image && mean_ref && logvar_ref && nm == nl);
    float *mean = calloc(nm, sizeof *mean), *logvar = calloc(nl, sizeof *logvar);
    if (image && mean_ref && logvar_ref && mean && logvar) {
        CHECK_OK(vae_encode(ctx, &vae, 1, 32, 32, image, mean, logvar, NULL, &err), &err);
        double em = test_max_rel_err(mean, mean_ref, nm);
        double el = test_max_rel_err(logvar, logvar_ref, nl);
        printf("%-36s mean %.2e  logvar %.2e\n", rel, em, el);
        CHECKF(em < 1e-4 && el < 1e-4, "%s: mean err %g, logvar err %g", rel, em, el);
    }
    free(image);
    free(mean_ref);
    free(logvar_ref);
    free(mean);
    free(logvar);
    vae_free(&vae);
    vae_file_close(&vf);
}

static void test_layouts(void) {
    Error err = {{0}};
    ModelFiles mf;
    if (model_files_open(test_fixture("models/sd1-tiny/diffusers"), NULL, &mf, &err) != 0) {
        CHECKF(false, "model: %s", err.message);
        return;
    }
    TensorSet ex;
    tensor_set_init(&ex);
    CHECK_OK(safetensors_open(test_fixture("train_vae/expected.safetensors"), &ex, &err), &err);
    NnContext *ctx = NULL;
    CHECK_OK(nn_context_create(1, &ctx, &err), &err);
    check_layout(ctx, &mf.config.vae, &ex, "train_vae/vae-diffusers");
    check_layout(ctx, &mf.config.vae, &ex, "train_vae/vae-ldm.safetensors");
    check_layout(ctx, &mf.config.vae, &ex, "train_vae/vae-full.ckpt");
    nn_context_free(ctx);
    tensor_set_free(&ex);

    VaeFile vf;
    CHECK_FAILS_WITH(vae_file_open(test_fixture("train_vae/notvae.safetensors"), &vf, &err), &err,
                     "notvae.safetensors: no VAE weights");
    CHECK_FAILS_WITH(vae_file_open(test_fixture("train_vae/missing.safetensors"), &vf, &err), &err,
                     "missing.safetensors: no such file");
    CHECK_FAILS_WITH(vae_file_open(test_fixture("train_vae"), &vf, &err), &err,
                     "a folder without VAE weights");
    /* a whole model folder: its vae/ subfolder (kohya retries with subfolder="vae") */
    int rc = vae_file_open(test_fixture("models/sd1-tiny/diffusers"), &vf, &err);
    CHECKF(rc == 0, "a model folder's vae/: %s", err.message);
    if (rc == 0)
        vae_file_close(&vf);
    model_files_close(&mf);
}

/* The cached latents of an .npz (the zip's entry dates differ between runs, so its bytes do
 * not compare); malloc'd, *n floats. */
static float *read_latents(const char *path, size_t *n) {
    LatentCacheEntry e;
    Error err = {{0}};
    memset(&e, 0, sizeof e);
    if (latent_cache_read(path, &e, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return NULL;
    }
    *n = (size_t)e.channels * e.height * e.width;
    float *out = e.latents;
    e.latents = NULL;
    latent_cache_entry_free(&e);
    return out;
}

/* One step with latents cached to disk in a fresh image folder; returns the cached latents. */
static float *cached_latents(const char *tmp, const char *name, const char *vae_arg, size_t *size) {
    char dir[1024], out[1024], args[4096], path[1200];
    snprintf(dir, sizeof dir, "%s/%s/1_mytok", tmp, name);
    snprintf(out, sizeof out, "%s/%s/out", tmp, name);
    train_support_make_images(dir, 1, "mytok");
    snprintf(args, sizeof args,
             "--train_data_dir '%s/%s' --caption_extension .txt --resolution 64 "
             "--token_string mytok --init_word cat --max_train_steps 1 --output_dir '%s' "
             "--seed 3 --cache_latents_to_disk %s",
             tmp, name, out, vae_arg);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train %s failed (%d): %s", vae_arg, rc, log ? log : "");
    free(log);
    snprintf(path, sizeof path, "%s/img0_0064x0064_sd.npz", dir);
    float *latents = read_latents(path, size);
    CHECKF(latents != NULL, "%s missing", path);
    return latents;
}

static void test_cli(void) {
    const char *tmp = test_tmp_dir("test_train_vae");
    char arg[2048];
    size_t n0 = 0, n1 = 0, n2 = 0;
    float *plain = cached_latents(tmp, "plain", "", &n0);
    snprintf(arg, sizeof arg, "--vae '%s'", test_fixture("models/sd1-tiny/diffusers/vae"));
    float *same = cached_latents(tmp, "same", arg, &n1);
    snprintf(arg, sizeof arg, "--vae '%s'", test_fixture("train_vae/vae-ldm.safetensors"));
    float *other = cached_latents(tmp, "other", arg, &n2);
    CHECKF(plain && same && n0 == n1 && memcmp(plain, same, n0 * sizeof(float)) == 0,
           "--vae with the model's own VAE changed the cached latents");
    CHECKF(plain && other && (n0 != n2 || memcmp(plain, other, n0 * sizeof(float)) != 0),
           "--vae with another VAE left the cached latents as they were");
    free(plain);
    free(same);
    free(other);

    char args[4096], *log = NULL;
    snprintf(args, sizeof args,
             "--train_data_dir '%s/plain' --caption_extension .txt --resolution 64 "
             "--token_string mytok --max_train_steps 1 --output_dir '%s/bad' --vae '%s'",
             tmp, tmp, test_fixture("train_vae/notvae.safetensors"));
    int rc = train_support_run(args, &log);
    CHECKF(rc != 0 && log && strstr(log, "notvae.safetensors: no VAE weights"),
           "a file without VAE weights: rc %d, %s", rc, log ? log : "");
    free(log);
}

int main(void) {
    test_layouts();
    if (getenv("SDTI_BIN"))
        test_cli();
    return test_finish();
}
