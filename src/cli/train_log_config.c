/* --log_config's values from the option table. See train_log_config.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli/train_log_config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate_run.h"

static const char *const hidden[] = {"wandb_api_key",
                                     "huggingface_token",
                                     "pretrained_model_name_or_path",
                                     "vae",
                                     "tokenizer_cache_dir",
                                     "train_data_dir",
                                     "conditioning_data_dir",
                                     "reg_data_dir",
                                     "output_dir",
                                     "logging_dir",
                                     NULL};

static bool is_hidden(const char *name) {
    for (int i = 0; hidden[i]; i++)
        if (strcmp(hidden[i], name) == 0)
            return true;
    return false;
}

static const void *field(const TrainOptions *o, size_t offset) {
    return (const char *)o + offset;
}

/* Keeps s (malloc'd) for the config's lifetime; NULL when out of memory. */
static const char *own(TrainLogConfig *c, char *s) {
    if (!s)
        return NULL;
    char **grown = realloc(c->owned, sizeof *grown * (size_t)(c->owned_count + 1));
    if (!grown) {
        free(s);
        return NULL;
    }
    c->owned = grown;
    c->owned[c->owned_count++] = s;
    return s;
}

/* Python's repr of a str: single quotes unless it holds ' and no ", backslash escapes for the
 * quote, backslash, \t \n \r and other control characters (\xNN). Text above ASCII is kept
 * (printable in Python's sense for the usual characters). */
static void append_py_repr(char **buf, size_t *len, size_t *cap, const char *s) {
    char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    size_t need = *len + 4 * strlen(s) + 3;
    if (need > *cap) {
        char *grown = realloc(*buf, need * 2);
        if (!grown)
            return;
        *buf = grown;
        *cap = need * 2;
    }
    char *o = *buf + *len;
    *o++ = quote;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == (unsigned char)quote || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            *o++ = '\\';
            *o++ = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += sprintf(o, "\\x%02x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = quote;
    *o = '\0';
    *len = (size_t)(o - *buf);
}

/* str(list) of strings: "['a', 'b']" */
static char *py_list_str(const StringList *l) {
    size_t len = 1, cap = 64;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '[';
    for (int i = 0; i < l->count; i++) {
        if (i) {
            if (len + 3 > cap) {
                char *grown = realloc(buf, cap * 2);
                if (!grown) {
                    free(buf);
                    return NULL;
                }
                buf = grown;
                cap *= 2;
            }
            buf[len++] = ',';
            buf[len++] = ' ';
        }
        append_py_repr(&buf, &len, &cap, l->items[i]);
    }
    char *out = realloc(buf, len + 2);
    if (!out) {
        free(buf);
        return NULL;
    }
    out[len] = ']';
    out[len + 1] = '\0';
    return out;
}

static char *pair_str(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 5;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "(%s, %s)", a, b);
    return s;
}

/* str(pathlib.PurePosixPath(path)): repeated and trailing slashes and "." parts dropped. */
static char *py_path_str(const char *path) {
    size_t n = strlen(path);
    char *s = malloc(n + 2);
    if (!s)
        return NULL;
    size_t o = 0;
    if (path[0] == '/')
        s[o++] = '/';
    for (const char *p = path; *p;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len && !(len == 1 && p[0] == '.')) {
            if (o && s[o - 1] != '/')
                s[o++] = '/';
            memcpy(s + o, p, len);
            o += len;
        }
        p += len;
    }
    if (o == 0)
        s[o++] = '.';
    s[o] = '\0';
    return s;
}

/* kohya's int_or_float (lr_warmup_steps, lr_decay_steps): "N%" is N / 100, else the number;
 * the default is the int 0. A number either way. */
static double int_or_float(const char *text) {
    if (!text)
        return 0;
    size_t n = strlen(text);
    double v = strtod(text, NULL);
    return n && text[n - 1] == '%' ? v / 100.0 : v;
}

