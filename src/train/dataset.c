/* See dataset.h. Follows DreamBoothDataset / FineTuningDataset.__init__ and
 * BaseDataset.make_buckets / shuffle_buckets / __getitem__ of kohya's train_util.py. */
#define _POSIX_C_SOURCE 200809L
#include "train/dataset.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "base/log.h"
#include "formats/image.h"
#include "train/dataset_internal.h"
#include "train/image_ops.h"

int dataset_push_image(Dataset *ds, size_t *cap, DatasetImage img, Error *err) {
    if (ds->image_count == *cap) {
        size_t n = *cap ? *cap * 2 : 64;
        DatasetImage *p = realloc(ds->images, n * sizeof *p);
        if (!p) {
            free(img.path);
            free(img.caption);
            return error_set(err, "out of memory");
        }
        ds->images = p;
        *cap = n;
    }
    ds->images[ds->image_count++] = img;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* glob_images(dir): the files with one of kohya's extensions, sorted. */
int dataset_list_images(const char *dir, char ***out, size_t *count, Error *err) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* kohya: "not directory" warning, no images */
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        ImageFormat f = image_format_from_path(e->d_name);
        if (f == IMAGE_FORMAT_UNKNOWN || e->d_name[0] == '.')
            continue; /* Python's glob("*.png") skips hidden files too */
        char *full = path_join(dir, e->d_name);
        if (!full) {
            rc = error_set(err, "out of memory");
            break;
        }
        if (f != IMAGE_FORMAT_PNG && f != IMAGE_FORMAT_JPEG && f != IMAGE_FORMAT_WEBP) {
            rc = error_set(err,
                           "%s: %s images are not supported (sdti decodes PNG, JPEG and WebP); "
                           "convert it to PNG",
                           full, image_format_name(f));
            free(full);
            break;
        }
        if (*count == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(*out, cap * sizeof *p);
            if (!p) {
                free(full);
                rc = error_set(err, "out of memory");
                break;
            }
            *out = p;
        }
        (*out)[(*count)++] = full;
    }
    closedir(d);
    if (rc == 0 && *count > 1)
        qsort(*out, *count, sizeof **out, cmp_str);
    return rc;
}

