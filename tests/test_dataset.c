// labels: unit
/* A whole DreamBooth dataset (tests/fixtures/dataset/tree: 3 train images in 5_mychar, 3 reg
 * images in 1_girl, PNG/JPEG/WebP of several shapes, some captions) against
 * tests/fixtures/dataset/tree.json, written by make_dataset_fixtures.py's re-statement of
 * kohya's DreamBoothDataset.__init__ (glob, captions, reg balancing), make_buckets and
 * shuffle_buckets, and the flip draw + process_caption of __getitem__:
 * image order, repeats (reg balanced up to the train count), captions, sizes, buckets and
 * resized sizes; the bucket list; the batch order and bucket contents after building
 * (random.seed(0)) and after set_seed(1234) + epoch 1; then, with Python's random carried
 * on, the flips and processed captions of the first three batches. Everything must be equal.
 * Also: samples have pixels of their bucket's size, reg images weigh prior_loss_weight, and
 * the token-string check. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "test_util.h"
#include "train/dataset.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void check_order(const Dataset *ds, const cJSON *want, const char *when) {
    const cJSON *batches = cJSON_GetObjectItem(want, "batches");
    CHECKF((size_t)cJSON_GetArraySize(batches) == ds->batch_count, "%s: %zu batches", when,
           ds->batch_count);
    for (size_t i = 0; i < ds->batch_count && (int)i < cJSON_GetArraySize(batches); i++) {
        const cJSON *b = cJSON_GetArrayItem(batches, (int)i);
        CHECKF(ds->batches[i].bucket == (size_t)cJSON_GetArrayItem(b, 0)->valueint &&
                   ds->batches[i].batch_index == (size_t)cJSON_GetArrayItem(b, 1)->valueint,
               "%s: batch %zu is (%zu, %zu)", when, i, ds->batches[i].bucket,
               ds->batches[i].batch_index);
    }
    const cJSON *buckets = cJSON_GetObjectItem(want, "buckets");
    for (size_t b = 0; b < ds->bucket_count && (int)b < cJSON_GetArraySize(buckets); b++) {
        const cJSON *items = cJSON_GetArrayItem(buckets, (int)b);
        CHECKF((size_t)cJSON_GetArraySize(items) == ds->bucket_len[b], "%s: bucket %zu size", when,
               b);
        bool same = true;
        for (size_t k = 0; k < ds->bucket_len[b] && (int)k < cJSON_GetArraySize(items); k++)
            same &= ds->bucket_items[b][k] == (size_t)cJSON_GetArrayItem(items, (int)k)->valueint;
        CHECKF(same, "%s: bucket %zu order differs from kohya's", when, b);
    }
}

static void test_tree(void) {
    Error err = {{0}};
    char *text = NULL;
    size_t size = 0;
    CHECK_OK(file_read_all(test_fixture("dataset/tree.json"), &text, &size, &err), &err);
    cJSON *fx = cJSON_Parse(text);
    free(text);
    if (!fx) {
        CHECK(fx != NULL);
        return;
    }
    char train[1024], reg[1024];
    snprintf(train, sizeof train, "%s", test_fixture("dataset/tree/train"));
    snprintf(reg, sizeof reg, "%s", test_fixture("dataset/tree/reg"));
    DatasetArgs args;
    dataset_args_init(&args);
    args.train_data_dir = train;
    args.reg_data_dir = reg;
    args.has_resolution = true;
    args.resolution[0] = args.resolution[1] = 128;
    args.enable_bucket = true;
    args.min_bucket_reso = 64;
    args.max_bucket_reso = 256;
    args.batch_size = 2;
    args.caption_extension = ".txt";
    args.flip_aug = true;
    args.shuffle_caption = true;
    args.enable_wildcard = true;
    args.prior_loss_weight = 0.25;
    DatasetGroupConfig cfg;
    CHECK_OK(dataset_config_from_args(&args, &cfg, &err), &err);
    PyRandom rng;
    py_random_seed(&rng, 42);
    Dataset ds;
    CHECK_OK(dataset_build(&cfg.datasets[0], &rng, &ds, &err), &err);

    const cJSON *images = cJSON_GetObjectItem(fx, "images");
    CHECKF((size_t)cJSON_GetArraySize(images) == ds.image_count, "%zu images", ds.image_count);
    CHECK(ds.num_train_images == cJSON_GetObjectItem(fx, "num_train_images")->valueint);
    CHECK(ds.num_reg_images == cJSON_GetObjectItem(fx, "num_reg_images")->valueint);
    for (size_t i = 0; i < ds.image_count && (int)i < cJSON_GetArraySize(images); i++) {
        const cJSON *w = cJSON_GetArrayItem(images, (int)i);
        const DatasetImage *im = &ds.images[i];
        const cJSON *sz = cJSON_GetObjectItem(w, "size"), *bk = cJSON_GetObjectItem(w, "bucket"),
                    *rs = cJSON_GetObjectItem(w, "resized");
        CHECKF(ends_with(im->path, cJSON_GetObjectItem(w, "path")->valuestring), "image %zu: %s", i,
               im->path);
        CHECKF(im->num_repeats == cJSON_GetObjectItem(w, "repeats")->valueint,
               "image %zu: %d repeats", i, im->num_repeats);
        CHECK(im->is_reg == cJSON_IsTrue(cJSON_GetObjectItem(w, "is_reg")));
        CHECKF(!strcmp(im->caption, cJSON_GetObjectItem(w, "caption")->valuestring),
               "image %zu: caption '%s'", i, im->caption);
        CHECK(im->width == cJSON_GetArrayItem(sz, 0)->valueint &&
              im->height == cJSON_GetArrayItem(sz, 1)->valueint);
        CHECKF(im->bucket.width == cJSON_GetArrayItem(bk, 0)->valueint &&
                   im->bucket.height == cJSON_GetArrayItem(bk, 1)->valueint &&
                   im->resized.width == cJSON_GetArrayItem(rs, 0)->valueint &&
                   im->resized.height == cJSON_GetArrayItem(rs, 1)->valueint,
               "image %zu: bucket %dx%d resized %dx%d", i, im->bucket.width, im->bucket.height,
               im->resized.width, im->resized.height);
    }
    const cJSON *resos = cJSON_GetObjectItem(fx, "bucket_resos");
    CHECK((size_t)cJSON_GetArraySize(resos) == ds.bucket_count);
    for (size_t b = 0; b < ds.bucket_count && (int)b < cJSON_GetArraySize(resos); b++)
        CHECK(ds.bucket_resos[b].width ==
                  cJSON_GetArrayItem(cJSON_GetArrayItem(resos, (int)b), 0)->valueint &&
              ds.bucket_resos[b].height ==
                  cJSON_GetArrayItem(cJSON_GetArrayItem(resos, (int)b), 1)->valueint);
    check_order(&ds, cJSON_GetObjectItem(fx, "after_build"), "after build");
    dataset_set_seed(&ds, cJSON_GetObjectItem(fx, "seed")->valueint);
    dataset_set_epoch(&ds, 1, &rng);
    check_order(&ds, cJSON_GetObjectItem(fx, "after_epoch1"), "epoch 1");

    /* __getitem__ for the first three batches, Python's random carrying on. */
    CaptionReplacement repl = {.from = "mychar", .to = "mychar mychar1"};
    const cJSON *samples = cJSON_GetObjectItem(fx, "samples");
    int k = 0;
    for (size_t b = 0; b < 3 && b < ds.batch_count; b++) {
        const size_t *idx;
        size_t n = dataset_batch_images(&ds, b, &idx);
        for (size_t j = 0; j < n; j++, k++) {
            const cJSON *w = cJSON_GetArrayItem(samples, k);
            DatasetSample s;
            CHECK_OK(dataset_load_sample(&ds, idx[j], true, &repl, 1, NULL, &rng, &s, &err), &err);
            CHECK(w && idx[j] == (size_t)cJSON_GetObjectItem(w, "image")->valueint);
            CHECK(w && s.flipped == cJSON_IsTrue(cJSON_GetObjectItem(w, "flipped")));
            CHECKF(w && s.caption &&
                       !strcmp(s.caption, cJSON_GetObjectItem(w, "caption")->valuestring),
                   "sample %d caption '%s'", k, s.caption ? s.caption : "(null)");
            const DatasetImage *im = &ds.images[idx[j]];
            CHECK(s.pixels && s.width == im->bucket.width && s.height == im->bucket.height);
            CHECK(s.loss_weight == (im->is_reg ? 0.25f : 1.0f));
            dataset_sample_free(&s);
        }
    }
    CHECK(k == cJSON_GetArraySize(samples));

    CHECK_OK(dataset_check_token_string(&ds, 1, "mychar", &err), &err);
    /* b.png's caption is the class token "mychar"; "red" is in one caption of three */
    CHECK_OK(dataset_check_token_string(&ds, 1, "red", &err), &err);
    CHECK_FAILS_WITH(dataset_check_token_string(&ds, 1, "zzztok", &err), &err,
                     "the token string 'zzztok' occurs in no caption");
    dataset_free(&ds);
    dataset_config_free(&cfg);
    cJSON_Delete(fx);
}

