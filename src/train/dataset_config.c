/* kohya's dataset schema and value lookup (see dataset_config.h). The schema is one table of
 * keys, each with its TOML type and the groups it belongs to (config_util.py's
 * SUBSET_ASCENDABLE_SCHEMA, DB_SUBSET_ASCENDABLE_SCHEMA, DB/FT_SUBSET_DISTINCT_SCHEMA,
 * DATASET_ASCENDABLE_SCHEMA); which groups a level accepts follows ConfigSanitizer. */
#define _POSIX_C_SOURCE 200809L
#include "train/dataset_config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "base/log.h"
#include "formats/toml.h"

typedef enum KeyType {
    KT_BOOL,
    KT_INT,
    KT_FLOAT,  /* voluptuous `float`: a TOML float only (kohya refuses 1 for 1.0) */
    KT_NUMBER, /* Any(float, int) */
    KT_STRING,
    KT_FLOAT_PAIR, /* ExactSequence([float, float]) */
    KT_RESOLUTION, /* int or [int, int] */
    KT_TABLE,
} KeyType;

enum {
    G_SUBSET = 1,      /* SUBSET_ASCENDABLE_SCHEMA */
    G_DB_ASC = 2,      /* DB_SUBSET_ASCENDABLE_SCHEMA */
    G_DB_DISTINCT = 4, /* DB_SUBSET_DISTINCT_SCHEMA */
    G_FT_DISTINCT = 8, /* FT_SUBSET_DISTINCT_SCHEMA */
    G_DATASET = 16,    /* DATASET_ASCENDABLE_SCHEMA */
    G_CN_ASC = 32,      /* CN_SUBSET_ASCENDABLE_SCHEMA (with --masked_loss) */
    G_CN_DISTINCT = 64, /* CN_SUBSET_DISTINCT_SCHEMA (with --masked_loss) */
};

typedef struct KeySpec {
    const char *name;
    KeyType type;
    int groups;
} KeySpec;

static const KeySpec KEYS[] = {
    {"color_aug", KT_BOOL, G_SUBSET},
    {"face_crop_aug_range", KT_FLOAT_PAIR, G_SUBSET},
    {"flip_aug", KT_BOOL, G_SUBSET},
    {"num_repeats", KT_INT, G_SUBSET},
    {"random_crop", KT_BOOL, G_SUBSET},
    {"shuffle_caption", KT_BOOL, G_SUBSET},
    {"keep_tokens", KT_INT, G_SUBSET},
    {"keep_tokens_separator", KT_STRING, G_SUBSET},
    {"secondary_separator", KT_STRING, G_SUBSET},
    {"caption_separator", KT_STRING, G_SUBSET},
    {"enable_wildcard", KT_BOOL, G_SUBSET},
    {"token_warmup_min", KT_INT, G_SUBSET},
    {"token_warmup_step", KT_NUMBER, G_SUBSET},
    {"caption_prefix", KT_STRING, G_SUBSET},
    {"caption_suffix", KT_STRING, G_SUBSET},
    {"custom_attributes", KT_TABLE, G_SUBSET},
    {"resize_interpolation", KT_STRING, G_SUBSET | G_DATASET},
    {"caption_extension", KT_STRING, G_DB_ASC | G_CN_ASC},
    {"class_tokens", KT_STRING, G_DB_ASC},
    {"cache_info", KT_BOOL, G_DB_ASC | G_CN_ASC},
    {"image_dir", KT_STRING, G_DB_DISTINCT | G_FT_DISTINCT | G_CN_DISTINCT},
    {"conditioning_data_dir", KT_STRING, G_CN_DISTINCT},
    {"is_reg", KT_BOOL, G_DB_DISTINCT},
    {"alpha_mask", KT_BOOL, G_DB_DISTINCT | G_FT_DISTINCT},
    {"metadata_file", KT_STRING, G_FT_DISTINCT},
    {"batch_size", KT_INT, G_DATASET},
    {"bucket_no_upscale", KT_BOOL, G_DATASET},
    {"bucket_reso_steps", KT_INT, G_DATASET},
    {"enable_bucket", KT_BOOL, G_DATASET},
    {"max_bucket_reso", KT_INT, G_DATASET},
    {"min_bucket_reso", KT_INT, G_DATASET},
    {"validation_seed", KT_INT, G_DATASET},
    {"validation_split", KT_FLOAT, G_DATASET},
    {"resolution", KT_RESOLUTION, G_DATASET},
    {"network_multiplier", KT_FLOAT, G_DATASET},
};

