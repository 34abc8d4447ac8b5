/* See masked_loss.h. Pairing and loading follow ControlNetDataset.__init__ / __getitem__ of
 * kohya's train_util.py. */
#define _POSIX_C_SOURCE 200809L
#include "train/masked_loss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/image.h"
#include "train/dataset_internal.h"
#include "train/image_ops.h"

/* os.path.splitext(path)[0] length: the part before the last dot of the last component (a
 * leading dot of a hidden file is not an extension). */
static size_t stem_length(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = strlen(path);
    if (!dot)
        return n;
    const char *p = base;
    while (*p == '.')
        p++;
    return dot < p ? n : (size_t)(dot - path);
}

static const char *base_name(const char *path) {
    const char *base = strrchr(path, '/');
    return base ? base + 1 : path;
}

/* The first (sorted) conditioning image whose stem is the image's: glob_images(dir, stem). */
static const char *find_pair(char **conds, size_t count, const char *image_path) {
    const char *image_base = base_name(image_path);
    size_t stem = stem_length(image_base);
    for (size_t i = 0; i < count; i++) {
        const char *b = base_name(conds[i]);
        if (stem_length(b) == stem && strncmp(b, image_base, stem) == 0)
            return conds[i];
    }
    return NULL;
}

static int pair_subset(Dataset *ds, size_t subset, Error *err) {
    const SubsetConfig *s = &ds->config->subsets[subset];
    if (!file_is_dir(s->conditioning_data_dir))
        return error_set(err,
                         "%s: conditioning_data_dir %s is not a folder (kohya warns and then "
                         "fails on the first batch): give the folder of the mask images",
                         s->where, s->conditioning_data_dir);
    char **conds = NULL;
    size_t count = 0;
    if (dataset_list_images(s->conditioning_data_dir, &conds, &count, err) != 0)
        return -1;
    bool *used = calloc(count ? count : 1, sizeof *used);
    int rc = used ? 0 : error_set(err, "out of memory");
    size_t missing = 0;
    const char *first_missing = NULL;
    for (size_t i = 0; i < ds->image_count && rc == 0; i++) {
        DatasetImage *im = &ds->images[i];
        if (im->subset != subset)
            continue;
        const char *p = find_pair(conds, count, im->path);
        if (!p) {
            if (!missing++)
                first_missing = im->path;
            continue;
        }
        im->cond_path = strdup(p);
        if (!im->cond_path)
            rc = error_set(err, "out of memory");
        for (size_t k = 0; k < count; k++) /* every file of the stem counts as paired */
            if (stem_length(conds[k]) == stem_length(p) &&
                strncmp(conds[k], p, stem_length(p)) == 0)
                used[k] = true;
    }
    if (rc == 0 && missing)
        rc = error_set(err,
                       "%s: missing conditioning data for %zu images (e.g. %s has no image of "
                       "the same name in %s), as kohya asserts",
                       s->where, missing, first_missing, s->conditioning_data_dir);
    for (size_t k = 0; k < count && rc == 0; k++)
        if (!used[k])
            rc = error_set(err,
                           "%s: extra conditioning data: %s has no training image of the same "
                           "name in %s, as kohya asserts; remove it",
                           s->where, conds[k], s->image_dir);
    for (size_t k = 0; k < count; k++)
        free(conds[k]);
    free(conds);
    free(used);
    return rc;
}

int dataset_pair_conditioning(Dataset *ds, Error *err) {
    for (size_t s = 0; s < ds->config->subset_count; s++)
        if (ds->config->subsets[s].conditioning_data_dir && pair_subset(ds, s, err) != 0)
            return -1;
    return 0;
}

void masked_loss_mask_from_rgb(const unsigned char *pixels, int channels, size_t count,
                               float *mask) {
    for (size_t i = 0; i < count; i++) {
        float v = (float)pixels[i * (size_t)channels] / 255.0f; /* ToTensor */
        v = (v - 0.5f) / 0.5f;                                  /* Normalize */
        mask[i] = v / 2.0f + 0.5f;                              /* apply_masked_loss */
    }
}

void masked_loss_flip(int h, int w, const float *in, float *out) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            out[(size_t)y * w + x] = in[(size_t)y * w + (w - 1 - x)];
}

static ResizeMethod method_of(const char *name) {
    if (!name)
        return RESIZE_AUTO;
    return strcmp(name, "area") == 0 ? RESIZE_AREA : RESIZE_LANCZOS;
}

int masked_loss_conditioning_mask(const Dataset *ds, size_t index, bool flipped, float *mask,
                                  Error *err) {
    const DatasetImage *im = &ds->images[index];
    if (!im->cond_path)
        return error_set(err, "%s: no conditioning image", im->path);
    Image img;
    ImageLoadOptions opts = {.keep_alpha = false};
    if (image_load_file(im->cond_path, &opts, &img, err) != 0)
        return -1;
    const DatasetConfig *cfg = ds->config;
    int tw = im->bucket.width, th = im->bucket.height;
    int rc = 0;
    if (cfg->enable_bucket && (img.width != im->width || img.height != im->height))
        rc = error_set(err,
                       "%s: the conditioning image is %dx%d, its training image %s is %dx%d: "
                       "they must have the same size (kohya asserts it)",
                       im->cond_path, img.width, img.height, im->path, im->width, im->height);
    /* with buckets kohya resizes the original straight to the bucket size (then a centre crop
     * of that size, which takes everything); without, only when the size differs */
    if (rc == 0 && (img.width != tw || img.height != th)) {
        Image resized;
        rc = image_resize_kohya(&img, tw, th, method_of(cfg->resize_interpolation), &resized, err);
        if (rc == 0) {
            image_free(&img);
            img = resized;
        }
    }
    if (rc == 0 && flipped)
        image_flip_horizontal(&img);
    if (rc == 0)
        masked_loss_mask_from_rgb(img.pixels, img.channels, (size_t)tw * th, mask);
    image_free(&img);
    return rc;
}
