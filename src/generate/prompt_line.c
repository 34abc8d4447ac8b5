/* See prompt_line.h. */
#define _POSIX_C_SOURCE 200809L
#include "generate/prompt_line.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"

/* Python's str.strip() for the ASCII whitespace a prompt line can hold. */
static char *strip_copy(const char *s, size_t n) {
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* re.match(r"<key> ", part, re.I): the key then one space at the start. Returns the text after
 * the space, or NULL. */
static const char *match_key(const char *part, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)part[i]) != key[i])
            return NULL;
    return part[n] == ' ' ? part + n + 1 : NULL;
}

/* The leading run of characters from `set` (kohya's [\d]+, [\d\.]+, [\d,]+ groups), copied.
 * NULL when the run is empty. */
static char *leading_run(const char *s, const char *set) {
    size_t n = 0;
    while (s[n] && strchr(set, s[n]))
        n++;
    if (n == 0)
        return NULL;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

static int parse_long(const char *digits, const char *where, const char *part, long *out,
                      Error *err) {
    errno = 0;
    char *end = NULL;
    long v = strtol(digits, &end, 10);
    if (errno || *end)
        return error_set(err, "%s: prompt option '--%s': '%s' is not an integer", where, part,
                         digits);
    *out = v;
    return 0;
}

static int parse_double(const char *text, const char *where, const char *part, double *out,
                        Error *err) {
    errno = 0;
    char *end = NULL;
    double v = strtod(text, &end);
    if (errno || *end || !isfinite(v))
        return error_set(err, "%s: prompt option '--%s': '%s' is not a number", where, part, text);
    *out = v;
    return 0;
}

static int parse_seeds(const char *list, const char *where, const char *part, PromptLine *p,
                       Error *err) {
    int count = 1;
    for (const char *c = list; *c; c++)
        count += *c == ',';
    p->seeds = calloc((size_t)count, sizeof *p->seeds);
    if (!p->seeds)
        return error_set(err, "out of memory");
    const char *s = list;
    for (int i = 0; i < count; i++) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char buf[32];
        if (n == 0 || n >= sizeof buf)
            return error_set(err,
                             "%s: prompt option '--%s': seeds are integers separated by "
                             "commas",
                             where, part);
        memcpy(buf, s, n);
        buf[n] = '\0';
        errno = 0;
        char *end = NULL;
        long long v = strtoll(buf, &end, 10);
        if (errno || *end)
            return error_set(err, "%s: prompt option '--%s': seed '%s' is out of range", where,
                             part, buf);
        p->seeds[i] = (int64_t)v;
        s = comma ? comma + 1 : s + n;
    }
    p->seed_count = count;
    return 0;
}

static const char *const refused_keys[] = {"am",  "dsd1", "dst1", "dsd2", "dst2", "dsr",
                                           "glt", "glr",  "gle",  "gls",  "glsn", "glus"};

/* One " --" part. */
static int parse_part(const char *part, const char *where, PromptLine *p, Error *err) {
    const char *v;
    char *run = NULL;
    int rc = 0;
    long n;
    if ((v = match_key(part, "w")) && (run = leading_run(v, "0123456789"))) {
        rc = parse_long(run, where, part, &n, err);
        p->width = n;
        p->has_width = true;
    } else if ((v = match_key(part, "h")) && (run = leading_run(v, "0123456789"))) {
        rc = parse_long(run, where, part, &n, err);
        p->height = n;
        p->has_height = true;
    } else if ((v = match_key(part, "s")) && (run = leading_run(v, "0123456789"))) {
        rc = parse_long(run, where, part, &n, err);
        p->steps = n < 1 ? 1 : n > 1000 ? 1000 : n;
        p->has_steps = true;
    } else if ((v = match_key(part, "d")) && (run = leading_run(v, "0123456789,"))) {
        free(p->seeds);
        p->seeds = NULL;
        rc = parse_seeds(run, where, part, p, err);
    } else if ((v = match_key(part, "l")) && (run = leading_run(v, "0123456789."))) {
        rc = parse_double(run, where, part, &p->scale, err);
        p->has_scale = true;
    } else if ((v = match_key(part, "nl")) && strncasecmp(v, "none", 4) == 0) {
        p->negative_scale_set = 2;
    } else if ((v = match_key(part, "nl")) && (run = leading_run(v, "0123456789."))) {
        rc = parse_double(run, where, part, &p->negative_scale, err);
        p->negative_scale_set = 1;
    } else if ((v = match_key(part, "t")) && (run = leading_run(v, "0123456789."))) {
        rc = parse_double(run, where, part, &p->strength, err);
        p->has_strength = true;
    } else if ((v = match_key(part, "n")) && *v) {
        free(p->negative_prompt);
        p->negative_prompt = strdup(v);
        rc = p->negative_prompt ? 0 : error_set(err, "out of memory");
    } else if ((v = match_key(part, "c")) && *v) {
        free(p->clip_prompt);
        p->clip_prompt = strdup(v);
        rc = p->clip_prompt ? 0 : error_set(err, "out of memory");
    } else {
        for (size_t i = 0; i < sizeof refused_keys / sizeof refused_keys[0]; i++)
            if (match_key(part, refused_keys[i]))
                return error_set(err,
                                 "%s: prompt option '--%s' is not supported yet by sdti "
                                 "generate (networks, Deep Shrink and Gradual Latent are not "
                                 "done); remove it",
                                 where, part);
        log_warning("%s: prompt option '--%s' not understood; ignored (as kohya ignores it)", where,
                    part);
    }
    free(run);
    return rc;
}

int prompt_line_parse(const char *raw, const char *where, PromptLine *out, Error *err) {
    memset(out, 0, sizeof *out);
    char *line = strip_copy(raw, strlen(raw));
    if (!line)
        return error_set(err, "out of memory");
    int rc = 0;
    char *part = line;
    bool first = true;
    while (rc == 0) {
        char *next = strstr(part, " --");
        if (next)
            *next = '\0';
        if (first) {
            out->prompt = strdup(part);
            if (!out->prompt)
                rc = error_set(err, "out of memory");
            first = false;
        } else {
            rc = parse_part(part, where, out, err);
        }
        if (!next)
            break;
        part = next + 3;
    }
    free(line);
    if (rc == 0 && strstr(out->prompt, " AND "))
        rc = error_set(err,
                       "%s: ' AND ' (kohya's regional prompts) needs networks, which sdti "
                       "generate does not support yet; write 'and' in lower case if you meant "
                       "the word",
                       where);
    if (rc != 0)
        prompt_line_free(out);
    return rc;
}

void prompt_line_free(PromptLine *p) {
    free(p->prompt);
    free(p->negative_prompt);
    free(p->clip_prompt);
    free(p->seeds);
    memset(p, 0, sizeof *p);
}
