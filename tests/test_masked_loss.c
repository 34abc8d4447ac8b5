// labels: unit golden cli
/* kohya's masked loss (train/masked_loss.h) against tools/reference/make_masked_loss_fixtures.py,
 * which re-states kohya's ControlNetDataset, alpha-mask and apply_masked_loss code on PIL and
 * torch (within 1e-5, max|d| / max|ref|):
 *   - a ControlNet-style .toml dataset (--masked_loss, conditioning_data_dir in every subset):
 *     pairing by stem, the conditioning image stretched to the bucket, mirrored, R / 2 + 0.5;
 *   - alpha_mask subsets: RGBA images resized to cover the bucket, centre-cropped, mirrored,
 *     alpha / 255 (ones for an RGB image), as the cached and the per-step loads make them;
 *   - F.interpolate(mode="area") at uneven ratios, and the l2 loss masked by conditioning
 *     images with its gradient;
 *   - errors: a conditioning image missing or extra, conditioning_data_dir without
 *     --masked_loss or beside class_tokens, a size mismatch.
 * With SDTI_BIN, sdti train runs 2 steps with each kind of mask: an all-white conditioning
 * image gives the loss of the unmasked run, a half-black one another loss, and alpha masks
 * train with cached latents on disk (the .npz keeps the mask, as kohya's does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "train/dataset.h"
#include "train/latent_cache.h"
#include "train/loss.h"
#include "train/masked_loss.h"
#include "train/noise_schedule.h"
#include "test_util.h"
#include "train_support.h"

#define TOL 1e-5

static TensorSet fx;

static void compare(const float *got, const char *name, size_t n) {
    size_t m = 0;
    float *ref = test_load_f32(&fx, name, &m);
    CHECKF(ref && m == n, "fixture %s missing or of %zu values, want %zu", name, m, n);
    if (ref && m == n) {
        double e = test_max_rel_err(got, ref, n);
        printf("%-22s max rel err %.2e\n", name, e);
        CHECKF(e <= TOL, "%s: max rel err %g", name, e);
    }
    free(ref);
}

static int build(const char *toml, bool masked_loss, DatasetGroupConfig *cfg, Dataset *ds,
                 Error *err) {
    DatasetArgs args;
    dataset_args_init(&args);
    args.masked_loss = masked_loss;
    args.caption_extension = ".txt";
    memset(ds, 0, sizeof *ds);
    if (dataset_config_parse("test.toml", toml, strlen(toml), &args, cfg, err) != 0)
        return -1;
    PyRandom rng;
    py_random_seed(&rng, 1);
    if (dataset_build(&cfg->datasets[0], &rng, ds, err) != 0) {
        dataset_config_free(cfg);
        return -1;
    }
    return 0;
}

static const char *stem_of(const char *path, char *buf, size_t size) {
    const char *b = strrchr(path, '/');
    snprintf(buf, size, "%s", b ? b + 1 : path);
    char *dot = strrchr(buf, '.');
    if (dot)
        *dot = '\0';
    return buf;
}

static const char DATASET_HEAD[] = "[general]\nenable_bucket = true\nresolution = 64\n"
                                   "min_bucket_reso = 64\nmax_bucket_reso = 64\n"
                                   "[[datasets]]\n  [[datasets.subsets]]\n";

static void test_conditioning(void) {
    Error err = {{0}};
    char toml[4096], img[1024], cond[1024];
    snprintf(img, sizeof img, "%s", test_fixture("masked_loss/cn/img"));
    snprintf(cond, sizeof cond, "%s", test_fixture("masked_loss/cn/cond"));
    snprintf(toml, sizeof toml, "%s  image_dir = \"%s\"\n  conditioning_data_dir = \"%s\"\n",
             DATASET_HEAD, img, cond);
    DatasetGroupConfig cfg;
    Dataset ds;
    if (build(toml, true, &cfg, &ds, &err) != 0) {
        CHECKF(false, "conditioning dataset: %s", err.message);
        return;
    }
    CHECK(cfg.datasets[0].is_controlnet && ds.image_count == 2);
    float mask[64 * 64];
    for (size_t i = 0; i < ds.image_count; i++) {
        char stem[64], name[96];
        stem_of(ds.images[i].path, stem, sizeof stem);
        CHECK(ds.images[i].cond_path && strstr(ds.images[i].cond_path, "/cond/"));
        CHECK(ds.images[i].bucket.width == 64 && ds.images[i].bucket.height == 64);
        for (int flipped = 0; flipped < 2; flipped++) {
            CHECK_OK(masked_loss_conditioning_mask(&ds, i, flipped, mask, &err), &err);
            snprintf(name, sizeof name, "cond.%s%s", stem, flipped ? ".flipped" : "");
            compare(mask, name, 64 * 64);
        }
    }
    dataset_free(&ds);
    dataset_config_free(&cfg);

    /* without --masked_loss kohya's schema has no conditioning_data_dir */
    CHECK_FAILS_WITH(build(toml, false, &cfg, &ds, &err), &err,
                     "kohya reads conditioning images only with --masked_loss");
    /* a ControlNet-style subset takes no class_tokens (nor is_reg, alpha_mask) */
    snprintf(toml, sizeof toml,
             "%s  image_dir = \"%s\"\n  conditioning_data_dir = \"%s\"\n  class_tokens = \"x\"\n",
             DATASET_HEAD, img, cond);
    CHECK_FAILS_WITH(build(toml, true, &cfg, &ds, &err), &err, "class_tokens");

    /* a missing and an extra conditioning image */
    const char *tmp = test_tmp_dir("test_masked_loss");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/img' '%s/cond' && cp '%s'/* '%s/img/' && cp '%s/a.png' '%s/cond/' && "
             "cp '%s/a.png' '%s/cond/zz.png'",
             tmp, tmp, img, tmp, cond, tmp, cond, tmp);
    CHECK(test_run(cmd, NULL) == 0);
    snprintf(toml, sizeof toml,
             "%s  image_dir = \"%s/img\"\n  conditioning_data_dir = \"%s/cond\"\n", DATASET_HEAD,
             tmp, tmp);
    CHECK_FAILS_WITH(build(toml, true, &cfg, &ds, &err), &err,
                     "missing conditioning data for 1 images (e.g. ");
    snprintf(cmd, sizeof cmd, "cp '%s/b.png' '%s/cond/'", cond, tmp);
    CHECK(test_run(cmd, NULL) == 0);
    CHECK_FAILS_WITH(build(toml, true, &cfg, &ds, &err), &err, "zz.png has no training image");
    /* a conditioning image of another size than its training image */
    snprintf(cmd, sizeof cmd, "rm '%s/cond/zz.png' && cp '%s/b.png' '%s/cond/a.png'", tmp, cond,
             tmp);
    CHECK(test_run(cmd, NULL) == 0);
    if (build(toml, true, &cfg, &ds, &err) == 0) {
        size_t a = strstr(ds.images[0].path, "/a.png") ? 0 : 1;
        CHECK_FAILS_WITH(masked_loss_conditioning_mask(&ds, a, false, mask, &err), &err,
                         "must have the same size");
        dataset_free(&ds);
        dataset_config_free(&cfg);
    } else {
        CHECKF(false, "%s", err.message);
    }
}

