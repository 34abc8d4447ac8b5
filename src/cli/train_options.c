/* `sdti train` option parsing: defaults from the table, the command line through the shared
 * option parser, and kohya's --config_file merge. Validation is in train_options_check.c. */
#define _POSIX_C_SOURCE 200809L
#include "cli/train_options.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

const TrainOptionDef *train_option_find(const char *name) {
    for (int i = 0; i < train_option_count; i++)
        if (strcmp(train_option_defs[i].name, name) == 0)
            return &train_option_defs[i];
    return NULL;
}

static void *field(TrainOptions *o, const TrainOptionDef *d) {
    return (char *)o + d->offset;
}

static bool *has_field(TrainOptions *o, const TrainOptionDef *d) {
    return d->has_offset == TRAIN_OPTION_NO_HAS ? NULL : (bool *)((char *)o + d->has_offset);
}

void train_options_init(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < train_option_count; i++) {
        const TrainOptionDef *d = &train_option_defs[i];
        const char *t = d->default_text;
        switch (d->type) {
        case OPT_INT:
            *(long *)field(o, d) = t ? strtol(t, NULL, 10) : 0;
            break;
        case OPT_FLOAT:
            *(double *)field(o, d) = t ? strtod(t, NULL) : 0.0;
            break;
        case OPT_STRING:
            *(const char **)field(o, d) = t;
            break;
        default: /* flags false, lists empty */
            break;
        }
    }
}

void train_options_free(TrainOptions *o) {
    for (int i = 0; i < train_option_count; i++)
        if (train_option_defs[i].type == OPT_LIST)
            string_list_free(field(o, &train_option_defs[i]));
    toml_free(o->config);
    o->config = NULL;
}

static OptionSpec *make_specs(TrainOptions *o, Error *err) {
    OptionSpec *specs = calloc((size_t)train_option_count, sizeof *specs);
    if (!specs) {
        error_set(err, "out of memory");
        return NULL;
    }
    for (int i = 0; i < train_option_count; i++) {
        const TrainOptionDef *d = &train_option_defs[i];
        specs[i] = (OptionSpec){d->name, d->type, field(o, d), d->help, d->choices, false};
    }
    return specs;
}

static CommandSpec train_command(OptionSpec *specs) {
    return (CommandSpec){
        "train",
        "sdti train [options]",
        "Textual inversion training with the options of kohya-ss sd-scripts' "
        "train_textual_inversion.py (same names and defaults; --opt=value or --opt value; "
        "--config_file reads them from a .toml). See docs/options.md.",
        specs,
        train_option_count,
        0,
        0};
}

void train_options_print_help(void) {
    TrainOptions o;
    Error err = {0};
    train_options_init(&o);
    OptionSpec *specs = make_specs(&o, &err);
    if (!specs)
        return;
    CommandSpec cmd = train_command(specs);
    options_print_help(&cmd);
    free(specs);
}

/* --- --config_file ----------------------------------------------------------------------- */

static int set_from_toml(TrainOptions *o, int index, const TomlValue *v, Error *err) {
    const TrainOptionDef *d = &train_option_defs[index];
    bool is_warmup = strcmp(d->name, "lr_warmup_steps") == 0;
    bool is_decay = strcmp(d->name, "lr_decay_steps") == 0;
    if ((is_warmup || is_decay) && (v->kind == TOML_INTEGER || v->kind == TOML_FLOAT)) {
        /* kohya keeps the file's type: a float is a ratio of the total steps, an int a count */
        StepsOrRatio s = {v->kind == TOML_FLOAT,
                          v->kind == TOML_FLOAT ? v->number : (double)v->integer};
        *(is_warmup ? &o->file_warmup : &o->file_decay) = s;
        *(is_warmup ? &o->file_warmup_set : &o->file_decay_set) = true;
        *(const char **)field(o, d) = NULL;
        return 0;
    }
    switch (d->type) {
    case OPT_FLAG:
        if (v->kind != TOML_BOOL)
            return toml_value_error(v, err, "--%s is a flag: expected true or false, found %s",
                                    d->name, toml_kind_name(v->kind));
        *(bool *)field(o, d) = v->boolean;
        return 0;
    case OPT_INT:
        if (v->kind != TOML_INTEGER)
            return toml_value_error(v, err, "--%s expects an integer, found %s", d->name,
                                    toml_kind_name(v->kind));
        *(long *)field(o, d) = (long)v->integer;
        return 0;
    case OPT_FLOAT:
        if (v->kind == TOML_INTEGER)
            *(double *)field(o, d) = (double)v->integer;
        else if (v->kind == TOML_FLOAT && isfinite(v->number))
            *(double *)field(o, d) = v->number;
        else
            return toml_value_error(v, err, "--%s expects a number, found %s", d->name,
                                    toml_kind_name(v->kind));
        return 0;
    case OPT_STRING:
        if (v->kind != TOML_STRING)
            return toml_value_error(v, err, "--%s expects a string, found %s", d->name,
                                    toml_kind_name(v->kind));
        if (d->choices) {
            bool ok = false;
            for (const char *const *c = d->choices; *c; c++)
                ok = ok || strcmp(*c, v->str) == 0;
            if (!ok)
                return toml_value_error(v, err,
                                        "--%s: '%s' is not an allowed value (see sdti "
                                        "train --help)",
                                        d->name, v->str);
        }
        *(const char **)field(o, d) = v->str;
        return 0;
    case OPT_LIST: {
        if (v->kind != TOML_ARRAY)
            return toml_value_error(v, err, "--%s expects an array of strings, found %s", d->name,
                                    toml_kind_name(v->kind));
        StringList *list = field(o, d);
        string_list_free(list);
        if (v->item_count == 0)
            return 0;
        list->items = calloc(v->item_count, sizeof *list->items);
        if (!list->items)
            return error_set(err, "out of memory");
        for (size_t k = 0; k < v->item_count; k++) {
            if (v->items[k]->kind != TOML_STRING)
                return toml_value_error(v->items[k], err, "--%s expects strings, found %s", d->name,
                                        toml_kind_name(v->items[k]->kind));
            list->items[list->count++] = v->items[k]->str;
        }
        return 0;
    }
    }
    return 0;
}

