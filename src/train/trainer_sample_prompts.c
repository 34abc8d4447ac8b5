/* --sample_prompts files as kohya reads them (train_util.sample_images_common and
 * line_to_prompt_dict). See trainer_sample.h. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "formats/toml.h"
#include "train/trainer_sample.h"

static void prompt_defaults(SamplePrompt *p) {
    memset(p, 0, sizeof *p);
    p->width = 512; /* kohya's prompt_dict.get defaults */
    p->height = 512;
    p->steps = 30;
    p->scale = 7.5;
}

static char *dup_range(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

void sample_prompts_free(SamplePromptList *list) {
    for (int i = 0; i < list->count; i++) {
        free(list->items[i].prompt);
        free(list->items[i].negative_prompt);
    }
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int list_push(SamplePromptList *list, const SamplePrompt *p, Error *err) {
    SamplePrompt *items = realloc(list->items, sizeof *items * (size_t)(list->count + 1));
    if (!items)
        return error_set(err, "out of memory");
    list->items = items;
    list->items[list->count++] = *p;
    return 0;
}

/* Python's str.strip() for the ASCII whitespace and the separators it also strips. */
static bool py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int check_values(const SamplePrompt *p, const char *where, Error *err) {
    if (p->steps < 1 || p->steps > 1000)
        return error_set(err, "%s: %d sample steps; give 1 to 1000", where, p->steps);
    if (p->width < 1 || p->height < 1 || p->width > 16384 || p->height > 16384)
        return error_set(err, "%s: size %dx%d; give a width and height from 64 to 16384", where,
                         p->width, p->height);
    return 0;
}

/* sampler_kind_from_name, whose error quotes the name: a name with control characters (a
 * .json or .toml string can hold a newline) is quoted with '?' for them, so that the message
 * stays one line; no sampler has such a name, so the answer is the same. */
static int sampler_lookup(const char *name, SamplerKind *kind, Error *err) {
    char shown[256];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof shown; n++)
        shown[n] = (unsigned char)name[n] < 0x20 || name[n] == 0x7f ? '?' : name[n];
    shown[n] = '\0';
    if (strcmp(shown, name) == 0)
        return sampler_kind_from_name(name, kind, err);
    if (sampler_kind_from_name(shown, kind, err) == 0) /* cannot happen: no name has a '?' */
        return error_set(err, "unknown sampler '%s'", shown);
    return -1;
}

static int sampler_of(const char *name, const char *where, SamplePrompt *p, Error *err) {
    if (sampler_lookup(name, &p->sampler, err) != 0)
        return error_prefix(err, "%s: ", where);
    p->has_sampler = true;
    return 0;
}

/* re.match(r"<key> (\d+)", part, re.IGNORECASE): *digits gets the number's text. */
static bool match_option(const char *part, const char *key, const char **value) {
    size_t n = strlen(key);
    if (strncasecmp(part, key, n) != 0 || part[n] != ' ')
        return false;
    *value = part + n + 1;
    return true;
}

static int parse_int(const char *v, long long max, const char *opt, const char *where,
                     long long *out, Error *err) {
    size_t n = 0;
    while (isdigit((unsigned char)v[n]))
        n++;
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    if (errno == ERANGE || x > max)
        return error_set(err, "%s: --%s %.*s is too large", where, opt, (int)n, v);
    *out = x;
    return 0;
}

static bool starts_with_digit(const char *v) {
    return isdigit((unsigned char)v[0]);
}

/* line_to_prompt_dict: split on " --"; every part, the prompt itself included (kohya loops
 * over all of them), is matched against the options in kohya's order. */
static int parse_line(const char *line, const char *where, SamplePrompt *p, Error *err) {
    prompt_defaults(p);
    const char *first_end = strstr(line, " --");
    p->prompt = dup_range(line, first_end ? (size_t)(first_end - line) : strlen(line));
    if (!p->prompt)
        return error_set(err, "out of memory");
    const char *part = line;
    for (;;) {
        const char *end = strstr(part, " --");
        size_t len = end ? (size_t)(end - part) : strlen(part);
        char *s = dup_range(part, len);
        if (!s)
            return error_set(err, "out of memory");
        const char *v = NULL;
        long long x = 0;
        int rc = 0;
        if (match_option(s, "w", &v) && starts_with_digit(v)) {
            rc = parse_int(v, INT_MAX, "w", where, &x, err);
            p->width = (int)x;
        } else if (match_option(s, "h", &v) && starts_with_digit(v)) {
            rc = parse_int(v, INT_MAX, "h", where, &x, err);
            p->height = (int)x;
        } else if (match_option(s, "d", &v) && starts_with_digit(v)) {
            rc = parse_int(v, INT64_MAX, "d", where, &x, err);
            p->has_seed = true;
            p->seed = x;
        } else if (match_option(s, "s", &v) && starts_with_digit(v)) {
            rc = parse_int(v, LLONG_MAX, "s", where, &x, err);
            p->steps = x < 1 ? 1 : x > 1000 ? 1000 : (int)x; /* kohya clamps */
        } else if (match_option(s, "l", &v) && (isdigit((unsigned char)*v) || *v == '.')) {
            size_t n = strspn(v, "0123456789.");
            const char *dot = memchr(v, '.', n);
            if (strspn(v, ".") == n || (dot && memchr(dot + 1, '.', n - (size_t)(dot + 1 - v))))
                rc = error_set(err, "%s: --l %.*s is not a number", where, (int)n, v);
            else
                p->scale = strtod(v, NULL);
        } else if (match_option(s, "g", &v) || match_option(s, "ctr", &v) ||
                   match_option(s, "rcfg", &v) || match_option(s, "fs", &v)) {
            log_warning("%s: --%.*s has no effect on Stable Diffusion 1/2 samples (kohya ignores "
                        "it too)",
                        where, (int)(v - s - 1), s);
        } else if (match_option(s, "n", &v) && *v) {
            free(p->negative_prompt);
            p->negative_prompt = strdup(v);
            if (!p->negative_prompt)
                rc = error_set(err, "out of memory");
        } else if (match_option(s, "ss", &v) && *v) {
            rc = sampler_of(v, where, p, err);
        } else if (match_option(s, "cn", &v) && *v) {
            rc = error_set(err, "%s: --cn (a ControlNet image) is not supported by sdti train",
                           where);
        }
        free(s);
        if (rc != 0)
            return -1;
        if (!end)
            break;
        part = end + 3;
    }
    return check_values(p, where, err);
}

static int valid_utf8(const unsigned char *s, size_t n, size_t *bad) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return *bad = i, 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return *bad = i, 0;
        i += len;
    }
    return 1;
}