#define LEVEL_GENERAL    (G_DATASET | G_SUBSET | G_DB_ASC)
#define LEVEL_DB_DATASET (G_DATASET | G_SUBSET | G_DB_ASC)
#define LEVEL_FT_DATASET (G_DATASET | G_SUBSET)
#define LEVEL_DB_SUBSET  (G_SUBSET | G_DB_DISTINCT | G_DB_ASC)
#define LEVEL_FT_SUBSET  (G_SUBSET | G_FT_DISTINCT)
/* kohya's ControlNet-style datasets (support_controlnet = --masked_loss): every subset has
 * conditioning_data_dir; no class_tokens, is_reg, alpha_mask or metadata_file */
#define LEVEL_CN_DATASET (G_DATASET | G_SUBSET | G_CN_ASC)
#define LEVEL_CN_SUBSET  (G_SUBSET | G_CN_ASC | G_CN_DISTINCT)

static const KeySpec *find_key(const char *name) {
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (!strcmp(KEYS[i].name, name))
            return &KEYS[i];
    return NULL;
}

void dataset_args_init(DatasetArgs *a) {
    memset(a, 0, sizeof *a);
    a->batch_size = 1;
    a->num_repeats = 1;
    a->min_bucket_reso = 256;
    a->max_bucket_reso = 1024;
    a->bucket_reso_steps = 64;
    a->caption_separator = ",";
    a->caption_extension = ".caption";
    a->keep_tokens_separator = "";
    a->token_warmup_min = 1;
    a->prior_loss_weight = 1.0;
}

