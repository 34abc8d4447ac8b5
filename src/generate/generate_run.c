/* See generate_run.h. */
#define _POSIX_C_SOURCE 200809L
#include "generate/generate_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/file_util.h"
#include "base/log.h"
#include "generate/dynamic_prompt.h"
#include "generate/png_output.h"
#include "generate/prompt_line.h"
#include "train/py_random.h"

/* ---- the prompt file -------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (strict, as Python's decoder), 0 if invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t left) {
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
               : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
               : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                              : 0;
    if (n == 0 || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0)))
        return 0; /* overlong, surrogate */
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90)))
        return 0; /* overlong, beyond U+10FFFF */
    return n;
}

/* Python's str.splitlines boundaries: the length of the boundary at s, 0 if none. */
static size_t line_break(const unsigned char *s, size_t left) {
    if (s[0] == '\r')
        return left > 1 && s[1] == '\n' ? 2 : 1;
    if (s[0] == '\n' || s[0] == 0x0B || s[0] == 0x0C || (s[0] >= 0x1C && s[0] <= 0x1E))
        return 1;
    if (left > 1 && s[0] == 0xC2 && s[1] == 0x85)
        return 2;
    if (left > 2 && s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9))
        return 3;
    return 0;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (!(*s == ' ' || (*s >= '\t' && *s <= '\r') || (*s >= 0x1C && *s <= 0x1F)))
            return false;
    return true;
}

int generate_read_prompt_file(const char *path, char ***lines_out, int *count_out, Error *err) {
    *lines_out = NULL;
    *count_out = 0;
    char *data = NULL;
    size_t size = 0;
    if (file_read_all(path, &data, &size, err) != 0)
        return error_prefix(err, "--from_file: ");
    const unsigned char *s = (const unsigned char *)data;
    int line_no = 1;
    for (size_t i = 0; i < size;) {
        size_t n = utf8_sequence(s + i, size - i);
        if (n == 0) {
            unsigned bad = s[i];
            free(data);
            return error_set(err,
                             "--from_file %s: line %d, byte %zu (0x%02x) is not UTF-8: kohya reads "
                             "prompt files as UTF-8; save the file as UTF-8",
                             path, line_no, i, bad);
        }
        if (s[i] == '\n')
            line_no++;
        i += n;
    }
    char **lines = NULL;
    int count = 0, cap = 0, rc = 0;
    for (size_t start = 0, i = 0; rc == 0 && start < size;) {
        size_t br = i < size ? line_break(s + i, size - i) : 0;
        if (i < size && br == 0) {
            i++;
            continue;
        }
        size_t len = i - start;
        char *line = malloc(len + 1);
        if (!line) {
            rc = error_set(err, "out of memory");
            break;
        }
        memcpy(line, data + start, len);
        line[len] = '\0';
        if (blank(line) || line[0] == '#') {
            free(line);
        } else {
            if (count == cap) {
                cap = cap ? 2 * cap : 16;
                char **grown = realloc(lines, (size_t)cap * sizeof *grown);
                if (!grown) {
                    free(line);
                    rc = error_set(err, "out of memory");
                    break;
                }
                lines = grown;
            }
            lines[count++] = line;
        }
        i += br;
        start = i;
        if (br == 0)
            break;
    }
    free(data);
    if (rc != 0) {
        generate_free_lines(lines, count);
        return -1;
    }
    *lines_out = lines;
    *count_out = count;
    return 0;
}

void generate_free_lines(char **lines, int count) {
    for (int i = 0; lines && i < count; i++)
        free(lines[i]);
    free(lines);
}