/* The whole file as UTF-8 text (kohya opens it with encoding="utf-8"). */
static int read_text(const char *path, char **out, size_t *size, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(err, "--sample_prompts %s: cannot open it: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *text = malloc(cap + 1);
    size_t got;
    while (text && (got = fread(text + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(text, cap * 2 + 1);
            if (!bigger) {
                free(text);
                text = NULL;
                break;
            }
            text = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!text)
        return error_set(err, "out of memory");
    text[n] = '\0';
    size_t bad = 0;
    if (!valid_utf8((const unsigned char *)text, n, &bad) || strlen(text) != n) {
        free(text);
        return error_set(err, "--sample_prompts %s: not UTF-8 text (byte %zu)", path, bad);
    }
    *out = text;
    *size = n;
    return 0;
}

static int load_txt(const char *path, SamplePromptList *out, Error *err) {
    char *text = NULL;
    size_t n = 0;
    if (read_text(path, &text, &n, err) != 0)
        return -1;
    /* readlines() in text mode: \n, \r\n and \r end a line */
    int rc = 0, line_no = 0;
    for (char *line = text; rc == 0 && *line;) {
        size_t len = strcspn(line, "\r\n");
        char *next = line + len;
        if (*next == '\r' && next[1] == '\n')
            next += 2;
        else if (*next)
            next++;
        line_no++;
        line[len] = '\0';
        char *a = line, *b = line + len;
        while (a < b && py_space((unsigned char)*a))
            a++;
        while (b > a && py_space((unsigned char)b[-1]))
            b--;
        if (b > a && line[0] != '#') { /* kohya checks the unstripped line's first character */
            *b = '\0';
            char where[4200];
            snprintf(where, sizeof where, "--sample_prompts %s line %d", path, line_no);
            SamplePrompt p;
            rc = parse_line(a, where, &p, err);
            if (rc == 0)
                rc = list_push(out, &p, err);
            if (rc != 0) {
                free(p.prompt);
                free(p.negative_prompt);
            }
        }
        line = next;
    }
    free(text);
    return rc;
}

/* One key of a merged .toml prompt (kohya: dict(**data["prompt"], **subset)). */
static int toml_key(const TomlEntry *e, SamplePrompt *p, Error *err) {
    const TomlValue *v = e->value;
    const char *k = e->key;
    bool is_int = v->kind == TOML_INTEGER, is_str = v->kind == TOML_STRING;
    char **text = strcmp(k, "prompt") == 0            ? &p->prompt
                  : strcmp(k, "negative_prompt") == 0 ? &p->negative_prompt
                                                      : NULL;
    if (text) {
        if (!is_str)
            return toml_value_error(v, err, "expected a string, found %s", toml_kind_name(v->kind));
        free(*text);
        *text = strdup(v->str);
        return *text ? 0 : error_set(err, "out of memory");
    }
    int *field = strcmp(k, "width") == 0          ? &p->width
                 : strcmp(k, "height") == 0       ? &p->height
                 : strcmp(k, "sample_steps") == 0 ? &p->steps
                                                  : NULL;
    if (field || strcmp(k, "seed") == 0) {
        if (!is_int)
            return toml_value_error(v, err, "expected an integer, found %s",
                                    toml_kind_name(v->kind));
        if (!field) {
            p->has_seed = true;
            p->seed = v->integer;
            if (v->integer < 0)
                return toml_value_error(v, err, "a seed must not be negative");
            return 0;
        }
        if (v->integer < INT_MIN || v->integer > INT_MAX)
            return toml_value_error(v, err, "out of range");
        *field = (int)v->integer;
        return 0;
    }
    if (strcmp(k, "scale") == 0) {
        if (!is_int && v->kind != TOML_FLOAT)
            return toml_value_error(v, err, "expected a number, found %s", toml_kind_name(v->kind));
        p->scale = is_int ? (double)v->integer : v->number;
        return 0;
    }
    if (strcmp(k, "sample_sampler") == 0) {
        if (!is_str)
            return toml_value_error(v, err, "expected a string, found %s", toml_kind_name(v->kind));
        if (sampler_lookup(v->str, &p->sampler, err) != 0) {
            char msg[sizeof err->message];
            snprintf(msg, sizeof msg, "%s", err->message);
            return toml_value_error(v, err, "%s", msg);
        }
        p->has_sampler = true;
        return 0;
    }
    if (strcmp(k, "controlnet_image") == 0)
        return toml_value_error(v, err, "a ControlNet image is not supported by sdti train");
    return 0; /* kohya ignores other keys */
}

static int load_toml(const char *path, SamplePromptList *out, Error *err) {
    TomlValue *root = NULL;
    if (toml_parse_file(path, &root, err) != 0)
        return error_prefix(err, "--sample_prompts: ");
    const TomlValue *prompt = NULL, *subsets = NULL;
    bool found = false;
    int rc = toml_get_table(root, "prompt", &prompt, &found, err);
    if (rc == 0 && !found)
        rc = error_set(err,
                       "--sample_prompts %s: no [prompt] table (kohya's format: [prompt] "
                       "with defaults, then [[prompt.subset]] entries with prompt = \"...\")",
                       path);
    if (rc == 0)
        rc = toml_get_array(prompt, "subset", &subsets, &found, err);
    if (rc == 0 && !found)
        rc = error_set(err, "--sample_prompts %s: no [[prompt.subset]] entries", path);
    for (size_t i = 0; rc == 0 && i < subsets->item_count; i++) {
        const TomlValue *sub = subsets->items[i];
        if (sub->kind != TOML_TABLE) {
            rc =
                toml_value_error(sub, err, "expected a table, found %s", toml_kind_name(sub->kind));
            break;
        }
        SamplePrompt p;
        prompt_defaults(&p);
        for (size_t k = 0; rc == 0 && k < prompt->entry_count; k++)
            if (strcmp(prompt->entries[k].key, "subset") != 0)
                rc = toml_key(&prompt->entries[k], &p, err);
        for (size_t k = 0; rc == 0 && k < sub->entry_count; k++) {
            if (toml_table_get(prompt, sub->entries[k].key)) /* kohya: a TypeError */
                rc = toml_value_error(sub->entries[k].value, err,
                                      "also set in [prompt]: give each key in one place");
            else
                rc = toml_key(&sub->entries[k], &p, err);
        }
        char where[4200];
        snprintf(where, sizeof where, "--sample_prompts %s subset %zu", path, i);
        if (rc == 0)
            rc = check_values(&p, where, err);
        if (rc == 0 && !p.prompt)
            p.prompt = strdup(""); /* kohya: prompt_dict.get("prompt", "") */
        if (rc == 0)
            rc = p.prompt ? list_push(out, &p, err) : error_set(err, "out of memory");
        if (rc != 0) {
            free(p.prompt);
            free(p.negative_prompt);
        }
    }
    toml_free(root);
    return rc;
}

/* A JSON number that must be an integer (Python's json gives an int only for integer text;
 * cJSON keeps one double, so an integral value is taken as such). */
static int json_int(const cJSON *v, double lo, double hi, const char *where, const char *key,
                    int64_t *out, Error *err) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return error_set(err, "%s key \"%s\": expected an integer", where, key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return error_set(err, "%s key \"%s\": %.17g is out of range", where, key, v->valuedouble);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int json_text(const cJSON *v, const char *where, const char *key, char **out, Error *err) {
    if (!cJSON_IsString(v))
        return error_set(err, "%s key \"%s\": expected a string", where, key);
    free(*out);
    *out = strdup(v->valuestring);
    return *out ? 0 : error_set(err, "out of memory");
}

/* One key of a .json prompt object, as kohya's sample_image_inference reads the dict with
 * prompt_dict.get: a null seed, negative_prompt or controlnet_image is the key left out;
 * other keys are ignored. */
static int json_key(const cJSON *v, const char *where, SamplePrompt *p, Error *err) {
    const char *k = v->string;
    int64_t x = 0;
    bool null = cJSON_IsNull(v);
    if (strcmp(k, "prompt") == 0)
        return json_text(v, where, k, &p->prompt, err);
    if (strcmp(k, "negative_prompt") == 0) {
        if (null) {
            free(p->negative_prompt);
            p->negative_prompt = NULL;
            return 0;
        }
        return json_text(v, where, k, &p->negative_prompt, err);
    }
    int *field = strcmp(k, "width") == 0          ? &p->width
                 : strcmp(k, "height") == 0       ? &p->height
                 : strcmp(k, "sample_steps") == 0 ? &p->steps
                                                  : NULL;
    if (field) {
        if (json_int(v, INT_MIN, INT_MAX, where, k, &x, err) != 0)
            return -1;
        *field = (int)x;
        return 0;
    }
    if (strcmp(k, "seed") == 0) {
        p->has_seed = !null;
        if (null)
            return 0;
        if (json_int(v, 0, 9007199254740992.0, where, k, &x, err) != 0)
            return -1; /* a seed is >= 0 (torch.manual_seed), and a double holds 2^53 */
        p->seed = x;
        return 0;
    }
    if (strcmp(k, "scale") == 0) {
        if (!cJSON_IsNumber(v))
            return error_set(err, "%s key \"scale\": expected a number", where);
        p->scale = v->valuedouble;
        return 0;
    }
    if (strcmp(k, "sample_sampler") == 0) {
        if (!cJSON_IsString(v))
            return error_set(err, "%s key \"sample_sampler\": expected a string", where);
        return sampler_of(v->valuestring, where, p, err);
    }
    if (strcmp(k, "controlnet_image") == 0 && !null)
        return error_set(err, "%s: a ControlNet image is not supported by sdti train", where);
    return 0;
}

/* The 1-based line and column of byte `at` in text, as Python's json reports them. */
static void text_place(const char *text, size_t at, int *line, int *column) {
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            ++*line;
            *column = 1;
        } else {
            ++*column;
        }
    }
}

/* kohya: prompts = json.load(f), a list whose items are prompt lines (line_to_prompt_dict, no
 * stripping and no '#' comments) or objects with the .toml keys. */
static int load_json(const char *path, SamplePromptList *out, Error *err) {
    char *text = NULL;
    size_t n = 0;
    if (read_text(path, &text, &n, err) != 0)
        return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, true); /* read_text: no NUL inside */
    if (!root) {
        int line, column;
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        text_place(text, at, &line, &column);
        free(text);
        return error_set(err, "--sample_prompts %s:%d:%d: not valid JSON", path, line, column);
    }
    free(text);
    int rc = 0;
    if (!cJSON_IsArray(root))
        rc = error_set(err,
                       "--sample_prompts %s: expected a JSON list of prompts (strings or "
                       "objects with \"prompt\", \"width\", ... keys)",
                       path);
    int index = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (rc != 0)
            break;
        char where[4200];
        snprintf(where, sizeof where, "--sample_prompts %s [%d]", path, index++);
        SamplePrompt p;
        if (cJSON_IsString(item)) {
            rc = parse_line(item->valuestring, where, &p, err);
        } else if (cJSON_IsObject(item)) {
            prompt_defaults(&p);
            const cJSON *v;
            cJSON_ArrayForEach(v, item) {
                if (rc == 0)
                    rc = json_key(v, where, &p, err);
            }
            if (rc == 0)
                rc = check_values(&p, where, err);
            if (rc == 0 && !p.prompt)
                p.prompt = strdup(""); /* kohya: prompt_dict.get("prompt", "") */
            if (rc == 0 && !p.prompt)
                rc = error_set(err, "out of memory");
        } else {
            prompt_defaults(&p);
            rc = error_set(err, "%s: expected a prompt string or an object", where);
        }
        if (rc == 0)
            rc = list_push(out, &p, err);
        if (rc != 0) {
            free(p.prompt);
            free(p.negative_prompt);
        }
    }
    cJSON_Delete(root);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int sample_prompts_load(const char *path, SamplePromptList *out, Error *err) {
    out->items = NULL;
    out->count = 0;
    int rc;
    if (ends_with(path, ".txt"))
        rc = load_txt(path, out, err);
    else if (ends_with(path, ".toml"))
        rc = load_toml(path, out, err);
    else if (ends_with(path, ".json"))
        rc = load_json(path, out, err);
    else
        rc = error_set(err,
                       "--sample_prompts %s: give a .txt, .toml or .json file (kohya tells "
                       "the format by the extension)",
                       path);
    if (rc == 0 && out->count == 0)
        rc = error_set(err, "--sample_prompts %s: no prompts in it", path);
    if (rc != 0)
        sample_prompts_free(out);
    return rc;
}