bool dataset_interpolation_valid(const char *name) {
    static const char *const ok[] = {"lanczos", "nearest", "bilinear", "linear",
                                     "bicubic", "cubic",   "area",     "box"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(name, ok[i]))
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------------
 * Validation */

static int check_type(const TomlValue *v, KeyType type, Error *err) {
    switch (type) {
    case KT_BOOL:
        return v->kind == TOML_BOOL ? 0
                                    : toml_value_error(v, err, "expected true or false, found %s",
                                                       toml_kind_name(v->kind));
    case KT_INT:
        return v->kind == TOML_INTEGER ? 0
                                       : toml_value_error(v, err, "expected an integer, found %s",
                                                          toml_kind_name(v->kind));
    case KT_FLOAT:
        if (v->kind == TOML_FLOAT)
            return 0;
        if (v->kind == TOML_INTEGER)
            return toml_value_error(v, err,
                                    "expected a float, found an integer (kohya's schema "
                                    "refuses it too: write %lld.0)",
                                    (long long)v->integer);
        return toml_value_error(v, err, "expected a float, found %s", toml_kind_name(v->kind));
    case KT_NUMBER:
        return v->kind == TOML_FLOAT || v->kind == TOML_INTEGER
                   ? 0
                   : toml_value_error(v, err, "expected a number, found %s",
                                      toml_kind_name(v->kind));
    case KT_STRING:
        return v->kind == TOML_STRING ? 0
                                      : toml_value_error(v, err, "expected a string, found %s",
                                                         toml_kind_name(v->kind));
    case KT_TABLE:
        return v->kind == TOML_TABLE ? 0
                                     : toml_value_error(v, err, "expected a table, found %s",
                                                        toml_kind_name(v->kind));
    case KT_FLOAT_PAIR:
        if (v->kind != TOML_ARRAY || v->item_count != 2 || v->items[0]->kind != TOML_FLOAT ||
            v->items[1]->kind != TOML_FLOAT)
            return toml_value_error(v, err, "expected two floats [low, high], e.g. [2.0, 4.0]");
        return 0;
    case KT_RESOLUTION:
        if (v->kind == TOML_INTEGER && v->integer > 0 && v->integer <= 65536)
            return 0;
        if (v->kind == TOML_ARRAY && v->item_count == 2 && v->items[0]->kind == TOML_INTEGER &&
            v->items[1]->kind == TOML_INTEGER && v->items[0]->integer > 0 &&
            v->items[1]->integer > 0 && v->items[0]->integer <= 65536 &&
            v->items[1]->integer <= 65536)
            return 0;
        return toml_value_error(v, err,
                                "expected a positive integer (512) or [width, height] (e.g. "
                                "[768, 512])");
    }
    return 0;
}

static int check_table(const TomlValue *table, int level, const char *level_name,
                       bool allow_subsets, Error *err) {
    for (size_t i = 0; i < table->entry_count; i++) {
        const TomlEntry *e = &table->entries[i];
        if (allow_subsets && !strcmp(e->key, "subsets"))
            continue;
        const KeySpec *k = find_key(e->key);
        if (!k) {
            if (!strncmp(e->key, "caption_dropout", 15) ||
                !strcmp(e->key, "caption_tag_dropout_rate"))
                return toml_value_error(e->value, err,
                                        "unknown key: kohya's textual inversion has no caption "
                                        "dropout (its config schema refuses this key too)");
            if (!strcmp(e->key, "prior_loss_weight") || !strcmp(e->key, "debug_dataset") ||
                !strcmp(e->key, "max_token_length"))
                return toml_value_error(e->value, err,
                                        "unknown key: this is a command-line option (--%s), not "
                                        "a dataset setting",
                                        e->key);
            return toml_value_error(e->value, err, "unknown key in %s", level_name);
        }
        if (!(k->groups & level) && !strcmp(e->key, "conditioning_data_dir"))
            return toml_value_error(e->value, err,
                                    "not allowed in %s: kohya reads conditioning images only "
                                    "with --masked_loss, and only when every subset of the "
                                    "dataset has conditioning_data_dir",
                                    level_name);
        if (!(k->groups & level)) {
            const char *where =
                k->groups & (G_DB_DISTINCT | G_FT_DISTINCT) ? "only in [[datasets.subsets]]"
                : k->groups & G_DATASET                     ? "only in [general] or [[datasets]]"
                : k->groups & G_DB_ASC ? "only with DreamBooth subsets (no metadata_file)"
                                       : "elsewhere";
            return toml_value_error(e->value, err, "not allowed in %s: this key belongs %s",
                                    level_name, where);
        }
        if (check_type(e->value, k->type, err) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Lookup: subset -> dataset -> general -> args. */

typedef struct Chain {
    const TomlValue *tables[3];
    int count;
} Chain;

static const TomlValue *chain_get(const Chain *c, const char *key) {
    for (int i = 0; i < c->count; i++) {
        const TomlValue *v = c->tables[i] ? toml_table_get(c->tables[i], key) : NULL;
        if (v)
            return v;
    }
    return NULL;
}

static bool get_bool(const Chain *c, const char *key, bool dflt) {
    const TomlValue *v = chain_get(c, key);
    return v ? v->boolean : dflt;
}

static int get_int(const Chain *c, const char *key, int dflt) {
    const TomlValue *v = chain_get(c, key);
    return v ? (int)v->integer : dflt;
}

static double get_number(const Chain *c, const char *key, double dflt) {
    const TomlValue *v = chain_get(c, key);
    return !v ? dflt : v->kind == TOML_INTEGER ? (double)v->integer : v->number;
}

static char *get_string(const Chain *c, const char *key, const char *dflt, bool *oom) {
    const TomlValue *v = chain_get(c, key);
    const char *s = v ? v->str : dflt;
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

static char *dup_or_null(const char *s, bool *oom) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

static void subset_free(SubsetConfig *s) {
    free(s->image_dir);
    free(s->metadata_file);
    free(s->class_tokens);
    free(s->caption_extension);
    free(s->caption_separator);
    free(s->keep_tokens_separator);
    free(s->secondary_separator);
    free(s->caption_prefix);
    free(s->caption_suffix);
    free(s->resize_interpolation);
    free(s->conditioning_data_dir);
}

/* Fills a subset from the lookup chain; `c` may be empty (folder subsets). */
static int resolve_subset(const Chain *c, const DatasetArgs *a, SubsetConfig *s, Error *err) {
    bool oom = false;
    s->image_dir = get_string(c, "image_dir", NULL, &oom);
    s->metadata_file = get_string(c, "metadata_file", NULL, &oom);
    s->is_reg = get_bool(c, "is_reg", false);
    s->class_tokens = get_string(c, "class_tokens", NULL, &oom);
    s->caption_extension = get_string(c, "caption_extension", a->caption_extension, &oom);
    s->cache_info = get_bool(c, "cache_info", a->cache_info);
    s->alpha_mask = get_bool(c, "alpha_mask", a->alpha_mask);
    s->num_repeats = get_int(c, "num_repeats", a->num_repeats);
    s->shuffle_caption = get_bool(c, "shuffle_caption", a->shuffle_caption);
    s->caption_separator = get_string(c, "caption_separator", a->caption_separator, &oom);
    s->keep_tokens = get_int(c, "keep_tokens", a->keep_tokens);
    s->keep_tokens_separator =
        get_string(c, "keep_tokens_separator", a->keep_tokens_separator, &oom);
    s->secondary_separator = get_string(c, "secondary_separator", a->secondary_separator, &oom);
    s->enable_wildcard = get_bool(c, "enable_wildcard", a->enable_wildcard);
    s->color_aug = get_bool(c, "color_aug", a->color_aug);
    s->flip_aug = get_bool(c, "flip_aug", a->flip_aug);
    s->random_crop = get_bool(c, "random_crop", a->random_crop);
    const TomlValue *fc = chain_get(c, "face_crop_aug_range");
    if (fc) {
        s->has_face_crop_aug_range = true;
        s->face_crop_aug_range[0] = fc->items[0]->number;
        s->face_crop_aug_range[1] = fc->items[1]->number;
    } else if (a->has_face_crop_aug_range) {
        s->has_face_crop_aug_range = true;
        memcpy(s->face_crop_aug_range, a->face_crop_aug_range, sizeof s->face_crop_aug_range);
    }
    s->caption_prefix = get_string(c, "caption_prefix", a->caption_prefix, &oom);
    s->caption_suffix = get_string(c, "caption_suffix", a->caption_suffix, &oom);
    s->token_warmup_min = get_int(c, "token_warmup_min", a->token_warmup_min);
    s->token_warmup_step = get_number(c, "token_warmup_step", a->token_warmup_step);
    s->resize_interpolation = get_string(c, "resize_interpolation", a->resize_interpolation, &oom);
    if (oom)
        return error_set(err, "out of memory");
    if (!s->caption_separator[0])
        return error_set(err, "%s: caption_separator is empty", s->where);
    if (s->resize_interpolation && !dataset_interpolation_valid(s->resize_interpolation))
        return error_set(err,
                         "%s: resize_interpolation '%s' is not one of lanczos, nearest, bilinear, "
                         "linear, bicubic, cubic, area, box",
                         s->where, s->resize_interpolation);
    if (s->resize_interpolation && strcmp(s->resize_interpolation, "area") &&
        strcmp(s->resize_interpolation, "lanczos"))
        return error_set(err,
                         "%s: resize_interpolation '%s' is not supported by sdti yet (area and "
                         "lanczos are; leave it unset for kohya's automatic choice)",
                         s->where, s->resize_interpolation);
    if (s->has_face_crop_aug_range)
        return error_set(err,
                         "%s: face_crop_aug_range is not supported by sdti yet (it needs the face "
                         "position in each file name); remove it",
                         s->where);
    return 0;
}

static int resolve_dataset(const Chain *c, const DatasetArgs *a, DatasetConfig *d,
                           const char *where, Error *err) {
    d->batch_size = get_int(c, "batch_size", a->batch_size);
    d->enable_bucket = get_bool(c, "enable_bucket", a->enable_bucket);
    d->min_bucket_reso = get_int(c, "min_bucket_reso", a->min_bucket_reso);
    d->max_bucket_reso = get_int(c, "max_bucket_reso", a->max_bucket_reso);
    d->bucket_reso_steps = get_int(c, "bucket_reso_steps", a->bucket_reso_steps);
    d->bucket_no_upscale = get_bool(c, "bucket_no_upscale", a->bucket_no_upscale);
    d->network_multiplier = get_number(c, "network_multiplier", 1.0);
    d->prior_loss_weight = a->prior_loss_weight;
    bool oom = false;
    d->resize_interpolation = get_string(c, "resize_interpolation", a->resize_interpolation, &oom);
    if (oom)
        return error_set(err, "out of memory");
    const TomlValue *r = chain_get(c, "resolution");
    if (r && r->kind == TOML_INTEGER) {
        d->resolution[0] = d->resolution[1] = (int)r->integer;
    } else if (r) {
        d->resolution[0] = (int)r->items[0]->integer;
        d->resolution[1] = (int)r->items[1]->integer;
    } else if (a->has_resolution) {
        d->resolution[0] = a->resolution[0];
        d->resolution[1] = a->resolution[1];
    } else {
        return error_set(err,
                         "%s: no resolution: set resolution in the dataset config or pass "
                         "--resolution (kohya requires it too)",
                         where);
    }
    if (d->batch_size < 1)
        return error_set(err, "%s: batch_size must be at least 1 (got %d)", where, d->batch_size);
    if (d->resize_interpolation && !dataset_interpolation_valid(d->resize_interpolation))
        return error_set(err, "%s: resize_interpolation '%s' is not a known interpolation", where,
                         d->resize_interpolation);
    if (d->resize_interpolation && strcmp(d->resize_interpolation, "area") &&
        strcmp(d->resize_interpolation, "lanczos"))
        return error_set(err,
                         "%s: resize_interpolation '%s' is not supported by sdti yet (area and "
                         "lanczos are)",
                         where, d->resize_interpolation);
    /* train_textual_inversion.py: verify_bucket_reso_steps(64), only with buckets. */
    if (d->enable_bucket && (d->bucket_reso_steps <= 0 || d->bucket_reso_steps % 64 != 0))
        return error_set(err,
                         "%s: bucket_reso_steps is %d; textual inversion needs a multiple of 64 "
                         "(as kohya asserts)",
                         where, d->bucket_reso_steps);
    return 0;
}

static int add_subset(DatasetConfig *d, Error *err) {
    SubsetConfig *s = realloc(d->subsets, sizeof *s * (d->subset_count + 1));
    if (!s)
        return error_set(err, "out of memory");
    d->subsets = s;
    memset(&s[d->subset_count++], 0, sizeof *s);
    return 0;
}

static int add_dataset(DatasetGroupConfig *g, Error *err) {
    DatasetConfig *d = realloc(g->datasets, sizeof *d * (g->dataset_count + 1));
    if (!d)
        return error_set(err, "out of memory");
    g->datasets = d;
    memset(&d[g->dataset_count++], 0, sizeof *d);
    return 0;
}

void dataset_config_free(DatasetGroupConfig *cfg) {
    for (size_t i = 0; i < cfg->dataset_count; i++) {
        DatasetConfig *d = &cfg->datasets[i];
        for (size_t j = 0; j < d->subset_count; j++)
            subset_free(&d->subsets[j]);
        free(d->subsets);
        free(d->resize_interpolation);
    }
    free(cfg->datasets);
    memset(cfg, 0, sizeof *cfg);
}

/* ------------------------------------------------------------------------------------------
 * The .toml */

/* A ControlNetDataset: its DreamBooth delegate's subsets (no reg images, no class tokens,
 * alpha_mask off) plus each subset's conditioning_data_dir. */
static int parse_controlnet_dataset(const char *name, const TomlValue *ds,
                                    const TomlValue *general, const TomlValue *subsets, size_t i,
                                    const DatasetArgs *args, DatasetGroupConfig *out, Error *err) {
    if (check_table(ds, LEVEL_CN_DATASET, "a conditioning-image [[datasets]] table", true, err) !=
        0)
        return -1;
    if (add_dataset(out, err) != 0)
        return -1;
    DatasetConfig *d = &out->datasets[out->dataset_count - 1];
    d->is_dreambooth = true;
    d->is_controlnet = true;
    Chain dc = {{ds, general}, 2};
    char where[128];
    snprintf(where, sizeof where, "%s:%d: [[datasets]] #%zu", name, ds->line, i + 1);
    if (resolve_dataset(&dc, args, d, where, err) != 0)
        return -1;
    for (size_t j = 0; j < subsets->item_count; j++) {
        const TomlValue *ss = subsets->items[j];
        if (check_table(ss, LEVEL_CN_SUBSET,
                        "a conditioning-image [[datasets.subsets]] table (every subset of the "
                        "dataset has conditioning_data_dir)",
                        false, err) != 0)
            return -1;
        if (!toml_table_get(ss, "image_dir"))
            return toml_value_error(ss, err, "required key 'image_dir' is missing");
        if (add_subset(d, err) != 0)
            return -1;
        SubsetConfig *s = &d->subsets[d->subset_count - 1];
        snprintf(s->where, sizeof s->where, "%s:%d", name, ss->line);
        Chain sc = {{ss, ds, general}, 3};
        if (resolve_subset(&sc, args, s, err) != 0)
            return -1;
        s->alpha_mask = false; /* ControlNetSubset passes alpha_mask=False */
        s->conditioning_data_dir = strdup(toml_table_get(ss, "conditioning_data_dir")->str);
        if (!s->conditioning_data_dir)
            return error_set(err, "out of memory");
    }
    return 0;
}

static int parse_tree(const char *name, const TomlValue *root, const DatasetArgs *args,
                      DatasetGroupConfig *out, Error *err) {
    const TomlValue *general = NULL, *datasets = NULL;
    for (size_t i = 0; i < root->entry_count; i++) {
        const TomlEntry *e = &root->entries[i];
        if (!strcmp(e->key, "general")) {
            if (e->value->kind != TOML_TABLE)
                return toml_value_error(e->value, err, "expected a table ([general])");
            general = e->value;
        } else if (!strcmp(e->key, "datasets")) {
            if (e->value->kind != TOML_ARRAY)
                return toml_value_error(e->value, err,
                                        "expected an array of tables: write [[datasets]], not "
                                        "[datasets]");
            datasets = e->value;
        } else {
            return toml_value_error(e->value, err,
                                    "unknown top-level key: a dataset config has only [general] "
                                    "and [[datasets]] (with [[datasets.subsets]])");
        }
    }
    if (general && check_table(general, LEVEL_GENERAL, "[general]", false, err) != 0)
        return -1;
    if (!datasets || datasets->item_count == 0)
        return error_set(err, "%s: no [[datasets]]: nothing to train on", name);

    for (size_t i = 0; i < datasets->item_count; i++) {
        const TomlValue *ds = datasets->items[i];
        if (ds->kind != TOML_TABLE)
            return toml_value_error(ds, err, "expected a table");
        const TomlValue *subsets = toml_table_get(ds, "subsets");
        if (subsets && subsets->kind != TOML_ARRAY)
            return toml_value_error(subsets, err,
                                    "expected an array of tables: write [[datasets.subsets]]");
        size_t n = subsets ? subsets->item_count : 0, with_meta = 0, with_cond = 0;
        for (size_t j = 0; j < n; j++) {
            if (subsets->items[j]->kind != TOML_TABLE)
                return toml_value_error(subsets->items[j], err, "expected a table");
            with_meta += toml_table_get(subsets->items[j], "metadata_file") != NULL;
            with_cond += toml_table_get(subsets->items[j], "conditioning_data_dir") != NULL;
        }
        /* kohya's validate_flex_dataset: ControlNet-style first (only with --masked_loss) */
        bool controlnet = args->masked_loss && n > 0 && with_cond == n;
        if (controlnet) {
            if (parse_controlnet_dataset(name, ds, general, subsets, i, args, out, err) != 0)
                return -1;
            continue;
        }
        if (with_meta && with_meta != n)
            return toml_value_error(ds, err,
                                    "DreamBooth subsets (image_dir) and fine-tuning subsets "
                                    "(metadata_file) cannot be mixed in one dataset: split them "
                                    "into two [[datasets]]");
        /* kohya: all(...) over no subsets is true for fine-tuning first. */
        bool dreambooth = n > 0 && with_meta == 0;
        if (check_table(ds, dreambooth ? LEVEL_DB_DATASET : LEVEL_FT_DATASET,
                        dreambooth ? "[[datasets]]" : "a fine-tuning [[datasets]] table", true,
                        err) != 0)
            return -1;
        if (n == 0)
            return toml_value_error(ds, err,
                                    "dataset has no [[datasets.subsets]]: add one with image_dir");
        if (add_dataset(out, err) != 0)
            return -1;
        DatasetConfig *d = &out->datasets[out->dataset_count - 1];
        d->is_dreambooth = dreambooth;
        Chain dc = {{ds, general}, 2};
        char where[128];
        snprintf(where, sizeof where, "%s:%d: [[datasets]] #%zu", name, ds->line, i + 1);
        if (resolve_dataset(&dc, args, d, where, err) != 0)
            return -1;
        for (size_t j = 0; j < n; j++) {
            const TomlValue *ss = subsets->items[j];
            if (check_table(ss, dreambooth ? LEVEL_DB_SUBSET : LEVEL_FT_SUBSET,
                            dreambooth ? "a DreamBooth [[datasets.subsets]] table"
                                       : "a fine-tuning [[datasets.subsets]] table (one with "
                                         "metadata_file)",
                            false, err) != 0)
                return -1;
            const char *required = dreambooth ? "image_dir" : "metadata_file";
            if (!toml_table_get(ss, required))
                return toml_value_error(ss, err, "required key '%s' is missing", required);
            if (add_subset(d, err) != 0)
                return -1;
            SubsetConfig *s = &d->subsets[d->subset_count - 1];
            snprintf(s->where, sizeof s->where, "%s:%d", name, ss->line);
            Chain sc = {{ss, ds, general}, 3};
            if (resolve_subset(&sc, args, s, err) != 0)
                return -1;
        }
    }
    return 0;
}

int dataset_config_parse(const char *name, const char *text, size_t len, const DatasetArgs *args,
                         DatasetGroupConfig *out, Error *err) {
    memset(out, 0, sizeof *out);
    TomlValue *root = NULL;
    if (toml_parse(name, text, len, &root, err) != 0)
        return -1;
    int rc = parse_tree(name, root, args, out, err);
    toml_free(root);
    if (rc != 0)
        dataset_config_free(out);
    return rc;
}

int dataset_config_load(const char *path, const DatasetArgs *args, DatasetGroupConfig *out,
                        Error *err) {
    memset(out, 0, sizeof *out);
    if (path_has_suffix(path, ".json"))
        return error_set(err,
                         "%s: JSON dataset configs are not supported by sdti; write the same "
                         "keys as a .toml file",
                         path);
    if (!file_exists(path))
        return error_set(err, "--dataset_config %s: no such file", path);
    if (file_is_dir(path))
        return error_set(err, "--dataset_config %s: a folder; give the .toml file (or the "
                              "folder as --train_data_dir)",
                         path);
    if (!path_has_suffix(path, ".toml"))
        return error_set(err, "%s: a dataset config must be a .toml file (as in kohya)", path);
    char *text = NULL;
    size_t size = 0;
    if (file_read_all(path, &text, &size, err) != 0)
        return -1;
    int rc = dataset_config_parse(path, text, size, args, out, err);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Folders */

bool dataset_parse_folder_name(const char *name, int *repeats, const char **class_tokens) {
    /* Python's int(tokens[0]): optional sign and surrounding whitespace, digits with single
     * underscores between them cannot occur (the name was split on "_"). */
    const char *us = strchr(name, '_');
    size_t n = us ? (size_t)(us - name) : strlen(name);
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, name, n);
    buf[n] = '\0';
    char *p = buf, *end;
    while (*p == ' ' || *p == '\t')
        p++;
    long v = strtol(p, &end, 10);
    if (end == p)
        return false;
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end)
        return false;
    *repeats = v > 1000000000 ? 1000000000 : v < -1000000000 ? -1000000000 : (int)v;
    *class_tokens = us ? us + 1 : "";
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sub-folders of `base`, sorted (kohya takes Path.iterdir()'s order, which is the file
 * system's; sorting makes runs reproducible). */
static int add_folder_subsets(const char *base, bool is_reg, const DatasetArgs *a, DatasetConfig *d,
                              Error *err) {
    DIR *dir = opendir(base);
    if (!dir) {
        if (!file_is_dir(base))
            return error_set(err, "%s: not a folder (--%s)", base,
                             is_reg ? "reg_data_dir" : "train_data_dir");
        return error_set(err, "%s: cannot list the folder", base);
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *ent;
    int rc = 0;
    while ((ent = readdir(dir))) {
        if (ent->d_name[0] == '.' && (!ent->d_name[1] || !strcmp(ent->d_name, "..")))
            continue;
        char *full = path_join(base, ent->d_name);
        bool is_dir = full && file_is_dir(full);
        free(full);
        if (!is_dir)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            char **q = realloc(names, cap * sizeof *q);
            if (!q) {
                rc = error_set(err, "out of memory");
                break;
            }
            names = q;
        }
        if (!(names[count] = strdup(ent->d_name))) {
            rc = error_set(err, "out of memory");
            break;
        }
        count++;
    }
    closedir(dir);
    if (rc == 0 && count > 0)
        qsort(names, count, sizeof *names, cmp_str);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        int repeats;
        const char *cls;
        if (!dataset_parse_folder_name(names[i], &repeats, &cls)) {
            log_warning("ignoring folder without a repeat count (name it <repeats>_<class>): "
                        "%s/%s",
                        base, names[i]);
            continue;
        }
        if (repeats < 1)
            continue;
        if (add_subset(d, err) != 0) {
            rc = -1;
            break;
        }
        SubsetConfig *s = &d->subsets[d->subset_count - 1];
        snprintf(s->where, sizeof s->where, "%s/%s", path_basename(base), names[i]);
        Chain none = {{0}, 0};
        DatasetArgs sa = *a;
        sa.num_repeats = repeats;
        if ((rc = resolve_subset(&none, &sa, s, err)) != 0)
            break;
        bool oom = false;
        s->image_dir = path_join(base, names[i]);
        s->class_tokens = dup_or_null(cls, &oom);
        s->is_reg = is_reg;
        if (!s->image_dir || oom)
            rc = error_set(err, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

int dataset_config_from_args(const DatasetArgs *a, DatasetGroupConfig *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (!a->train_data_dir)
        return error_set(err, "no training images: pass --dataset_config FILE.toml or "
                              "--train_data_dir DIR");
    if (add_dataset(out, err) != 0)
        return -1;
    DatasetConfig *d = &out->datasets[0];
    Chain none = {{0}, 0};
    int rc = resolve_dataset(&none, a, d, "command line", err);
    if (rc == 0 && !a->in_json) {
        d->is_dreambooth = true;
        rc = add_folder_subsets(a->train_data_dir, false, a, d, err);
        if (rc == 0 && a->reg_data_dir)
            rc = add_folder_subsets(a->reg_data_dir, true, a, d, err);
        if (rc == 0 && d->subset_count == 0)
            rc = error_set(err,
                           "%s: no sub-folder named <repeats>_<class tokens> (e.g. 10_mychar) "
                           "holds the images; kohya's DreamBooth layout needs one",
                           a->train_data_dir);
    } else if (rc == 0) {
        d->is_dreambooth = false;
        if ((rc = add_subset(d, err)) == 0) {
            SubsetConfig *s = &d->subsets[0];
            snprintf(s->where, sizeof s->where, "--in_json %s", path_basename(a->in_json));
            rc = resolve_subset(&none, a, s, err);
            bool oom = false;
            if (rc == 0) {
                s->image_dir = dup_or_null(a->train_data_dir, &oom);
                s->metadata_file = dup_or_null(a->in_json, &oom);
                if (oom)
                    rc = error_set(err, "out of memory");
            }
        }
    }
    if (rc != 0)
        dataset_config_free(out);
    return rc;
}