static void test_errors(void) {
    Error err = {{0}};
    const char *dir = test_tmp_dir("test_dataset");
    char sub[1200], p[1400];
    snprintf(sub, sizeof sub, "%s/3_tok", dir);
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/x.png'", sub,
             test_fixture("dataset/images/rgb.png"), sub);
    CHECK(test_run(cmd, NULL) == 0);
    snprintf(p, sizeof p, "%s/old.bmp", sub);
    test_write_file(p, "BM", 2);
    DatasetArgs args;
    dataset_args_init(&args);
    args.train_data_dir = dir;
    args.has_resolution = true;
    args.resolution[0] = args.resolution[1] = 64;
    DatasetGroupConfig cfg;
    CHECK_OK(dataset_config_from_args(&args, &cfg, &err), &err);
    PyRandom rng;
    py_random_seed(&rng, 1);
    Dataset ds;
    CHECK_FAILS_WITH(dataset_build(&cfg.datasets[0], &rng, &ds, &err), &err,
                     "old.bmp: BMP images are not supported");
    remove(p);
    /* Without buckets a 16x24 image cannot fill 64x64. */
    CHECK_OK(dataset_build(&cfg.datasets[0], &rng, &ds, &err), &err);
    DatasetSample s;
    CHECK_FAILS_WITH(dataset_load_sample(&ds, 0, true, NULL, 0, NULL, &rng, &s, &err), &err,
                     "x.png: image is 16x24, smaller than the resolution 64x64");
    dataset_free(&ds);
    dataset_config_free(&cfg);
}

