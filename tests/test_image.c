// labels: unit
/* Training-image decoding against PIL (tests/fixtures/dataset/, made by
 * tools/reference/make_dataset_fixtures.py): for every fixture file, our RGB pixels equal
 * np.array(Image.open(f).convert("RGB")) byte for byte, our RGBA pixels equal convert("RGBA"),
 * the header-only size equals PIL's size, the EXIF orientation equals PIL's getexif(), and
 * with apply_exif_orientation the pixels equal ImageOps.exif_transpose(im).convert("RGB").
 * JPEG and lossy WebP are compared exactly too: PIL decodes them with libjpeg-turbo and
 * libwebp as we do; a count of differing bytes is printed if they ever differ. Also: broken,
 * empty and unsupported files fail with a message naming the file. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "test_util.h"

static void compare(const char *what, const Image *im, const NamedTensor *t) {
    CHECKF(t != NULL, "%s: no expected tensor", what);
    if (!t)
        return;
    bool shape_ok = t->ndim == 3 && t->shape[0] == im->height && t->shape[1] == im->width &&
                    t->shape[2] == im->channels;
    CHECKF(shape_ok, "%s: shape %dx%dx%d, expected %lldx%lldx%lld", what, im->height, im->width,
           im->channels, (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2]);
    if (!shape_ok)
        return;
    size_t n = t->nbytes, diff = 0, maxd = 0;
    const uint8_t *ref = t->data;
    for (size_t i = 0; i < n; i++) {
        size_t d = ref[i] > im->pixels[i] ? ref[i] - im->pixels[i] : im->pixels[i] - ref[i];
        diff += d != 0;
        if (d > maxd)
            maxd = d;
    }
    CHECKF(diff == 0, "%s: %zu of %zu bytes differ from PIL (max %zu)", what, diff, n, maxd);
}

static void test_fixture_images(void) {
    Error err = {{0}};
    TensorSet expected;
    tensor_set_init(&expected);
    CHECK_OK(safetensors_open(test_fixture("dataset/images_expected.safetensors"), &expected, &err),
             &err);
    char *json = NULL;
    size_t json_size = 0;
    CHECK_OK(file_read_all(test_fixture("dataset/images.json"), &json, &json_size, &err), &err);
    cJSON *meta = cJSON_Parse(json);
    CHECK(meta != NULL);
    int files = 0;
    for (cJSON *item = meta ? meta->child : NULL; item; item = item->next, files++) {
        char rel[256], key[300];
        snprintf(rel, sizeof rel, "dataset/images/%s", item->string);
        const char *path = test_fixture(rel);
        char path_copy[1024];
        snprintf(path_copy, sizeof path_copy, "%s", path);
        int w = 0, h = 0;
        CHECK_OK(image_read_size(path_copy, &w, &h, &err), &err);
        CHECKF(w == cJSON_GetObjectItem(item, "width")->valueint &&
                   h == cJSON_GetObjectItem(item, "height")->valueint,
               "%s: size %dx%d", item->string, w, h);
        CHECK(image_format_from_path(path_copy) != IMAGE_FORMAT_UNKNOWN);

        Image im;
        ImageLoadOptions rgb = {0}, rgba = {.keep_alpha = true},
                         rot = {.apply_exif_orientation = true};
        CHECK_OK(image_load_file(path_copy, &rgb, &im, &err), &err);
        snprintf(key, sizeof key, "%s/rgb", item->string);
        compare(key, &im, tensor_set_find(&expected, key));
        CHECKF(im.exif_orientation == cJSON_GetObjectItem(item, "orientation")->valueint,
               "%s: orientation %d", item->string, im.exif_orientation);
        image_free(&im);

        CHECK_OK(image_load_file(path_copy, &rgba, &im, &err), &err);
        snprintf(key, sizeof key, "%s/rgba", item->string);
        compare(key, &im, tensor_set_find(&expected, key));
        image_free(&im);

        CHECK_OK(image_load_file(path_copy, &rot, &im, &err), &err);
        snprintf(key, sizeof key, "%s/transposed", item->string);
        compare(key, &im, tensor_set_find(&expected, key));
        image_free(&im);
    }
    CHECKF(files >= 20, "only %d fixture images", files);
    cJSON_Delete(meta);
    free(json);
    tensor_set_free(&expected);
}

static void test_errors(void) {
    Error err = {{0}};
    Image im;
    char path[1024];
    snprintf(path, sizeof path, "%s", test_fixture("dataset/images/truncated.png"));
    CHECK_FAILS_WITH(image_load_file(path, NULL, &im, &err), &err, "truncated.png: broken PNG");

    const char *dir = test_tmp_dir("test_image");
    char p[1024];
    snprintf(p, sizeof p, "%s/empty.png", dir);
    test_write_file(p, "", 0);
    CHECK_FAILS_WITH(image_load_file(p, NULL, &im, &err), &err, "empty.png: empty file");
    snprintf(p, sizeof p, "%s/text.jpg", dir);
    test_write_file(p, "hello", 5);
    CHECK_FAILS_WITH(image_load_file(p, NULL, &im, &err), &err,
                     "text.jpg: not a PNG, JPEG or WebP");
    snprintf(p, sizeof p, "%s/pic.bmp", dir);
    test_write_file(p, "BM\0\0\0\0\0\0", 8);
    CHECK_FAILS_WITH(image_load_file(p, NULL, &im, &err), &err, "BMP images are not supported");
    snprintf(p, sizeof p, "%s/missing.png", dir);
    CHECK_FAILS_WITH(image_load_file(p, NULL, &im, &err), &err, "missing.png");

    /* A JPEG cut in its header, and a WebP whose RIFF size lies. */
    static const uint8_t jpeg_head[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
    CHECK_FAILS_WITH(image_load_memory("cut.jpg", jpeg_head, sizeof jpeg_head, NULL, &im, &err),
                     &err, "cut.jpg: broken JPEG");
    static const uint8_t webp_head[] = {'R', 'I', 'F', 'F', 0xFF, 0, 0, 0, 'W', 'E', 'B', 'P',
                                        'V', 'P', '8', ' ', 4,    0, 0, 0, 1,   2,   3,   4};
    CHECK_FAILS_WITH(image_load_memory("bad.webp", webp_head, sizeof webp_head, NULL, &im, &err),
                     &err, "bad.webp: broken WebP");
}

