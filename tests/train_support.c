#include "train_support.h"

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"

/* A w x h RGB PNG with a pattern that depends on `seed`, written with libpng. */
static int write_png(const char *path, int w, int h, unsigned seed) {
    size_t stride = 3 * (size_t)w;
    uint8_t *pixels = malloc((size_t)h * stride);
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!pixels || !f || !info)
        goto done;
    uint32_t s = seed * 2654435761u + 1;
    for (int y = 0; y < h; y++) {
        uint8_t *row = pixels + (size_t)y * stride;
        for (int x = 0; x < w; x++) {
            s = s * 1664525u + 1013904223u;
            row[3 * x] = (uint8_t)(x * 4 + seed * 40);
            row[3 * x + 1] = (uint8_t)(y * 4);
            row[3 * x + 2] = (uint8_t)(s >> 24);
        }
    }
    if (setjmp(png_jmpbuf(png)))
        goto done;
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    rc = 0;
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    if (f && fclose(f) != 0)
        rc = -1;
    free(pixels);
    return rc;
}

void train_support_make_images(const char *dir, int count, const char *caption) {
    train_support_make_images_sized(dir, count, 64, 64, caption);
}

void train_support_make_images_sized(const char *dir, int count, int width, int height,
                                     const char *caption) {
    char cmd[1200], path[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CHECK(system(cmd) == 0);
    for (int i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/img%d.png", dir, i);
        CHECK(write_png(path, width, height, (unsigned)i) == 0);
        snprintf(path, sizeof path, "%s/img%d.txt", dir, i);
        CHECK(test_write_file(path, caption, strlen(caption)) == 0);
    }
}

bool train_support_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int train_support_run(const char *args, char **out) {
    char cmd[16384];
    /* passive OpenMP waits: the tiny model's layers are so small that spinning threads cost
     * more than the work on a shared 2-core machine (0.07 s instead of 0.6 s per step) */
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive '%s' train --pretrained_model_name_or_path '%s' %s",
             getenv("SDTI_BIN"), test_fixture(TRAIN_SUPPORT_MODEL), args);
    return test_run(cmd, out);
}