static void free_list(char **list, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* ------------------------------------------------------------------------------------------
 * DreamBooth subsets */

static int load_dreambooth(Dataset *ds, size_t *cap, DatasetImage **reg, size_t *reg_count,
                           Error *err) {
    const DatasetConfig *cfg = ds->config;
    size_t reg_cap = 0;
    for (size_t si = 0; si < cfg->subset_count; si++) {
        const SubsetConfig *s = &cfg->subsets[si];
        if (s->num_repeats < 1) {
            log_warning("ignoring subset %s (image_dir %s): num_repeats is less than 1", s->where,
                        s->image_dir);
            continue;
        }
        if (s->cache_info)
            log_info("%s: cache_info: sdti reads image sizes from the file headers and does not "
                     "use metadata_cache.json",
                     s->where);
        if (!file_is_dir(s->image_dir)) {
            log_warning("%s: image_dir is not a folder: %s", s->where, s->image_dir);
            continue;
        }
        char **paths;
        size_t n;
        if (dataset_list_images(s->image_dir, &paths, &n, err) != 0)
            return -1;
        if (n == 0) {
            log_warning("ignoring subset %s: no images found in %s", s->where, s->image_dir);
            free(paths);
            continue;
        }
        size_t missing = 0;
        for (size_t i = 0; i < n; i++) {
            char *cap_text = NULL;
            if (caption_read_for_image(paths[i], s->caption_extension, s->enable_wildcard,
                                       &cap_text, err) != 0) {
                free_list(paths + i, n - i);
                free(paths);
                return -1;
            }
            if (!cap_text) {
                missing++;
                cap_text = strdup(s->class_tokens ? s->class_tokens : "");
                if (missing <= 5)
                    log_warning("no caption file for %s: using %s", paths[i],
                                s->class_tokens ? "the class tokens" : "an empty caption");
            }
            DatasetImage img = {.path = paths[i],
                                .caption = cap_text,
                                .subset = si,
                                .is_reg = s->is_reg,
                                .num_repeats = s->num_repeats};
            paths[i] = NULL;
            if (!cap_text) {
                free(img.path);
                free_list(paths + i + 1, n - i - 1);
                free(paths);
                return error_set(err, "out of memory");
            }
            if (s->is_reg) {
                if (*reg_count == reg_cap) {
                    reg_cap = reg_cap ? reg_cap * 2 : 64;
                    DatasetImage *p = realloc(*reg, reg_cap * sizeof *p);
                    if (!p) {
                        free(img.path);
                        free(img.caption);
                        free_list(paths + i + 1, n - i - 1);
                        free(paths);
                        return error_set(err, "out of memory");
                    }
                    *reg = p;
                }
                (*reg)[(*reg_count)++] = img;
                ds->num_reg_images += (int64_t)s->num_repeats;
            } else {
                if (dataset_push_image(ds, cap, img, err) != 0) {
                    free_list(paths + i + 1, n - i - 1);
                    free(paths);
                    return -1;
                }
                ds->num_train_images += (int64_t)s->num_repeats;
            }
        }
        if (missing > 5)
            log_warning("... no caption file for %zu images in %s in all", missing, s->image_dir);
        free(paths);
    }
    return 0;
}

/* kohya: repeat reg images round-robin until they match the train images with repeats. */
static int balance_reg(Dataset *ds, size_t *cap, DatasetImage *reg, size_t reg_count, Error *err) {
    if (ds->num_reg_images == 0) {
        if (ds->config->is_dreambooth)
            log_info("no regularization images");
        return 0;
    }
    if (ds->num_train_images < ds->num_reg_images)
        log_warning("some of the reg images are not used (more reg images than train images)");
    size_t first_registered = ds->image_count;
    int64_t n = 0;
    bool first_loop = true;
    size_t registered = 0;
    while (n < ds->num_train_images) {
        for (size_t i = 0; i < reg_count; i++) {
            if (first_loop) {
                if (dataset_push_image(ds, cap, reg[i], err) != 0) {
                    for (size_t k = i + 1; k < reg_count; k++) {
                        free(reg[k].path);
                        free(reg[k].caption);
                    }
                    return -1;
                }
                reg[i].path = reg[i].caption = NULL;
                registered++;
                n += reg[i].num_repeats;
            } else {
                ds->images[first_registered + i].num_repeats++;
                n++;
            }
            if (n >= ds->num_train_images)
                break;
        }
        first_loop = false;
    }
    for (size_t i = registered; i < reg_count; i++) {
        free(reg[i].path);
        free(reg[i].caption);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Buckets */

static void shuffle_buckets(Dataset *ds, PyRandom *rng) {
    py_random_seed(rng, ds->seed + ds->current_epoch);
    py_random_shuffle(rng, ds->batches, ds->batch_count, sizeof *ds->batches);
    for (size_t b = 0; b < ds->bucket_count; b++)
        py_random_shuffle(rng, ds->bucket_items[b], ds->bucket_len[b], sizeof(size_t));
}

static int bucket_id(Dataset *ds, BucketReso r, Error *err) {
    for (size_t i = 0; i < ds->bucket_count; i++)
        if (ds->bucket_resos[i].width == r.width && ds->bucket_resos[i].height == r.height)
            return (int)i;
    BucketReso *p = realloc(ds->bucket_resos, (ds->bucket_count + 1) * sizeof *p);
    if (!p)
        return error_set(err, "out of memory");
    ds->bucket_resos = p;
    ds->bucket_count++;
    p[ds->bucket_count - 1] = r;
    return (int)ds->bucket_count - 1;
}

static int cmp_reso(const void *a, const void *b) {
    const BucketReso *x = a, *y = b;
    if (x->width != y->width)
        return x->width < y->width ? -1 : 1;
    return (x->height > y->height) - (x->height < y->height);
}

static int make_buckets(Dataset *ds, PyRandom *rng, Error *err) {
    const DatasetConfig *c = ds->config;
    for (size_t i = 0; i < ds->image_count; i++) {
        DatasetImage *im = &ds->images[i];
        if (im->width <= 0 && image_read_size(im->path, &im->width, &im->height, err) != 0)
            return -1;
    }
    BucketReso res = {c->resolution[0], c->resolution[1]};
    if (c->enable_bucket) {
        int mn = c->min_bucket_reso, mx = c->max_bucket_reso;
        if (bucket_adjust_min_max(res, &mn, &mx, c->bucket_reso_steps, err) != 0 ||
            bucket_manager_init(&ds->manager, c->bucket_no_upscale, res, mn, mx,
                                c->bucket_reso_steps, err) != 0)
            return -1;
    } else if (bucket_manager_init_single(&ds->manager, res, err) != 0) {
        return -1;
    }
    double ar_sum = 0;
    for (size_t i = 0; i < ds->image_count; i++) {
        DatasetImage *im = &ds->images[i];
        double are = 0;
        if (bucket_select(&ds->manager, im->width, im->height, &im->bucket, &im->resized, &are,
                          err) != 0)
            return error_prefix(err, "%s: ", im->path);
        ar_sum += fabs(are);
        if (bucket_id(ds, im->bucket, err) < 0)
            return -1;
    }
    ds->mean_ar_error = ds->image_count ? ar_sum / (double)ds->image_count : 0;
    if (c->enable_bucket && ds->bucket_count > 1)
        qsort(ds->bucket_resos, ds->bucket_count, sizeof *ds->bucket_resos, cmp_reso);
    ds->bucket_items = calloc(ds->bucket_count ? ds->bucket_count : 1, sizeof *ds->bucket_items);
    ds->bucket_len = calloc(ds->bucket_count ? ds->bucket_count : 1, sizeof *ds->bucket_len);
    if (!ds->bucket_items || !ds->bucket_len)
        return error_set(err, "out of memory");
    for (size_t b = 0; b < ds->bucket_count; b++) {
        size_t total = 0;
        for (size_t i = 0; i < ds->image_count; i++)
            if (ds->images[i].bucket.width == ds->bucket_resos[b].width &&
                ds->images[i].bucket.height == ds->bucket_resos[b].height)
                total += (size_t)ds->images[i].num_repeats;
        ds->bucket_items[b] = malloc((total ? total : 1) * sizeof(size_t));
        if (!ds->bucket_items[b])
            return error_set(err, "out of memory");
    }
    /* kohya adds each image num_repeats times, images in image_data order. */
    for (size_t i = 0; i < ds->image_count; i++) {
        int b = bucket_id(ds, ds->images[i].bucket, err);
        for (int r = 0; r < ds->images[i].num_repeats; r++)
            ds->bucket_items[b][ds->bucket_len[b]++] = i;
    }
    size_t bs = (size_t)c->batch_size, nb = 0;
    for (size_t b = 0; b < ds->bucket_count; b++)
        nb += (ds->bucket_len[b] + bs - 1) / bs;
    ds->batches = malloc((nb ? nb : 1) * sizeof *ds->batches);
    if (!ds->batches)
        return error_set(err, "out of memory");
    for (size_t b = 0; b < ds->bucket_count; b++)
        for (size_t k = 0; k < (ds->bucket_len[b] + bs - 1) / bs; k++)
            ds->batches[ds->batch_count++] = (BucketBatch){b, k};
    if (c->enable_bucket)
        for (size_t b = 0; b < ds->bucket_count; b++)
            log_info("bucket %zu: resolution (%d, %d), count: %zu", b, ds->bucket_resos[b].width,
                     ds->bucket_resos[b].height, ds->bucket_len[b]);
    shuffle_buckets(ds, rng);
    return 0;
}

int dataset_build(const DatasetConfig *config, PyRandom *rng, Dataset *out, Error *err) {
    memset(out, 0, sizeof *out);
    out->config = config;
    size_t cap = 0;
    int rc;
    if (config->is_dreambooth) {
        DatasetImage *reg = NULL;
        size_t reg_count = 0;
        rc = load_dreambooth(out, &cap, &reg, &reg_count, err);
        if (rc == 0)
            rc = balance_reg(out, &cap, reg, reg_count, err);
        else
            for (size_t i = 0; i < reg_count; i++) {
                free(reg[i].path);
                free(reg[i].caption);
            }
        free(reg);
        if (rc == 0 && config->is_controlnet)
            rc = dataset_pair_conditioning(out, err);
    } else {
        rc = dataset_load_finetuning(out, &cap, err);
    }
    if (rc == 0)
        rc = make_buckets(out, rng, err);
    if (rc != 0)
        dataset_free(out);
    return rc;
}

void dataset_free(Dataset *ds) {
    for (size_t i = 0; i < ds->image_count; i++) {
        free(ds->images[i].path);
        free(ds->images[i].caption);
        free(ds->images[i].cond_path);
    }
    free(ds->images);
    for (size_t b = 0; ds->bucket_items && b < ds->bucket_count; b++)
        free(ds->bucket_items[b]);
    free(ds->bucket_items);
    free(ds->bucket_len);
    free(ds->bucket_resos);
    free(ds->batches);
    bucket_manager_free(&ds->manager);
    memset(ds, 0, sizeof *ds);
}

void dataset_set_seed(Dataset *ds, int64_t seed) {
    ds->seed = seed;
}

void dataset_set_epoch(Dataset *ds, int epoch, PyRandom *rng) {
    if (epoch > ds->current_epoch) {
        while (ds->current_epoch < epoch) {
            ds->current_epoch++;
            shuffle_buckets(ds, rng);
        }
    } else {
        ds->current_epoch = epoch;
    }
}

size_t dataset_batch_images(const Dataset *ds, size_t b, const size_t **indices) {
    const BucketBatch *bb = &ds->batches[b];
    size_t bs = (size_t)ds->config->batch_size, start = bb->batch_index * bs;
    size_t len = ds->bucket_len[bb->bucket];
    *indices = ds->bucket_items[bb->bucket] + start;
    return start + bs <= len ? bs : len - start;
}

/* ------------------------------------------------------------------------------------------ */

static ResizeMethod resize_method(const char *name, const char *fallback) {
    const char *n = name ? name : fallback;
    if (!n)
        return RESIZE_AUTO;
    return !strcmp(n, "area") ? RESIZE_AREA : RESIZE_LANCZOS;
}

/* kohya: alpha / 255 as float32 from an RGBA image, ones for an RGB one. */
static int alpha_from_image(const Image *img, float **out, Error *err) {
    size_t n = (size_t)img->width * img->height;
    *out = malloc(sizeof(float) * (n ? n : 1));
    if (!*out)
        return error_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        (*out)[i] = img->channels == 4 ? (float)img->pixels[i * 4 + 3] / 255.0f : 1.0f;
    return 0;
}

int dataset_load_sample(const Dataset *ds, size_t index, bool load_pixels,
                        const CaptionReplacement *repl, size_t repl_count, const CaptionStep *step,
                        PyRandom *rng, DatasetSample *out, Error *err) {
    memset(out, 0, sizeof *out);
    const DatasetImage *im = &ds->images[index];
    const SubsetConfig *s = &ds->config->subsets[im->subset];
    out->loss_weight = im->is_reg ? (float)ds->config->prior_loss_weight : 1.0f;
    out->flipped = s->flip_aug && py_random_random(rng) < 0.5;
    out->width = im->bucket.width;
    out->height = im->bucket.height;
    bucket_crop_ltrb(im->bucket, im->width, im->height, out->crop_ltrb);
    if (load_pixels) {
        Image img;
        ImageLoadOptions opts = {.keep_alpha = s->alpha_mask};
        if (image_load_file(im->path, &opts, &img, err) != 0)
            return -1;
        if (img.exif_orientation != 1)
            log_debug("%s: EXIF orientation %d ignored, as kohya does", im->path,
                      img.exif_orientation);
        if (img.width != im->width || img.height != im->height) {
            image_free(&img);
            return error_set(err, "%s: the image is %dx%d now, %dx%d when the buckets were made",
                             im->path, img.width, img.height, im->width, im->height);
        }
        int rc;
        if (ds->config->enable_bucket) {
            rc = image_trim_and_resize(
                &img, im->bucket.width, im->bucket.height, im->resized.width, im->resized.height,
                s->random_crop, rng,
                resize_method(s->resize_interpolation, ds->config->resize_interpolation), err);
        } else {
            /* Without buckets the image must have the resolution, or be larger with
             * random_crop (kohya: random offsets, height first). */
            int w = ds->config->resolution[0], h = ds->config->resolution[1];
            rc = 0;
            if (img.width > w || img.height > h) {
                if (!s->random_crop)
                    rc = error_set(err,
                                   "%s: image is %dx%d, larger than the resolution %dx%d, and "
                                   "bucketing and random_crop are off: enable one",
                                   im->path, img.width, img.height, w, h);
                else {
                    int y0 = img.height > h ? (int)py_random_randint(rng, 0, img.height - h) : 0;
                    int x0 = img.width > w ? (int)py_random_randint(rng, 0, img.width - w) : 0;
                    rc = image_crop(&img, x0, y0, img.width > w ? w : img.width,
                                    img.height > h ? h : img.height, err);
                }
            }
            if (rc == 0 && (img.width != w || img.height != h))
                rc = error_set(err, "%s: image is %dx%d, smaller than the resolution %dx%d",
                               im->path, img.width, img.height, w, h);
            out->crop_ltrb[0] = out->crop_ltrb[1] = out->crop_ltrb[2] = out->crop_ltrb[3] = 0;
        }
        if (rc != 0) {
            image_free(&img);
            return rc;
        }
        if (s->color_aug)
            image_color_aug(&img, rng);
        if (out->flipped)
            image_flip_horizontal(&img);
        out->pixels = malloc(sizeof(float) * 3 * (size_t)img.width * img.height);
        if (!out->pixels) {
            image_free(&img);
            return error_set(err, "out of memory");
        }
        image_to_tensor(&img, out->pixels);
        out->width = img.width;
        out->height = img.height;
        if (s->alpha_mask && alpha_from_image(&img, &out->alpha_mask, err) != 0) {
            image_free(&img);
            dataset_sample_free(out);
            return -1;
        }
        image_free(&img);
    }
    CaptionRules rules = {
        .shuffle_caption = s->shuffle_caption,
        .caption_separator = s->caption_separator,
        .keep_tokens = s->keep_tokens,
        .keep_tokens_separator = s->keep_tokens_separator,
        .secondary_separator = s->secondary_separator,
        .enable_wildcard = s->enable_wildcard,
        .caption_prefix = s->caption_prefix,
        .caption_suffix = s->caption_suffix,
        .token_warmup_min = s->token_warmup_min,
        .token_warmup_step = s->token_warmup_step,
    };
    if (caption_process(&rules, repl, repl_count, step, rng, im->caption, &out->caption, err) !=
        0) {
        dataset_sample_free(out);
        return error_prefix(err, "%s: ", im->path);
    }
    return 0;
}

void dataset_sample_free(DatasetSample *s) {
    free(s->pixels);
    free(s->alpha_mask);
    free(s->caption);
    memset(s, 0, sizeof *s);
}

int dataset_check_token_string(const Dataset *datasets, size_t count, const char *token,
                               Error *err) {
    size_t total = 0, without = 0;
    const char *examples[3] = {0};
    for (size_t d = 0; d < count; d++) {
        const Dataset *ds = &datasets[d];
        for (size_t i = 0; i < ds->image_count; i++) {
            const DatasetImage *im = &ds->images[i];
            const SubsetConfig *s = &ds->config->subsets[im->subset];
            if (im->is_reg)
                continue; /* regularisation images describe the class, not the token */
            total++;
            bool has = strstr(im->caption, token) ||
                       (s->caption_prefix && strstr(s->caption_prefix, token)) ||
                       (s->caption_suffix && strstr(s->caption_suffix, token));
            if (!has) {
                if (without < 3)
                    examples[without] = im->path;
                without++;
            }
        }
    }
    if (total == 0)
        return error_set(err, "no training images found (only regularisation images)");
    if (without == total)
        return error_set(err,
                         "the token string '%s' occurs in no caption (e.g. %s): training would "
                         "learn nothing. Put it in the captions (or class tokens / "
                         "caption_prefix), or use --use_object_template / --use_style_template",
                         token, examples[0]);
    if (without > 0)
        log_warning("%zu of %zu images have no '%s' in their caption, e.g. %s%s%s%s%s", without,
                    total, token, examples[0], examples[1] ? ", " : "",
                    examples[1] ? examples[1] : "", examples[2] ? ", " : "",
                    examples[2] ? examples[2] : "");
    return 0;
}

int dataset_load_for_cache(const Dataset *ds, size_t index, bool flipped, float *out,
                           float *alpha_mask, Error *err) {
    const DatasetImage *im = &ds->images[index];
    const SubsetConfig *s = &ds->config->subsets[im->subset];
    Image img;
    ImageLoadOptions opts = {.keep_alpha = s->alpha_mask};
    if (image_load_file(im->path, &opts, &img, err) != 0)
        return -1;
    if (image_trim_and_resize(
            &img, im->bucket.width, im->bucket.height, im->resized.width, im->resized.height, false,
            NULL, resize_method(s->resize_interpolation, ds->config->resize_interpolation),
            err) != 0) {
        image_free(&img);
        return error_prefix(err, "%s: ", im->path);
    }
    if (flipped)
        image_flip_horizontal(&img);
    image_to_tensor(&img, out);
    if (alpha_mask && s->alpha_mask) {
        float *m;
        if (alpha_from_image(&img, &m, err) != 0) {
            image_free(&img);
            return -1;
        }
        memcpy(alpha_mask, m, sizeof(float) * (size_t)img.width * img.height);
        free(m);
    }
    image_free(&img);
    return 0;
}

int dataset_check_latents_cacheable(const Dataset *ds, Error *err) {
    for (size_t i = 0; i < ds->config->subset_count; i++) {
        const SubsetConfig *s = &ds->config->subsets[i];
        if (s->color_aug || s->random_crop)
            return error_set(err,
                             "%s: when caching latents, color_aug and random_crop cannot be used "
                             "(as in kohya): turn them off or drop --cache_latents",
                             s->where);
    }
    return 0;
}