static void test_alpha(void) {
    Error err = {{0}};
    char toml[4096];
    snprintf(toml, sizeof toml, "%s  image_dir = \"%s\"\n  alpha_mask = true\n", DATASET_HEAD,
             test_fixture("masked_loss/alpha/img"));
    DatasetGroupConfig cfg;
    Dataset ds;
    if (build(toml, false, &cfg, &ds, &err) != 0) {
        CHECKF(false, "alpha dataset: %s", err.message);
        return;
    }
    CHECK(ds.image_count == 4);
    float *px = malloc(sizeof(float) * 3 * 64 * 64), mask[64 * 64], flipped[64 * 64];
    for (size_t i = 0; i < ds.image_count && px; i++) {
        char stem[64], name[96];
        stem_of(ds.images[i].path, stem, sizeof stem);
        for (int f = 0; f < 2; f++) { /* what the latent cache and a flipped sample use */
            CHECK_OK(dataset_load_for_cache(&ds, i, f, px, mask, &err), &err);
            snprintf(name, sizeof name, "alpha.%s%s", stem, f ? ".flipped" : "");
            compare(mask, name, 64 * 64);
        }
        /* the cached mask is kept unflipped and mirrored per sample */
        CHECK_OK(dataset_load_for_cache(&ds, i, false, px, mask, &err), &err);
        masked_loss_flip(64, 64, mask, flipped);
        snprintf(name, sizeof name, "alpha.%s.flipped", stem);
        compare(flipped, name, 64 * 64);
        /* the per-step load (no cache) */
        PyRandom rng;
        py_random_seed(&rng, 2);
        DatasetSample s;
        CHECK_OK(dataset_load_sample(&ds, i, true, NULL, 0, NULL, &rng, &s, &err), &err);
        snprintf(name, sizeof name, "alpha.%s%s", stem, s.flipped ? ".flipped" : "");
        if (s.alpha_mask)
            compare(s.alpha_mask, name, 64 * 64);
        CHECK(s.alpha_mask != NULL);
        dataset_sample_free(&s);
    }
    free(px);
    dataset_free(&ds);
    dataset_config_free(&cfg);
}

