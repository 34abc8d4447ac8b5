// labels: unit
/* Captions and Python's random, against tests/fixtures/dataset/ (made by
 * tools/reference/make_dataset_fixtures.py):
 * - py_random.json: CPython's random.Random(seed) streams (getrandbits, random() as exact
 *   hex floats, randrange, shuffle, randint, uniform): equal bit for bit;
 * - captions.json: kohya's process_caption re-stated in Python (train_util.py
 *   BaseDataset.process_caption) run with random.Random(seed) over 8 captions x 11 rule
 *   sets x 3 replacement sets (none, token string -> 3 tokens, object templates) x 3 steps:
 *   our captions equal the strings exactly, shuffles and wildcard picks included;
 * - caption files: lookup by extension, the face-crop name, first line vs wildcard lines,
 *   CRLF, empty and non-UTF-8 files. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "test_util.h"
#include "text/ti_tokens.h"
#include "train/captions.h"
#include "train/py_random.h"

static cJSON *load_json(const char *rel) {
    Error err = {{0}};
    char *text = NULL;
    size_t size = 0;
    if (file_read_all(test_fixture(rel), &text, &size, &err) != 0) {
        CHECKF(0, "%s", err.message);
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    CHECK(j != NULL);
    return j;
}

static double hexd(const cJSON *s) {
    return strtod(s->valuestring, NULL);
}

static void test_py_random(void) {
    cJSON *all = load_json("dataset/py_random.json");
    int n = 0;
    for (cJSON *rec = all ? all->child : NULL; rec; rec = rec->next, n++) {
        PyRandom r;
        int64_t seed = (int64_t)cJSON_GetObjectItem(rec, "seed")->valuedouble;
        py_random_seed(&r, seed);
        cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(rec, "u32")) {
            uint32_t got = (uint32_t)py_random_getrandbits(&r, 32);
            CHECKF(got == (uint32_t)v->valuedouble, "seed %lld u32 %u", (long long)seed, got);
        }
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(rec, "random")) {
            double got = py_random_random(&r);
            CHECKF(got == hexd(v), "seed %lld random %a vs %s", (long long)seed, got,
                   v->valuestring);
        }
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(rec, "randbelow")) {
            uint64_t bound = (uint64_t)cJSON_GetArrayItem(v, 0)->valuedouble;
            uint64_t want = (uint64_t)cJSON_GetArrayItem(v, 1)->valuedouble;
            uint64_t got = py_random_randbelow(&r, bound);
            CHECKF(got == want, "seed %lld randbelow(%llu) = %llu, want %llu", (long long)seed,
                   (unsigned long long)bound, (unsigned long long)got, (unsigned long long)want);
        }
        uint64_t g40 = py_random_getrandbits(&r, 40);
        CHECK(g40 == (uint64_t)cJSON_GetObjectItem(rec, "getrandbits40")->valuedouble);
        int items[11];
        for (int i = 0; i < 11; i++)
            items[i] = i;
        py_random_shuffle(&r, items, 11, sizeof(int));
        cJSON *want = cJSON_GetObjectItem(rec, "shuffle11");
        for (int i = 0; i < 11; i++)
            CHECK(items[i] == cJSON_GetArrayItem(want, i)->valueint);
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(rec, "randint")) {
            CHECK(py_random_randint(&r, -5, 5) == v->valueint);
        }
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(rec, "uniform")) {
            CHECK(py_random_uniform(&r, -8, 8) == hexd(v));
        }
    }
    CHECK(n == 6);
    cJSON_Delete(all);
}

static const char *jstr(const cJSON *o, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double jnum(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void test_process_caption(void) {
    cJSON *fx = load_json("dataset/captions.json");
    if (!fx)
        return;
    cJSON *caps = cJSON_GetObjectItem(fx, "captions");
    const char *tokens = cJSON_GetObjectItem(fx, "token_strings")->valuestring;
    char *joined = caption_join_token_strings("mychar", 3);
    CHECK(joined && !strcmp(joined, tokens));
    free(joined);
    char **templates = NULL;
    size_t template_count = 0;
    Error err = {{0}};
    CHECK_OK(caption_make_template_list(false, tokens, &templates, &template_count, &err), &err);
    CHECK(template_count == 27 && caption_style_template_count == 19);

    int cases = 0, outputs = 0, mismatches = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "cases")) {
        cJSON *r = cJSON_GetObjectItem(c, "rules");
        CaptionRules rules = {
            .shuffle_caption = cJSON_IsTrue(cJSON_GetObjectItem(r, "shuffle_caption")),
            .caption_separator = jstr(r, "caption_separator", ","),
            .keep_tokens = (int)jnum(r, "keep_tokens", 0),
            .keep_tokens_separator = jstr(r, "keep_tokens_separator", ""),
            .secondary_separator = jstr(r, "secondary_separator", NULL),
            .enable_wildcard = cJSON_IsTrue(cJSON_GetObjectItem(r, "enable_wildcard")),
            .caption_prefix = jstr(r, "caption_prefix", NULL),
            .caption_suffix = jstr(r, "caption_suffix", NULL),
            .token_warmup_min = (int)jnum(r, "token_warmup_min", 1),
            .token_warmup_step = jnum(r, "token_warmup_step", 0),
        };
        int which = cJSON_GetObjectItem(c, "replacements")->valueint;
        CaptionReplacement repl[1];
        size_t repl_count = 0;
        if (which == 1)
            repl[repl_count++] = (CaptionReplacement){.from = "mychar", .to = tokens};
        else if (which == 2)
            repl[repl_count++] = (CaptionReplacement){.from = "",
                                                      .choices = (const char *const *)templates,
                                                      .choice_count = template_count};
        PyRandom rng;
        py_random_seed(&rng, (int64_t)cJSON_GetObjectItem(c, "seed")->valuedouble);
        cJSON *outs = cJSON_GetObjectItem(c, "outputs");
        int ncaps = cJSON_GetArraySize(caps), k = 0;
        for (int step = 0; step < 3; step++) {
            CaptionStep st = {.current_step = step * 4, .max_train_steps = 20};
            for (int i = 0; i < ncaps; i++, k++) {
                char *out = NULL;
                CHECK_OK(caption_process(&rules, repl, repl_count, &st, &rng,
                                         cJSON_GetArrayItem(caps, i)->valuestring, &out, &err),
                         &err);
                const char *want = cJSON_GetArrayItem(outs, k)->valuestring;
                bool same = out && !strcmp(out, want);
                if (!same && mismatches++ < 10)
                    CHECKF(false, "case %d caption %d step %d:\n  got  '%s'\n  want '%s'", cases, i,
                           step, out ? out : "(null)", want);
                outputs++;
                free(out);
            }
        }
        cases++;
    }
    CHECKF(mismatches == 0, "%d of %d captions differ from kohya's process_caption", mismatches,
           outputs);
    CHECK(cases == 33);
    caption_list_free(templates, template_count);
    cJSON_Delete(fx);

    CaptionRules bad = {.caption_separator = ""};
    char *out = NULL;
    PyRandom rng;
    py_random_seed(&rng, 1);
    CHECK_FAILS_WITH(caption_process(&bad, NULL, 0, NULL, &rng, "a", &out, &err), &err,
                     "caption_separator is empty");
}

static void write(const char *dir, const char *name, const char *text, size_t len) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    test_write_file(p, text, len);
}

static void test_caption_files(void) {
    const char *dir = test_tmp_dir("test_captions");
    char img[1024];
    Error err = {{0}};
    char *cap = NULL;
    write(dir, "a.txt", "  first line, x \r\nsecond\r\n\r\nthird\n", 34);
    snprintf(img, sizeof img, "%s/a.png", dir);
    CHECK_OK(caption_read_for_image(img, ".txt", false, &cap, &err), &err);
    CHECK(cap && !strcmp(cap, "first line, x"));
    free(cap);
    CHECK_OK(caption_read_for_image(img, ".txt", true, &cap, &err), &err);
    CHECK(cap && !strcmp(cap, "first line, x\nsecond\nthird"));
    free(cap);
    CHECK_OK(caption_read_for_image(img, ".caption", false, &cap, &err), &err);
    CHECK(cap == NULL);
    /* The face-crop name: img_12_34_56_78.png reads img.txt. */
    write(dir, "face.txt", "face caption", 12);
    snprintf(img, sizeof img, "%s/face_12_34_56_78.jpg", dir);
    CHECK_OK(caption_read_for_image(img, ".txt", false, &cap, &err), &err);
    CHECK(cap && !strcmp(cap, "face caption"));
    free(cap);
    write(dir, "empty.txt", "", 0);
    snprintf(img, sizeof img, "%s/empty.webp", dir);
    CHECK_FAILS_WITH(caption_read_for_image(img, ".txt", false, &cap, &err), &err,
                     "empty.txt: caption file is empty");
    write(dir, "latin1.txt", "caf\xe9", 4);
    snprintf(img, sizeof img, "%s/latin1.png", dir);
    CHECK_FAILS_WITH(caption_read_for_image(img, ".txt", false, &cap, &err), &err,
                     "latin1.txt: caption file is not UTF-8");
    /* A file of one newline is an empty caption, not an error (kohya: lines == ["\n"]). */
    write(dir, "nl.txt", "\n", 1);
    snprintf(img, sizeof img, "%s/nl.png", dir);
    CHECK_OK(caption_read_for_image(img, ".txt", false, &cap, &err), &err);
    CHECK(cap && !strcmp(cap, ""));
    free(cap);
}