/* os.path.splitext(path)[0] */
static char *strip_extension(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    while (*base == '.')
        base++; /* leading dots of the name are not an extension */
    const char *dot = strrchr(base, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, path, n);
        s[n] = '\0';
    }
    return s;
}

int train_log_config_build(const TrainOptions *o, TrainLogConfig *c, Error *err) {
    memset(c, 0, sizeof *c);
    c->items = calloc((size_t)train_option_count, sizeof *c->items);
    if (!c->items)
        return error_set(err, "out of memory");
    for (int i = 0; i < train_option_count; i++) {
        const TrainOptionDef *d = &train_option_defs[i];
        if (d->status == TRAIN_OPT_SDTI || is_hidden(d->name))
            continue;
        bool has = d->has_offset == TRAIN_OPTION_NO_HAS || *(const bool *)field(o, d->has_offset);
        TbHParam p = {.name = d->name, .kind = TB_HPARAM_NUMBER};
        const char *text = NULL;
        bool none = false;
        switch (d->type) {
        case OPT_FLAG:
            p.number = *(const bool *)field(o, d->offset);
            if (strcmp(d->name, "cache_latents") == 0 && o->cache_latents_to_disk)
                p.number = 1;
            break;
        case OPT_INT:
            p.number = (double)*(const long *)field(o, d->offset);
            none = !has;
            if ((strcmp(d->name, "sample_every_n_epochs") == 0 ||
                 strcmp(d->name, "sample_every_n_steps") == 0) &&
                p.number <= 0)
                none = true; /* verify_training_args: disabled */
            break;
        case OPT_FLOAT:
            p.number = *(const double *)field(o, d->offset);
            none = !has;
            break;
        case OPT_STRING: {
            text = *(const char *const *)field(o, d->offset);
            if (strcmp(d->name, "lr_warmup_steps") == 0 || strcmp(d->name, "lr_decay_steps") == 0) {
                p.number = int_or_float(text); /* a number in kohya's args */
                text = NULL;
                break;
            }
            if (strcmp(d->name, "output_name") == 0 && !text)
                text = o->token_string;
            if (strcmp(d->name, "caption_extension") == 0 && o->caption_extention)
                text = o->caption_extention;
            if (strcmp(d->name, "caption_extention") == 0)
                text = NULL; /* prepare_dataset_args moves it to caption_extension */
            char *made = NULL;
            bool make = text != NULL;
            if (make && strcmp(d->name, "resolution") == 0) {
                char w[32], h[32];
                snprintf(w, sizeof w, "%d", o->resolution_width);
                snprintf(h, sizeof h, "%d", o->resolution_height);
                made = pair_str(w, h);
            } else if (make && strcmp(d->name, "face_crop_aug_range") == 0) {
                char lo[40], hi[40];
                generate_format_py_float(o->face_crop_lo, lo, sizeof lo);
                generate_format_py_float(o->face_crop_hi, hi, sizeof hi);
                made = pair_str(lo, hi);
            } else if (make && strcmp(d->name, "config_file") == 0) {
                made = strip_extension(text);
            } else if (make && strcmp(d->name, "dataset_config") == 0) {
                made = py_path_str(text); /* type=Path */
            } else {
                make = false;
            }
            if (make && !(text = own(c, made)))
                goto oom;
            none = !text;
            break;
        }
        case OPT_LIST: {
            const StringList *l = field(o, d->offset);
            none = l->count == 0 && !l->items;
            if (!none && !(text = own(c, py_list_str(l))))
                goto oom;
            break;
        }
        }
        if (none)
            continue;
        if (text) {
            p.kind = TB_HPARAM_STRING;
            p.string = text;
        }
        c->items[c->count++] = p;
    }
    return 0;
oom:
    train_log_config_free(c);
    return error_set(err, "out of memory");
}

void train_log_config_free(TrainLogConfig *c) {
    for (int i = 0; i < c->owned_count; i++)
        free(c->owned[i]);
    free(c->owned);
    free(c->items);
    memset(c, 0, sizeof *c);
}