static void test_area_and_loss(void) {
    static const struct {
        const char *name;
        int hin, win, hout, wout;
    } cases[] = {{"int", 64, 64, 8, 8}, {"uneven", 37, 29, 8, 6}, {"wide", 48, 40, 5, 7}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char name[64];
        snprintf(name, sizeof name, "area.%s.in", cases[c].name);
        size_t n = 0;
        float *in = test_load_f32(&fx, name, &n);
        size_t nout = (size_t)2 * cases[c].hout * cases[c].wout;
        float *out = malloc(sizeof(float) * nout);
        CHECK(in && out && n == (size_t)2 * cases[c].hin * cases[c].win);
        if (in && out) {
            area_resize_forward(2, cases[c].hin, cases[c].win, cases[c].hout, cases[c].wout, in,
                                out);
            snprintf(name, sizeof name, "area.%s.out", cases[c].name);
            compare(out, name, nout);
        }
        free(in);
        free(out);
    }

    /* the l2 loss masked by conditioning images, from the mask's 8-bit pixels */
    size_t n = 0, nc = 0;
    float *pred = test_load_f32(&fx, "loss.pred", &n);
    float *target = test_load_f32(&fx, "loss.target", NULL);
    float *cond = test_load_f32(&fx, "loss.cond", &nc);
    float *weights = test_load_f32(&fx, "loss.weights", NULL);
    float *grad = malloc(sizeof(float) * (n ? n : 1)), mask[2 * 64 * 64];
    CHECK(pred && target && cond && weights && grad && n == 2 * 4 * 8 * 8 && nc == 2 * 3 * 64 * 64);
    if (pred && target && cond && weights && grad && n == 2 * 4 * 8 * 8 && nc == 2 * 3 * 64 * 64) {
        /* back to the bytes IMAGE_TRANSFORMS came from, then masked_loss_mask_from_rgb */
        unsigned char rgb[64 * 64 * 3];
        for (int b = 0; b < 2; b++) {
            for (int k = 0; k < 64 * 64; k++)
                for (int ch = 0; ch < 3; ch++) {
                    float v = (cond[((size_t)b * 3 + ch) * 64 * 64 + k] * 0.5f + 0.5f) * 255.0f;
                    rgb[k * 3 + ch] = (unsigned char)(v + 0.5f);
                }
            masked_loss_mask_from_rgb(rgb, 3, 64 * 64, mask + (size_t)b * 64 * 64);
        }
        NoiseSchedule sched;
        Error err = {{0}};
        noise_schedule_init(&sched, false);
        TrainLossOptions o;
        train_loss_options_default(&o);
        int64_t t[2] = {10, 500};
        TrainLossBatch b = {.batch = 2,
                            .channels = 4,
                            .height = 8,
                            .width = 8,
                            .pred = pred,
                            .target = target,
                            .timesteps = t,
                            .loss_weights = weights,
                            .alpha_masks = mask,
                            .mask_height = 64,
                            .mask_width = 64};
        float loss = 0;
        CHECK_OK(train_loss_forward_backward(&sched, &o, &b, 1.0f, NULL, &loss, grad, &err), &err);
        compare(&loss, "loss.value", 1);
        compare(grad, "loss.grad", n);
    }
    free(pred);
    free(target);
    free(cond);
    free(weights);
    free(grad);
}

/* --- sdti train ----------------------------------------------------------------------- */

static char *avr_loss(const char *log) {
    const char *p = log ? strstr(log, "steps 2/2") : NULL;
    p = p ? strstr(p, "avr_loss ") : NULL;
    if (!p)
        return NULL;
    size_t n = strcspn(p + 9, " \n");
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p + 9, n);
        s[n] = '\0';
    }
    return s;
}

static char *run(const char *args, const char *what) {
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train (%s) failed (%d): %s", what, rc, log ? log : "");
    char *loss = avr_loss(log);
    CHECKF(loss != NULL, "%s: no loss in %s", what, log ? log : "");
    free(log);
    return loss;
}

/* a dataset .toml with one subset of `dir` (and its conditioning_data_dir / alpha_mask) */
static void write_toml(const char *path, const char *dir, const char *cond, bool alpha) {
    char text[4096];
    snprintf(text, sizeof text,
             "[general]\ncaption_extension = \".txt\"\n[[datasets]]\nresolution = 64\n"
             "  [[datasets.subsets]]\n  image_dir = \"%s\"\n%s%s%s%s",
             dir, cond ? "  conditioning_data_dir = \"" : "", cond ? cond : "", cond ? "\"\n" : "",
             alpha ? "  alpha_mask = true\n" : "");
    CHECK(test_write_file(path, text, strlen(text)) == 0);
}