static void test_extensions(void) {
    CHECK(image_format_from_path("a/b.png") == IMAGE_FORMAT_PNG);
    CHECK(image_format_from_path("a/b.JPEG") == IMAGE_FORMAT_JPEG);
    CHECK(image_format_from_path("a/b.webp") == IMAGE_FORMAT_WEBP);
    CHECK(image_format_from_path("a/b.BMP") == IMAGE_FORMAT_BMP);
    /* kohya's glob is case-sensitive: only all-lower and all-upper extensions count. */
    CHECK(image_format_from_path("a/b.Png") == IMAGE_FORMAT_UNKNOWN);
    CHECK(image_format_from_path("a.png/b") == IMAGE_FORMAT_UNKNOWN);
    CHECK(image_format_from_path("a/b.txt") == IMAGE_FORMAT_UNKNOWN);
}

static void test_exif_parse(void) {
    /* Big-endian TIFF with orientation 6, and garbage. */
    static const uint8_t mm[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0,
                                 3,   0,   0, 0,  1, 0, 6, 0, 0, 0, 0,    0,    0};
    CHECK(image_exif_parse_orientation(mm, sizeof mm) == 6);
    CHECK(image_exif_parse_orientation(mm, 12) == 1);
    static const uint8_t junk[] = {'I', 'I', 42, 0, 0xff, 0xff, 0xff, 0x7f};
    CHECK(image_exif_parse_orientation(junk, sizeof junk) == 1);
}

int main(void) {
    test_extensions();
    test_exif_parse();
    test_fixture_images();
    test_errors();
    return test_finish();
}