/* --in_json (kohya's FineTuningDataset): keys longest first, caption + separator + tags,
 * relative paths under image_dir; --alpha_mask masks; the latent-caching load. */
static void test_finetuning(void) {
    Error err = {{0}};
    const char *dir = test_tmp_dir("test_dataset_ft");
    char cmd[4096], meta[1200];
    /* test_fixture returns one static buffer: one call per command */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", test_fixture("dataset/images/rgb.png"), dir);
    CHECK(test_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", test_fixture("dataset/images/rgba.png"), dir);
    CHECK(test_run(cmd, NULL) == 0);
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    const char *json = "{\"rgb.png\": {\"caption\": \"mychar\"},\n"
                       " \"rgba.png\": {\"caption\": \"mychar, a\", \"tags\": \"t1, t2\"}}";
    test_write_file(meta, json, strlen(json));
    DatasetArgs args;
    dataset_args_init(&args);
    args.train_data_dir = dir;
    args.in_json = meta;
    args.has_resolution = true;
    args.resolution[0] = args.resolution[1] = 64;
    args.enable_bucket = true;
    args.min_bucket_reso = 64;
    args.max_bucket_reso = 128;
    args.alpha_mask = true;
    args.num_repeats = 3;
    DatasetGroupConfig cfg;
    CHECK_OK(dataset_config_from_args(&args, &cfg, &err), &err);
    PyRandom rng;
    py_random_seed(&rng, 5);
    Dataset ds;
    CHECK_OK(dataset_build(&cfg.datasets[0], &rng, &ds, &err), &err);
    CHECK(ds.image_count == 2 && ds.num_train_images == 6);
    if (ds.image_count == 2) {
        CHECK(ends_with(ds.images[0].path, "/rgba.png")); /* longer key first */
        CHECK(!strcmp(ds.images[0].caption, "mychar, a,t1, t2"));
        CHECK(!strcmp(ds.images[1].caption, "mychar") && ds.images[1].num_repeats == 3);
        for (size_t i = 0; i < 2; i++) {
            const DatasetImage *im = &ds.images[i];
            size_t hw = (size_t)im->bucket.width * im->bucket.height;
            float *px = malloc(sizeof(float) * 3 * hw), *mask = malloc(sizeof(float) * hw);
            CHECK_OK(dataset_load_for_cache(&ds, i, false, px, mask, &err), &err);
            size_t ones = 0;
            bool in_range = true;
            for (size_t k = 0; k < hw; k++) {
                ones += mask[k] == 1.0f;
                in_range &= mask[k] >= 0.0f && mask[k] <= 1.0f;
            }
            CHECK(in_range);
            CHECKF(i == 0 ? ones < hw : ones == hw, "image %zu: %zu of %zu mask values are 1", i,
                   ones, hw);
            DatasetSample smp;
            CHECK_OK(dataset_load_sample(&ds, i, true, NULL, 0, NULL, &rng, &smp, &err), &err);
            CHECK(smp.alpha_mask != NULL && !memcmp(smp.pixels, px, sizeof(float) * 3 * hw));
            dataset_sample_free(&smp);
            free(px);
            free(mask);
        }
    }
    if (ds.config)
        CHECK_OK(dataset_check_latents_cacheable(&ds, &err), &err);
    dataset_free(&ds);
    dataset_config_free(&cfg);

    args.color_aug = true;
    CHECK_OK(dataset_config_from_args(&args, &cfg, &err), &err);
    CHECK_OK(dataset_build(&cfg.datasets[0], &rng, &ds, &err), &err);
    CHECK_FAILS_WITH(dataset_check_latents_cacheable(&ds, &err), &err,
                     "color_aug and random_crop cannot be used");
    dataset_free(&ds);
    dataset_config_free(&cfg);
}

int main(void) {
    test_tree();
    test_finetuning();
    test_errors();
    return test_finish();
}