static char *train(const char *tmp, const char *name, const char *dir, const char *cond, bool alpha,
                   const char *extra) {
    char toml[1200], args[8192];
    snprintf(toml, sizeof toml, "%s/%s.toml", tmp, name);
    write_toml(toml, dir, cond, alpha);
    snprintf(args, sizeof args,
             "--dataset_config '%s' --token_string mytok --init_word cat --max_train_steps 2 "
             "--learning_rate 1e-3 --output_dir '%s/out-%s' --seed 4 %s",
             toml, tmp, name, extra);
    return run(args, name);
}

static void test_cli(void) {
    const char *tmp = test_tmp_dir("test_masked_loss_cli");
    char cmd[8192], dir[1200], white[1200], half[1200];
    /* copies: the latent cache is written next to the images */
    snprintf(cmd, sizeof cmd, "cp -r '%s'/* '%s/'", test_fixture("masked_loss/cli"), tmp);
    CHECK(test_run(cmd, NULL) == 0);
    snprintf(dir, sizeof dir, "%s/img", tmp);
    snprintf(white, sizeof white, "%s/white", tmp);
    snprintf(half, sizeof half, "%s/half", tmp);
    char *plain = train(tmp, "plain", dir, NULL, false, "");
    char *all = train(tmp, "white", dir, white, false, "--masked_loss");
    char *masked = train(tmp, "half", dir, half, false, "--masked_loss");
    /* a white mask keeps every element: the unmasked loss, to the last digit printed */
    CHECKF(plain && all && !strcmp(plain, all), "white masks: loss %s, unmasked %s",
           all ? all : "-", plain ? plain : "-");
    CHECKF(plain && masked && strcmp(plain, masked) != 0, "half-black masks: loss %s as unmasked",
           masked ? masked : "-");
    free(all);
    free(masked);
    free(plain);
    /* --debug_dataset names each image's mask */
    char args[8192], *log = NULL;
    snprintf(args, sizeof args,
             "--dataset_config '%s/half.toml' --masked_loss --token_string mytok "
             "--output_dir '%s/out-debug' --debug_dataset",
             tmp, tmp);
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0 && log && strstr(log, "conditioning image (loss mask): ") &&
               strstr(log, "/half/p.png"),
           "--debug_dataset: rc %d: %s", rc, log ? log : "");
    free(log);

    /* alpha masks with latents cached on disk; opaque alpha is no mask */
    plain = train(tmp, "plain-cached", dir, NULL, false, "--cache_latents");
    snprintf(dir, sizeof dir, "%s/opaque", tmp);
    all = train(tmp, "opaque", dir, NULL, true, "--cache_latents_to_disk");
    snprintf(dir, sizeof dir, "%s/halfalpha", tmp);
    masked = train(tmp, "halfalpha", dir, NULL, false, "--alpha_mask --cache_latents_to_disk");
    CHECKF(plain && all && !strcmp(plain, all), "opaque alpha: loss %s, unmasked %s",
           all ? all : "-", plain ? plain : "-");
    CHECKF(plain && masked && strcmp(plain, masked) != 0, "half-transparent: loss %s as unmasked",
           masked ? masked : "-");
    char npz[1400];
    snprintf(npz, sizeof npz, "%s/p_0064x0064_sd.npz", dir);
    LatentCacheEntry e;
    Error err = {{0}};
    memset(&e, 0, sizeof e);
    CHECK_OK(latent_cache_read(npz, &e, &err), &err);
    CHECKF(e.alpha_mask && e.mask_height == 64 && e.mask_width == 64 && e.alpha_mask[0] == 0.0f &&
               e.alpha_mask[63] == 1.0f,
           "%s: no 64x64 alpha_mask with the left half 0", npz);
    latent_cache_entry_free(&e);
    /* the second run takes the cache as valid (its mask included): the file is not rewritten
     * (a rewrite goes through a temporary file and a rename: a new inode) */
    struct stat before, after;
    CHECK(stat(npz, &before) == 0);
    char *again = train(tmp, "halfalpha", dir, NULL, false, "--alpha_mask --cache_latents_to_disk");
    CHECK(stat(npz, &after) == 0 && after.st_ino == before.st_ino);
    free(again);
    free(all);
    free(masked);
    free(plain);
}

int main(void) {
    tensor_set_init(&fx);
    Error err = {{0}};
    CHECK_OK(safetensors_open(test_fixture("masked_loss/expected.safetensors"), &fx, &err), &err);
    test_area_and_loss();
    test_conditioning();
    test_alpha();
    if (getenv("SDTI_BIN"))
        test_cli();
    tensor_set_free(&fx);
    return test_finish();
}