static void test_ti_replacements(void) {
    Error err = {{0}};
    char name[] = "mychar", repl[] = "mychar mychar1 mychar2";
    TiTokens t = {.token_string = name, .num_vectors = 3, .replacement = repl};
    CaptionTiReplacements r;
    CHECK_OK(caption_ti_replacements(&t, false, false, &r, &err), &err);
    CHECK(r.count == 1 && !strcmp(r.entry.from, "mychar") && r.entry.to == repl);
    caption_ti_replacements_free(&r);
    CHECK_OK(caption_ti_replacements(&t, false, true, &r, &err), &err);
    CHECK(r.count == 1 && !r.entry.from[0] && r.entry.choice_count == caption_style_template_count);
    CHECK(r.template_count > 0 && !strcmp(r.templates[0], "a painting in the style of mychar "
                                                          "mychar1 mychar2"));
    caption_ti_replacements_free(&r);
    /* both flags: kohya takes the object list */
    CHECK_OK(caption_ti_replacements(&t, true, true, &r, &err), &err);
    CHECK(r.entry.choice_count == caption_object_template_count);
    caption_ti_replacements_free(&r);
    t.num_vectors = 1;
    t.replacement = name;
    CHECK_OK(caption_ti_replacements(&t, false, false, &r, &err), &err);
    CHECK(r.count == 0);
    caption_ti_replacements_free(&r);
}

int main(void) {
    test_ti_replacements();
    test_py_random();
    test_process_caption();
    test_caption_files();
    return test_finish();
}
