/* kohya's FineTuningDataset (train_util.py): images and captions from a metadata .json
 * ({image: {caption, tags, image_size}}) or .jsonl, keys taken longest first as kohya sorts
 * them, caption + caption_separator + tags (on every line with enable_wildcard). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "base/log.h"
#include "train/dataset_internal.h"

/* ------------------------------------------------------------------------------------------
 * Fine-tuning subsets (metadata .json {key: {caption, tags, image_size}} or .jsonl) */

static int cmp_len_desc(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    size_t lx = strlen(x->string), ly = strlen(y->string);
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return (x > y) - (x < y); /* stable: original order */
}

static char *ft_caption(const SubsetConfig *s, const cJSON *md) {
    const cJSON *c = cJSON_GetObjectItem(md, "caption"), *t = cJSON_GetObjectItem(md, "tags");
    const char *caption = cJSON_IsString(c) ? c->valuestring : "";
    const char *tags = cJSON_IsString(t) ? t->valuestring : NULL;
    const char *sep = s->caption_separator;
    size_t n = strlen(caption) + (tags ? strlen(tags) * 4 + strlen(sep) * 8 : 0) + 64;
    char *out = malloc(n + strlen(caption) * strlen(sep) * 2);
    if (!out)
        return NULL;
    out[0] = '\0';
    if (!tags || !tags[0]) {
        strcpy(out, caption);
        return out;
    }
    if (!s->enable_wildcard) {
        sprintf(out, "%s%s%s", caption, caption[0] ? sep : "", tags);
        return out;
    }
    /* wildcard: tags on one line, appended to every non-empty caption line */
    char *t1 = malloc(strlen(tags) * (strlen(sep) + 1) + 1);
    if (!t1) {
        free(out);
        return NULL;
    }
    size_t w = 0;
    for (const char *p = tags; *p; p++) {
        if (*p == '\n') {
            strcpy(t1 + w, sep);
            w += strlen(sep);
        } else {
            t1[w++] = *p;
        }
    }
    t1[w] = '\0';
    size_t lines = 1;
    for (const char *p = caption; *p; p++)
        lines += *p == '\n';
    char *o = realloc(out, strlen(caption) + lines * (strlen(sep) + w + 1) + 1);
    if (!o) {
        free(t1);
        free(out);
        return NULL;
    }
    out = o;
    out[0] = '\0';
    const char *p = caption;
    bool first = true;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *e = p + len, *b = caption_strip(p, &e);
        if (e > b) {
            if (!first)
                strcat(out, "\n");
            strncat(out, p, len);
            strcat(out, sep);
            strcat(out, t1);
            first = false;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    free(t1);
    return out;
}

static cJSON *load_metadata(const char *path, Error *err) {
    char *text = NULL;
    size_t size = 0;
    if (file_read_all(path, &text, &size, err) != 0)
        return NULL;
    cJSON *root = NULL;
    if (path_has_suffix(path, ".jsonl")) {
        root = cJSON_CreateObject();
        int line = 0;
        for (char *p = text; root && p && *p; line++) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            if (p[strspn(p, " \t\r")]) {
                cJSON *obj = cJSON_Parse(p);
                const cJSON *ip = cJSON_GetObjectItem(obj, "image_path");
                if (!obj || !cJSON_IsString(ip)) {
                    error_set(err, "%s:%d: not a JSON object with \"image_path\"", path, line + 1);
                    cJSON_Delete(obj);
                    cJSON_Delete(root);
                    root = NULL;
                    break;
                }
                cJSON_AddItemToObject(root, ip->valuestring, obj);
            }
            p = nl ? nl + 1 : NULL;
        }
    } else {
        root = cJSON_Parse(text);
        if (!root || !cJSON_IsObject(root)) {
            error_set(err, "%s: not a JSON object of {image: {caption, tags}} (kohya's metadata)",
                      path);
            cJSON_Delete(root);
            root = NULL;
        }
    }
    free(text);
    return root;
}

int dataset_load_finetuning(Dataset *ds, size_t *cap, Error *err) {
    const DatasetConfig *cfg = ds->config;
    for (size_t si = 0; si < cfg->subset_count; si++) {
        const SubsetConfig *s = &cfg->subsets[si];
        if (s->num_repeats < 1) {
            log_warning("ignoring subset %s: num_repeats is less than 1", s->where);
            continue;
        }
        if (!file_exists(s->metadata_file))
            return error_set(err, "%s: no metadata file %s", s->where, s->metadata_file);
        cJSON *meta = load_metadata(s->metadata_file, err);
        if (!meta)
            return -1;
        size_t n = (size_t)cJSON_GetArraySize(meta);
        if (n == 0) {
            log_warning("ignoring subset %s: %s has no image entries", s->where, s->metadata_file);
            cJSON_Delete(meta);
            continue;
        }
        cJSON **items = malloc(n * sizeof *items);
        if (!items) {
            cJSON_Delete(meta);
            return error_set(err, "out of memory");
        }
        size_t k = 0;
        for (cJSON *it = meta->child; it; it = it->next)
            items[k++] = it;
        qsort(items, n, sizeof *items, cmp_len_desc);
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *key = items[i]->string;
            char *path;
            if (key[0] == '/') {
                path = strdup(key);
            } else if (!s->image_dir) {
                rc = error_set(err,
                               "%s: image '%s' has a relative path: set image_dir (or "
                               "--train_data_dir)",
                               s->metadata_file, key);
                break;
            } else {
                path = path_join(s->image_dir, key);
            }
            DatasetImage img = {.path = path,
                                .caption = ft_caption(s, items[i]),
                                .subset = si,
                                .num_repeats = s->num_repeats};
            if (!img.path || !img.caption) {
                free(img.path);
                free(img.caption);
                rc = error_set(err, "out of memory");
                break;
            }
            const cJSON *sz = cJSON_GetObjectItem(items[i], "image_size");
            if (cJSON_IsArray(sz) && cJSON_GetArraySize(sz) == 2) {
                img.width = cJSON_GetArrayItem(sz, 0)->valueint;
                img.height = cJSON_GetArrayItem(sz, 1)->valueint;
            }
            rc = dataset_push_image(ds, cap, img, err);
        }
        ds->num_train_images += (int64_t)n * s->num_repeats;
        free(items);
        cJSON_Delete(meta);
        if (rc != 0)
            return -1;
    }
    return 0;
}
