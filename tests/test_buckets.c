// labels: unit
/* Buckets and image operations against tests/fixtures/dataset/:
 * - buckets.json (tools/reference/make_dataset_fixtures.py, a re-statement of kohya's
 *   model_util.make_bucket_resolutions and train_util.BucketManager.select_bucket /
 *   get_crop_ltrb): resolution lists, chosen bucket, resized size and crop for 13 image
 *   sizes x 5 configurations x bucket_no_upscale on/off, all exactly equal;
 * - lanczos_expected.safetensors (PIL 13 Image.resize LANCZOS, kohya's upscaling path,
 *   including one side growing while the other shrinks, and RGBA resized premultiplied):
 *   equal bytes;
 * - cv2_expected.safetensors (tools/reference/make_resize_fixtures.py, OpenCV's
 *   cv2.resize INTER_AREA and the BGR2HSV/HSV2BGR hue shift of kohya's color_aug): the
 *   resize and the hue shift (4 shifts, grays included) must be byte-exact;
 * - trim/crop/flip/to_tensor on small hand-made images (positions only, no values). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/safetensors.h"
#include "test_util.h"
#include "train/buckets.h"
#include "train/image_ops.h"

static void test_bucket_fixture(void) {
    Error err = {{0}};
    char *text = NULL;
    size_t size = 0;
    CHECK_OK(file_read_all(test_fixture("dataset/buckets.json"), &text, &size, &err), &err);
    cJSON *all = cJSON_Parse(text);
    free(text);
    CHECK(all != NULL);
    int configs = 0, selections = 0;
    cJSON *cfg;
    cJSON_ArrayForEach(cfg, all) {
        cJSON *mr = cJSON_GetObjectItem(cfg, "max_reso");
        BucketReso max_reso = {cJSON_GetArrayItem(mr, 0)->valueint,
                               cJSON_GetArrayItem(mr, 1)->valueint};
        int mn = cJSON_GetObjectItem(cfg, "min")->valueint;
        int mx = cJSON_GetObjectItem(cfg, "max")->valueint;
        int st = cJSON_GetObjectItem(cfg, "steps")->valueint;
        BucketReso *resos = NULL;
        size_t n = 0;
        CHECK_OK(bucket_make_resolutions(max_reso, mn, mx, st, &resos, &n, &err), &err);
        cJSON *want = cJSON_GetObjectItem(cfg, "resos");
        CHECKF((int)n == cJSON_GetArraySize(want), "config %d: %zu resolutions, want %d", configs,
               n, cJSON_GetArraySize(want));
        for (size_t i = 0; i < n && (int)i < cJSON_GetArraySize(want); i++) {
            cJSON *w = cJSON_GetArrayItem(want, (int)i);
            CHECK(resos[i].width == cJSON_GetArrayItem(w, 0)->valueint &&
                  resos[i].height == cJSON_GetArrayItem(w, 1)->valueint);
        }
        free(resos);
        BucketManager up, noup;
        CHECK_OK(bucket_manager_init(&up, false, max_reso, mn, mx, st, &err), &err);
        CHECK_OK(bucket_manager_init(&noup, true, max_reso, mn, mx, st, &err), &err);
        cJSON *sel;
        cJSON_ArrayForEach(sel, cJSON_GetObjectItem(cfg, "select")) {
            cJSON *sz = cJSON_GetObjectItem(sel, "size");
            int w = cJSON_GetArrayItem(sz, 0)->valueint, h = cJSON_GetArrayItem(sz, 1)->valueint;
            bool nu = cJSON_IsTrue(cJSON_GetObjectItem(sel, "no_upscale"));
            BucketReso b, r;
            double are;
            CHECK_OK(bucket_select(nu ? &noup : &up, w, h, &b, &r, &are, &err), &err);
            cJSON *wr = cJSON_GetObjectItem(sel, "reso"), *ws = cJSON_GetObjectItem(sel, "resized");
            CHECKF(b.width == cJSON_GetArrayItem(wr, 0)->valueint &&
                       b.height == cJSON_GetArrayItem(wr, 1)->valueint &&
                       r.width == cJSON_GetArrayItem(ws, 0)->valueint &&
                       r.height == cJSON_GetArrayItem(ws, 1)->valueint,
                   "config %d image %dx%d no_upscale %d: bucket %dx%d resized %dx%d", configs, w, h,
                   nu, b.width, b.height, r.width, r.height);
            double ltrb[4];
            bucket_crop_ltrb(b, w, h, ltrb);
            cJSON *wc = cJSON_GetObjectItem(sel, "crop_ltrb");
            for (int k = 0; k < 4; k++)
                CHECKF(ltrb[k] == cJSON_GetArrayItem(wc, k)->valuedouble, "crop %d: %.17g", k,
                       ltrb[k]);
            selections++;
        }
        bucket_manager_free(&up);
        bucket_manager_free(&noup);
        configs++;
    }
    CHECK(configs == 5 && selections == 5 * 13 * 2);
    cJSON_Delete(all);

    int mn = 250, mx = 1000;
    CHECK_OK(bucket_adjust_min_max((BucketReso){512, 512}, &mn, &mx, 64, &err), &err);
    CHECK(mn == 192 && mx == 1024);
    mn = 640;
    CHECK_FAILS_WITH(bucket_adjust_min_max((BucketReso){512, 768}, &mn, &mx, 64, &err), &err,
                     "min_bucket_reso (640) is larger than the resolution's short side (512)");
    BucketManager m;
    CHECK_FAILS_WITH(bucket_manager_init(&m, false, (BucketReso){1024, 512}, 256, 768, 64, &err),
                     &err, "max_bucket_reso (768) must be at least the resolution 1024x512");
}

static Image tensor_image(const NamedTensor *t) {
    Image im = {0};
    if (!t || t->ndim != 3)
        return im;
    im.height = (int)t->shape[0];
    im.width = (int)t->shape[1];
    im.channels = (int)t->shape[2];
    im.pixels = (uint8_t *)t->data;
    return im;
}

static size_t count_diff(const Image *a, const NamedTensor *t, int *maxd) {
    *maxd = 0;
    if (!t || a->height != t->shape[0] || a->width != t->shape[1] || a->channels != t->shape[2])
        return (size_t)-1;
    size_t n = 0;
    const uint8_t *ref = t->data;
    for (size_t i = 0; i < t->nbytes; i++) {
        int d = abs((int)ref[i] - (int)a->pixels[i]);
        n += d != 0;
        if (d > *maxd)
            *maxd = d;
    }
    return n;
}

static void test_resize_fixtures(void) {
    Error err = {{0}};
    TensorSet ts;
    tensor_set_init(&ts);
    CHECK_OK(safetensors_open(test_fixture("dataset/lanczos_expected.safetensors"), &ts, &err),
             &err);
    Image src = tensor_image(tensor_set_find(&ts, "src"));
    int lanczos_cases = 0;
    for (size_t i = 0; i < ts.count; i++) {
        int w, h;
        if (sscanf(ts.items[i].name, "lanczos_%dx%d", &w, &h) != 2)
            continue;
        Image out;
        CHECK_OK(image_resize_lanczos(&src, w, h, &out, &err), &err);
        int maxd;
        size_t d = count_diff(&out, &ts.items[i], &maxd);
        CHECKF(d == 0, "PIL lanczos %dx%d: %zu bytes differ (max %d)", w, h, d, maxd);
        image_free(&out);
        lanczos_cases++;
    }
    CHECK(lanczos_cases == 8);
    Image src4 = tensor_image(tensor_set_find(&ts, "src_rgba"));
    for (size_t i = 0; i < ts.count; i++) {
        int w, h;
        if (sscanf(ts.items[i].name, "rgba_lanczos_%dx%d", &w, &h) != 2)
            continue;
        Image out;
        CHECK_OK(image_resize_lanczos(&src4, w, h, &out, &err), &err);
        int maxd;
        size_t d = count_diff(&out, &ts.items[i], &maxd);
        CHECKF(d == 0, "PIL RGBA lanczos %dx%d: %zu bytes differ (max %d)", w, h, d, maxd);
        image_free(&out);
        lanczos_cases++;
    }
    CHECK(lanczos_cases == 10);
    tensor_set_free(&ts);

    tensor_set_init(&ts);
    CHECK_OK(safetensors_open(test_fixture("dataset/cv2_expected.safetensors"), &ts, &err), &err);
    int area_cases = 0;
    for (int i = 0; i < 32; i++) {
        char k1[32], k2[32];
        snprintf(k1, sizeof k1, "area%d/src", i);
        snprintf(k2, sizeof k2, "area%d/dst", i);
        const NamedTensor *ts_src = tensor_set_find(&ts, k1), *ts_dst = tensor_set_find(&ts, k2);
        if (!ts_src)
            break;
        Image in = tensor_image(ts_src), out;
        CHECK_OK(image_resize_area(&in, (int)ts_dst->shape[1], (int)ts_dst->shape[0], &out, &err),
                 &err);
        int maxd;
        size_t d = count_diff(&out, ts_dst, &maxd);
        CHECKF(d == 0,
               "cv2 INTER_AREA case %d (%dx%dx%d -> %dx%d): %zu of %zu bytes differ (max %d)", i,
               in.width, in.height, in.channels, out.width, out.height, d, ts_dst->nbytes, maxd);
        image_free(&out);
        area_cases++;
    }
    CHECK(area_cases == 9);

    const NamedTensor *shifts = tensor_set_find(&ts, "hue/shifts");
    Image hsrc = tensor_image(tensor_set_find(&ts, "hue/src"));
    size_t off_total = 0;
    for (int k = 0; shifts && k < (int)shifts->shape[0]; k++) {
        double shift = ((const double *)shifts->data)[k];
        char key[32];
        snprintf(key, sizeof key, "hue/shift%d", k);
        const NamedTensor *want = tensor_set_find(&ts, key);
        Image im = hsrc;
        im.pixels = malloc(want->nbytes);
        memcpy(im.pixels, hsrc.pixels, want->nbytes);
        image_hue_shift(&im, shift);
        int maxd;
        size_t d = count_diff(&im, want, &maxd);
        CHECKF(d == 0, "hue shift %g: %zu bytes differ from cv2 (max %d levels)", shift, d, maxd);
        off_total += d;
        free(im.pixels);
    }
    printf("hue shift vs cv2: %zu bytes differ of %zu\n", off_total,
           4 * (size_t)hsrc.width * hsrc.height * 3);
    tensor_set_free(&ts);
}

static void test_trim_flip_tensor(void) {
    Error err = {{0}};
    Image im = {.width = 6, .height = 4, .channels = 3, .exif_orientation = 1};
    im.pixels = malloc(6 * 4 * 3);
    for (int i = 0; i < 6 * 4 * 3; i++)
        im.pixels[i] = (uint8_t)i;
    /* Centre crop of 6x4 to 4x2 starts at (1, 1). */
    CHECK_OK(image_trim_and_resize(&im, 4, 2, 6, 4, false, NULL, RESIZE_AUTO, &err), &err);
    CHECK(im.width == 4 && im.height == 2 && im.pixels[0] == (1 * 6 + 1) * 3);
    image_flip_horizontal(&im);
    CHECK(im.pixels[0] == (1 * 6 + 4) * 3 && im.pixels[3 * 3] == (1 * 6 + 1) * 3);
    float t[3 * 4 * 2];
    image_to_tensor(&im, t);
    CHECK(t[0] == ((float)im.pixels[0] / 255.f - 0.5f) / 0.5f);
    CHECK(t[8] == ((float)im.pixels[1] / 255.f - 0.5f) / 0.5f);
    /* A crop that leaves the image smaller than its bucket is refused. */
    CHECK_FAILS_WITH(image_trim_and_resize(&im, 8, 2, 4, 2, false, NULL, RESIZE_AUTO, &err), &err,
                     "smaller than its bucket 8x2");
    image_free(&im);
}

int main(void) {
    test_bucket_fixture();
    test_resize_fixtures();
    test_trim_flip_tensor();
    return test_finish();
}