void generate_format_py_float(double v, char *out, size_t size) {
    if (isnan(v) || isinf(v)) {
        snprintf(out, size, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        return;
    }
    int p = 1;
    char buf[64];
    for (; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    int exponent = atoi(strchr(buf, 'e') + 1);
    if (exponent >= -4 && exponent < 16) {
        int decimals = p - 1 - exponent;
        snprintf(out, size, "%.*f", decimals > 0 ? decimals : 0, v);
        if (!strchr(out, '.'))
            strncat(out, ".0", size - strlen(out) - 1);
        return;
    }
    /* Python: mantissa without trailing zeros, exponent with at least two digits */
    char mant[40];
    snprintf(mant, sizeof mant, "%.*e", p - 1, v);
    *strchr(mant, 'e') = '\0';
    snprintf(out, size, "%se%s%02d", mant, exponent < 0 ? "-" : "+", abs(exponent));
}

/* ---- batches ------------------------------------------------------------------------------ */

typedef struct PendingImage {
    char *prompt, *negative_prompt, *clip_prompt, *raw_prompt;
    int64_t seed;
    long step; /* kohya's global_step */
} PendingImage;

typedef struct BatchExt {
    int width, height, steps;
    double scale;
    bool has_negative_scale;
    double negative_scale;
} BatchExt;

typedef struct RunState {
    GenModel *m;
    const GenerateJob *job;
    PendingImage *pending;
    int n_pending;
    BatchExt ext;
    long images_done, images_total;
    double started;
    int batch_first, batch_count;
} RunState;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(void *user, int call, int total, double seconds) {
    RunState *st = user;
    double eta = seconds * (double)(total - call - 1);
    bool tty = isatty(fileno(stderr));
    char of[32] = ""; /* the image count is unknown in interactive mode */
    if (st->images_total > 0)
        snprintf(of, sizeof of, "/%ld", st->images_total);
    fprintf(stderr, "%simages %ld-%ld%s: step %d/%d  %.2f s/it  ETA %02d:%02d:%02d%s",
            tty ? "\r" : "", st->images_done + 1, st->images_done + st->batch_count, of, call + 1,
            total, seconds, (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60),
            tty && call + 1 < total ? "" : "\n");
    fflush(stderr);
}

static const char *a1111_sampler_name(SamplerKind kind) {
    switch (kind) {
    case SAMPLER_DDIM:
        return "DDIM";
    case SAMPLER_PNDM:
        return "PLMS";
    case SAMPLER_LMS:
        return "LMS";
    case SAMPLER_EULER:
        return "Euler";
    case SAMPLER_EULER_A:
        return "Euler a";
    case SAMPLER_HEUN:
        return "Heun";
    case SAMPLER_DPM_2:
        return "DPM2";
    case SAMPLER_DPM_2_A:
        return "DPM2 a";
    case SAMPLER_DPMSOLVER_PP:
        return "DPM++ 2M";
    default:
        return sampler_kind_name(kind);
    }
}

static char *fmt_alloc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static char *fmt_alloc(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (out) {
        va_start(ap, fmt);
        vsnprintf(out, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return out;
}

static int save_image(RunState *st, const PendingImage *im, int index_in_batch, const char *ts,
                      const uint8_t *rgb, Error *err) {
    const GenerateJob *job = st->job;
    const BatchExt *e = &st->ext;
    char seed[32], steps[32], scale[64], nscale[64], name[128];
    snprintf(seed, sizeof seed, "%lld", (long long)im->seed);
    snprintf(steps, sizeof steps, "%d", e->steps);
    generate_format_py_float(e->scale, scale, sizeof scale);
    generate_format_py_float(e->negative_scale, nscale, sizeof nscale);
    char clip_skip[32] = "";
    if (job->clip_skip > 1)
        snprintf(clip_skip, sizeof clip_skip, ", Clip skip: %d", job->clip_skip);
    char *parameters = fmt_alloc(
        "%s\n%s%s%sSteps: %d, Sampler: %s, CFG scale: %s, Seed: %lld, Size: %dx%d, Model: %s%s",
        im->prompt, im->negative_prompt[0] ? "Negative prompt: " : "", im->negative_prompt,
        im->negative_prompt[0] ? "\n" : "", e->steps, a1111_sampler_name(job->sampler), scale,
        (long long)im->seed, e->width, e->height, job->model_name, clip_skip);
    if (!parameters)
        return error_set(err, "out of memory");
    PngTextEntry text[10];
    int n = 0;
    text[n++] = (PngTextEntry){"prompt", im->prompt};
    text[n++] = (PngTextEntry){"seed", seed};
    text[n++] = (PngTextEntry){"sampler", job->sampler_name};
    text[n++] = (PngTextEntry){"steps", steps};
    text[n++] = (PngTextEntry){"scale", scale};
    text[n++] = (PngTextEntry){"negative-prompt", im->negative_prompt};
    if (e->has_negative_scale)
        text[n++] = (PngTextEntry){"negative-scale", nscale};
    if (im->clip_prompt)
        text[n++] = (PngTextEntry){"clip-prompt", im->clip_prompt};
    text[n++] = (PngTextEntry){"raw-prompt", im->raw_prompt};
    text[n++] = (PngTextEntry){"parameters", parameters};
    if (job->sequential_file_name)
        snprintf(name, sizeof name, "im_%06ld.png", im->step + 1);
    else
        snprintf(name, sizeof name, "im_%s_%03d_%lld.png", ts, index_in_batch, (long long)im->seed);
    char *path = path_join(job->outdir, name);
    int rc = path ? png_output_write(path, rgb, e->width, e->height, text, n, err)
                  : error_set(err, "out of memory");
    if (rc == 0)
        log_info("wrote %s", path);
    free(path);
    free(parameters);
    return rc;
}

static void pending_clear(RunState *st) {
    for (int i = 0; i < st->n_pending; i++) {
        PendingImage *p = &st->pending[i];
        free(p->prompt);
        free(p->negative_prompt);
        free(p->clip_prompt);
        free(p->raw_prompt);
    }
    st->n_pending = 0;
}

static int process_batch(RunState *st, Error *err) {
    int n = st->n_pending;
    if (n == 0)
        return 0;
    const BatchExt *e = &st->ext;
    const GenerateJob *job = st->job;
    GenBatchParams p = {
        e->width,          e->height,    e->steps,       e->scale,           e->has_negative_scale,
        e->negative_scale, job->sampler, job->clip_skip, job->max_multiples, false};
    GenImageSpec *items = calloc((size_t)n, sizeof *items);
    size_t per_rgb = (size_t)e->width * (size_t)e->height * 3;
    uint8_t *rgb = malloc((size_t)n * per_rgb);
    if (!items || !rgb) {
        free(items);
        free(rgb);
        pending_clear(st);
        return error_set(err, "out of memory");
    }
    int rc = 0;
    for (int i = 0; i < n; i++)
        items[i] = (GenImageSpec){st->pending[i].prompt, st->pending[i].negative_prompt,
                                  st->pending[i].seed};
    st->batch_count = n;
    if (rc == 0)
        rc = gen_pipeline_run(st->m, &p, items, n, NULL, rgb, progress, st, err);
    if (rc == 0) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y%m%d%H%M%S", &tm);
        for (int i = 0; rc == 0 && i < n; i++)
            rc = save_image(st, &st->pending[i], i, ts, rgb + (size_t)i * per_rgb, err);
    }
    st->images_done += n;
    free(items);
    free(rgb);
    pending_clear(st);
    return rc;
}

static int pending_add(RunState *st, const PromptLine *pl, const char *raw, int64_t seed, long step,
                       Error *err) {
    PendingImage *p = &st->pending[st->n_pending];
    memset(p, 0, sizeof *p);
    p->prompt = strdup(pl->prompt);
    p->negative_prompt = strdup(pl->negative_prompt ? pl->negative_prompt : "");
    p->clip_prompt = pl->clip_prompt ? strdup(pl->clip_prompt) : NULL;
    p->raw_prompt = strdup(raw);
    p->seed = seed;
    p->step = step;
    st->n_pending++;
    if (!p->prompt || !p->negative_prompt || !p->raw_prompt || (pl->clip_prompt && !p->clip_prompt))
        return error_set(err, "out of memory");
    return 0;
}

static bool ext_equal(const BatchExt *a, const BatchExt *b) {
    return a->width == b->width && a->height == b->height && a->steps == b->steps &&
           a->scale == b->scale && a->has_negative_scale == b->has_negative_scale &&
           (!a->has_negative_scale || a->negative_scale == b->negative_scale);
}

/* Counts each embedding once per prompt line that uses it (prompt or negative prompt). */
static void count_embedding_use(GenModel *m, const PromptLine *pl) {
    if (m->embeddings.count == 0)
        return;
    const char *texts[2] = {pl->prompt, pl->negative_prompt ? pl->negative_prompt : ""};
    int *ids[2] = {NULL, NULL}, n[2] = {0, 0};
    for (int t = 0; t < 2; t++)
        if (tokenizer_encode(m->tok, texts[t], &ids[t], &n[t], NULL) != 0)
            n[t] = 0;
    int *all = malloc((size_t)(n[0] + n[1] + 1) * sizeof *all);
    if (all) {
        if (n[0])
            memcpy(all, ids[0], (size_t)n[0] * sizeof *all);
        if (n[1])
            memcpy(all + n[0], ids[1], (size_t)n[1] * sizeof *all);
        prompt_embeddings_count_use(&m->embeddings, all, n[0] + n[1]);
    }
    free(all);
    free(ids[0]);
    free(ids[1]);
}

/* Where kohya's seeds come from (see generate_run.h). */
typedef struct SeedState {
    int64_t *predefined; /* --seed: drawn up front (NULL without --seed) */
    long n_predefined, next_predefined;
    int64_t iter_seed;
    long global_step;
} SeedState;

/* One prompt line: its variants, its images, batched as kohya batches them. */
static int run_one_prompt(RunState *st, const char *line, int pi, int n_prompts, long iter,
                          SeedState *ss, PyRandom *py, Error *err) {
    const GenerateJob *job = st->job;
    int rc = 0;
    /* kohya: dynamic-prompt variants first (they draw from the same random stream) */
    char **variants = NULL;
    int n_variants = 0;
    rc = dynamic_prompt_expand(line, (int)job->images_per_prompt, py, &variants, &n_variants, err);
    if (rc != 0)
        return -1;
    long images = n_variants == 1 ? job->images_per_prompt : n_variants;
    PromptLine pl = {0};
    bool parsed = false;
    BatchExt ext = {0};
    int next_seed = 0;
    int64_t seed = 0;
    bool have_seed = false;
    for (long k = 0; rc == 0 && k < images; k++) {
        const char *raw = variants[n_variants > 1 ? k : 0];
        if (k == 0 || n_variants > 1) {
            /* kohya re-parses each variant, restarting its --d seeds */
            char where[64];
            snprintf(where, sizeof where, "prompt %d", pi + 1);
            if (parsed)
                prompt_line_free(&pl);
            parsed = false;
            if (prompt_line_parse(raw, where, &pl, err) != 0) {
                rc = -1;
                break;
            }
            parsed = true;
            if (n_prompts > 0)
                log_info("prompt %d/%d: %s", pi + 1, n_prompts, pl.prompt);
            else
                log_info("prompt %d: %s", pi + 1, pl.prompt);
            if (iter == 0)
                count_embedding_use(st->m, &pl);
            ext = (BatchExt){
                pl.has_width ? (int)pl.width : job->width,
                pl.has_height ? (int)pl.height : job->height,
                pl.has_steps ? (int)pl.steps : job->steps,
                pl.has_scale ? pl.scale : job->scale,
                pl.negative_scale_set == 1 ||
                    (pl.negative_scale_set == 0 && job->has_negative_scale),
                pl.negative_scale_set == 1 ? pl.negative_scale : job->negative_scale,
            };
            next_seed = 0;
            have_seed = false;
        }
        if (pl.seeds) {
            if (next_seed < pl.seed_count) {
                seed = pl.seeds[next_seed++];
                have_seed = true;
            }
        } else if (ss->predefined) {
            have_seed = ss->next_predefined < ss->n_predefined;
            if (have_seed)
                seed = ss->predefined[ss->next_predefined++];
            else
                log_info("predefined seeds are exhausted");
        } else if (job->iter_same_seed) {
            seed = ss->iter_seed;
            have_seed = true;
        } else {
            have_seed = false;
        }
        if (!have_seed)
            seed = py_random_randint(py, 0, 0x7FFFFFFF);
        if (st->n_pending > 0 && !ext_equal(&st->ext, &ext))
            rc = process_batch(st, err);
        st->ext = ext;
        if (rc == 0)
            rc = pending_add(st, &pl, raw, seed, ss->global_step, err);
        if (rc == 0 && st->n_pending == job->batch_size)
            rc = process_batch(st, err);
        ss->global_step++;
    }
    if (parsed)
        prompt_line_free(&pl);
    dynamic_prompt_free(variants, n_variants);
    return rc;
}

/* kohya's interactive mode: a prompt from the console ("" at end of input). */
static char *read_console_prompt(bool *eof) {
    *eof = false;
    for (;;) {
        fprintf(stderr, "\nType prompt:\n");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            free(line);
            *eof = true;
            return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        bool utf8 = true;
        for (ssize_t i = 0; utf8 && i < n;) {
            size_t k = utf8_sequence((const unsigned char *)line + i, (size_t)(n - i));
            utf8 = k > 0;
            i += (ssize_t)k;
        }
        /* kohya: valid when the text before the first " --" is not blank */
        char *opts = strstr(line, " --");
        char saved = opts ? *opts : 0;
        if (opts)
            *opts = '\0';
        bool valid = utf8 && !blank(line);
        if (opts)
            *opts = saved;
        if (valid)
            return line;
        if (!utf8)
            log_warning("the prompt is not UTF-8; type it again");
        free(line);
    }
}

static int run_prompts(RunState *st, char **prompts, int n_prompts, PyRandom *py, Error *err) {
    const GenerateJob *job = st->job;
    SeedState ss = {0};
    if (job->has_seed) {
        py_random_seed(py, job->seed);
        ss.n_predefined = job->n_iter * n_prompts * job->images_per_prompt;
        ss.predefined = malloc((size_t)(ss.n_predefined ? ss.n_predefined : 1) * sizeof(int64_t));
        if (!ss.predefined)
            return error_set(err, "out of memory");
        for (long i = 0; i < ss.n_predefined; i++)
            ss.predefined[i] = py_random_randint(py, 0, 0x7FFFFFFF);
        if (ss.n_predefined == 1)
            ss.predefined[0] = job->seed;
    }
    int rc = 0;
    for (long iter = 0; rc == 0 && iter < job->n_iter; iter++) {
        log_info("iteration %ld/%ld", iter + 1, job->n_iter);
        ss.iter_seed = py_random_randint(py, 0, 0x7FFFFFFF);
        if (job->shuffle_prompts && n_prompts > 0)
            py_random_shuffle(py, prompts, (size_t)n_prompts, sizeof *prompts);
        if (job->interactive) {
            for (int pi = 0; rc == 0; pi++) {
                bool eof = false;
                char *line = read_console_prompt(&eof);
                if (eof)
                    break;
                rc = run_one_prompt(st, line, pi, 0, iter, &ss, py, err);
                free(line);
            }
        } else {
            for (int pi = 0; rc == 0 && pi < n_prompts; pi++)
                rc = run_one_prompt(st, prompts[pi], pi, n_prompts, iter, &ss, py, err);
        }
        /* kohya flushes what is left after each iteration */
        if (rc == 0)
            rc = process_batch(st, err);
    }
    pending_clear(st);
    free(ss.predefined);
    return rc;
}

int generate_run(GenModel *m, const GenerateJob *job, Error *err) {
    char **prompts = NULL;
    int n_prompts = 0;
    if (job->from_file) {
        log_info("reading prompts from %s", job->from_file);
        if (generate_read_prompt_file(job->from_file, &prompts, &n_prompts, err) != 0)
            return -1;
        if (n_prompts == 0) {
            generate_free_lines(prompts, n_prompts);
            return error_set(err,
                             "--from_file %s: no prompts (blank lines and lines starting "
                             "with # are skipped)",
                             job->from_file);
        }
    } else if (job->interactive) {
        log_info("interactive mode: type a prompt per line (with kohya's --n, --w, ... options); "
                 "end with Ctrl-D");
    } else {
        prompts = malloc(sizeof *prompts);
        if (!prompts || !(prompts[0] = strdup(job->prompt))) {
            free(prompts);
            return error_set(err, "out of memory");
        }
        n_prompts = 1;
    }
    RunState st = {0};
    st.m = m;
    st.job = job;
    st.images_total = job->n_iter * n_prompts * job->images_per_prompt;
    st.started = now_seconds();
    st.pending = calloc((size_t)job->batch_size, sizeof *st.pending);
    PyRandom py;
    /* Python's unseeded random: any seed will do */
    py_random_seed(&py, (int64_t)time(NULL) ^ (int64_t)getpid() << 16);
    int rc = !st.pending                             ? error_set(err, "out of memory")
             : file_make_dirs(job->outdir, err) != 0 ? error_prefix(err, "--outdir: ")
                                                     : 0;
    if (rc == 0)
        rc = run_prompts(&st, prompts, n_prompts, &py, err);
    if (rc == 0) {
        prompt_embeddings_report(&m->embeddings);
        log_info("done! %ld image%s in %.1f s", st.images_done, st.images_done == 1 ? "" : "s",
                 now_seconds() - st.started);
    }
    free(st.pending);
    generate_free_lines(prompts, n_prompts);
    return rc;
}