static int apply_entry(TrainOptions *o, const TomlEntry *e, Error *err) {
    const TrainOptionDef *d = train_option_find(e->key);
    if (!d) {
        char path[256];
        /* kohya puts unknown keys into its namespace, where nothing reads them */
        log_warning("%s:%d:%d: '%s' is not an option of sdti train (kohya ignores it too)",
                    e->value->source ? e->value->source : "config", e->line, e->column,
                    toml_value_path(e->value, path, sizeof path));
        return 0;
    }
    int index = (int)(d - train_option_defs);
    if (o->from_cli[index])
        return 0; /* the command line wins */
    if (set_from_toml(o, index, e->value, err) != 0)
        return -1;
    o->given[index] = true;
    bool *has = has_field(o, d);
    if (has)
        *has = true;
    return 0;
}

static int read_config_file(TrainOptions *o, Error *err) {
    const char *name = o->config_file;
    size_t len = strlen(name);
    bool has_ext = len >= 5 && strcmp(name + len - 5, ".toml") == 0;
    if ((size_t)snprintf(o->config_path, sizeof o->config_path, "%s%s", name,
                         has_ext ? "" : ".toml") >= sizeof o->config_path)
        return error_set(err, "--config_file: path too long");
    if (o->output_config)
        return 0; /* kohya writes that file instead of reading it */
    if (toml_parse_file(o->config_path, &o->config, err) != 0)
        return error_prefix(err, "--config_file: ");
    const TomlValue *root = o->config;
    for (size_t i = 0; i < root->entry_count; i++) {
        const TomlEntry *e = &root->entries[i];
        if (e->value->kind == TOML_TABLE) {
            /* kohya flattens one level of sections: [section] key = value */
            for (size_t k = 0; k < e->value->entry_count; k++)
                if (apply_entry(o, &e->value->entries[k], err) != 0)
                    return -1;
        } else if (apply_entry(o, e, err) != 0) {
            return -1;
        }
    }
    return 0;
}

int train_options_parse(TrainOptions *o, int argc, char **argv, bool *wants_help, Error *err) {
    if (train_option_count > TRAIN_OPTION_MAX)
        return error_set(err, "internal: raise TRAIN_OPTION_MAX to %d", train_option_count);
    OptionSpec *specs = make_specs(o, err);
    if (!specs)
        return -1;
    CommandSpec cmd = train_command(specs);
    int npos = 0;
    int rc = options_parse(&cmd, argc, argv, NULL, &npos, wants_help, err);
    if (rc == 0)
        for (int i = 0; i < train_option_count; i++) {
            o->from_cli[i] = o->given[i] = specs[i].seen;
            bool *has = has_field(o, &train_option_defs[i]);
            if (has && specs[i].seen)
                *has = true;
        }
    free(specs);
    if (rc != 0 || *wants_help)
        return rc;
    if (o->config_file && read_config_file(o, err) != 0)
        return -1;
    return 0;
}

/* --- --output_config ----------------------------------------------------------------------- */

static void write_toml_string(FILE *fp, const char *s) {
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

int train_options_write_config(const TrainOptions *o, Error *err) {
    if (!o->config_file)
        return error_set(err, "--output_config needs --config_file (the file to write)");
    FILE *fp = fopen(o->config_path, "wx");
    if (!fp)
        return error_set(err,
                         "--output_config: cannot create %s: %s (kohya refuses to overwrite "
                         "an existing file too)",
                         o->config_path, strerror(errno));
    for (int i = 0; i < train_option_count; i++) {
        const TrainOptionDef *d = &train_option_defs[i];
        if (strcmp(d->name, "config_file") == 0 || strcmp(d->name, "output_config") == 0 ||
            strcmp(d->name, "wandb_api_key") == 0 || !train_option_differs(o, d))
            continue;
        const void *v = (const char *)o + d->offset;
        fprintf(fp, "%s = ", d->name);
        switch (d->type) {
        case OPT_FLAG:
            fputs(*(const bool *)v ? "true" : "false", fp);
            break;
        case OPT_INT:
            fprintf(fp, "%ld", *(const long *)v);
            break;
        case OPT_FLOAT: {
            char buf[40];
            snprintf(buf, sizeof buf, "%.17g", *(const double *)v);
            fprintf(fp, "%s%s", buf, strpbrk(buf, ".e") ? "" : ".0");
            break;
        }
        case OPT_STRING:
            write_toml_string(fp, *(const char *const *)v);
            break;
        case OPT_LIST: {
            const StringList *l = v;
            fputc('[', fp);
            for (int k = 0; k < l->count; k++) {
                if (k)
                    fputs(", ", fp);
                write_toml_string(fp, l->items[k]);
            }
            fputc(']', fp);
            break;
        }
        }
        fputc('\n', fp);
    }
    if (fclose(fp) != 0)
        return error_set(err, "--output_config: writing %s failed", o->config_path);
    return 0;
}
