// labels: unit
/* The prompt side of sdti generate against kohya's own code
 * (tools/reference/make_generate_prompt_fixtures.py ran gen_img_diffusers.py's functions):
 * parse_prompt_attention on tricky prompts (pieces and weights exactly), the option table
 * against setup_parser's options (names, types, defaults, choices) and docs/options.md, Python's
 * float repr of the scale; plus kohya's prompt-line options, the prompt file reader (splitlines,
 * comments, non-UTF-8) and kohya's chunk weights. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "cli/generate_options.h"
#include "generate/dynamic_prompt.h"
#include "generate/generate_run.h"
#include "generate/png_output.h"
#include "generate/prompt_line.h"
#include "generate/prompt_weights.h"
#include "generate/text_condition.h"
#include "test_util.h"

static cJSON *load_json(const char *rel) {
    char *data = NULL;
    size_t size = 0;
    Error err = {{0}};
    CHECK_OK(file_read_all(test_fixture(rel), &data, &size, &err), &err);
    cJSON *j = data ? cJSON_Parse(data) : NULL;
    free(data);
    CHECKF(j != NULL, "%s: not JSON", rel);
    return j;
}

static void test_attention(void) {
    cJSON *cases = load_json("generate/prompt_attention.json"), *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        cJSON *pieces = cJSON_GetObjectItem(c, "pieces");
        WeightedText *w = NULL;
        int n = 0;
        Error err = {{0}};
        CHECK_OK(prompt_attention_parse(prompt, &w, &n, &err), &err);
        bool ok = n == cJSON_GetArraySize(pieces);
        for (int i = 0; ok && i < n; i++) {
            cJSON *p = cJSON_GetArrayItem(pieces, i);
            double want = cJSON_GetObjectItem(p, "weight")->valuedouble;
            ok = strcmp(w[i].text, cJSON_GetObjectItem(p, "text")->valuestring) == 0 &&
                 w[i].weight == want;
        }
        CHECKF(ok, "parse_prompt_attention(\"%s\"): %d pieces, kohya %d", prompt, n,
               cJSON_GetArraySize(pieces));
        weighted_text_free(w, n);
        n_cases++;
    }
    CHECK(n_cases >= 20);
    cJSON_Delete(cases);
    Error err = {{0}};
    WeightedText *w = NULL;
    int n = 0;
    CHECK_FAILS_WITH(prompt_attention_parse("(a:1.2.3)", &w, &n, &err), &err, "not a number");
}

static const GenerateOptionDef *find_def(const char *name) {
    for (int i = 0; i < generate_option_count; i++)
        if (strcmp(generate_option_defs[i].name, name) == 0)
            return &generate_option_defs[i];
    return NULL;
}

static void test_option_table(void) {
    cJSON *opts = load_json("generate/kohya_gen_options.json"), *o;
    char *doc = NULL;
    size_t doc_size = 0;
    Error err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/../../docs/options.md", SDTI_FIXTURES);
    CHECK_OK(file_read_all(path, &doc, &doc_size, &err), &err);
    const char *gen_doc = doc ? strstr(doc, "## `sdti generate`") : NULL;
    CHECK(gen_doc != NULL);
    int kohya_count = 0;
    cJSON_ArrayForEach(o, opts) {
        const char *name = cJSON_GetObjectItem(o, "name")->valuestring;
        const GenerateOptionDef *d = find_def(name);
        kohya_count++;
        CHECKF(d != NULL, "--%s (kohya) is not in sdti generate's table", name);
        if (!d)
            continue;
        const char *action = cJSON_GetObjectItem(o, "action")->valuestring;
        cJSON *type = cJSON_GetObjectItem(o, "type"), *nargs = cJSON_GetObjectItem(o, "nargs");
        OptionType want = OPT_FLAG;
        if (strcmp(action, "store") == 0) {
            if (cJSON_IsString(nargs) && strcmp(nargs->valuestring, "*") == 0)
                want = OPT_LIST;
            else if (strcmp(type->valuestring, "int") == 0)
                want = OPT_INT;
            else if (strcmp(type->valuestring, "float") == 0)
                want = OPT_FLOAT;
            else
                want = OPT_STRING;
        }
        CHECKF(d->type == want, "--%s: type %d, kohya %d", name, d->type, want);
        cJSON *def = cJSON_GetObjectItem(o, "default");
        if (cJSON_IsNull(def) || cJSON_IsFalse(def))
            CHECKF(d->default_text == NULL, "--%s: default %s, kohya None/False", name,
                   d->default_text);
        else if (cJSON_IsNumber(def))
            CHECKF(d->default_text && fabs(atof(d->default_text) - def->valuedouble) < 1e-12,
                   "--%s: default %s, kohya %g", name, d->default_text, def->valuedouble);
        else if (cJSON_IsString(def))
            CHECKF(d->default_text && strcmp(d->default_text, def->valuestring) == 0,
                   "--%s: default %s, kohya %s", name, d->default_text, def->valuestring);
        cJSON *choices = cJSON_GetObjectItem(o, "choices");
        if (cJSON_IsArray(choices)) {
            int i = 0;
            bool same = d->choices != NULL;
            cJSON *ch;
            cJSON_ArrayForEach(ch, choices) {
                same = same && d->choices[i] && strcmp(d->choices[i], ch->valuestring) == 0;
                i++;
            }
            CHECKF(same && d->choices[i] == NULL, "--%s: choices differ from kohya's", name);
        }
        char needle[128];
        snprintf(needle, sizeof needle, "| `--%s` |", name);
        CHECKF(gen_doc && strstr(gen_doc, needle), "docs/options.md lacks --%s", name);
    }
    /* and nothing beyond kohya's options but sdti's own */
    for (int i = 0; i < generate_option_count; i++)
        if (generate_option_defs[i].status != GEN_OPT_SDTI) {
            bool found = false;
            cJSON_ArrayForEach(o, opts) found =
                found || strcmp(cJSON_GetObjectItem(o, "name")->valuestring,
                                generate_option_defs[i].name) == 0;
            CHECKF(found, "--%s is not a kohya option", generate_option_defs[i].name);
        }
    CHECK(kohya_count >= 79);
    free(doc);
    cJSON_Delete(opts);
}

/* handle_dynamic_prompt_variants after random.seed(seed): the prompts, and where it left the
 * random stream (the next randint). */
static void test_dynamic(void) {
    cJSON *cases = load_json("generate/dynamic_prompts.json"), *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        cJSON *want = cJSON_GetObjectItem(c, "prompts");
        PyRandom py;
        py_random_seed(&py, (int64_t)cJSON_GetObjectItem(c, "seed")->valuedouble);
        char **out = NULL;
        int n = 0;
        Error err = {{0}};
        CHECK_OK(dynamic_prompt_expand(prompt, cJSON_GetObjectItem(c, "repeat")->valueint, &py,
                                       &out, &n, &err),
                 &err);
        bool ok = n == cJSON_GetArraySize(want);
        for (int i = 0; ok && i < n; i++)
            ok = strcmp(out[i], cJSON_GetArrayItem(want, i)->valuestring) == 0;
        CHECKF(ok, "handle_dynamic_prompt_variants(\"%s\"): %d prompts (kohya %d), first '%s'",
               prompt, n, cJSON_GetArraySize(want), n ? out[0] : "");
        int64_t next = py_random_randint(&py, 0, 0x7FFFFFFF);
        CHECKF(next == (int64_t)cJSON_GetObjectItem(c, "next_randint")->valuedouble,
               "\"%s\": the random stream is not where kohya left it", prompt);
        dynamic_prompt_free(out, n);
        n_cases++;
    }
    CHECK(n_cases >= 12);
    cJSON_Delete(cases);
}

static void test_py_float(void) {
    cJSON *cases = load_json("generate/py_float_repr.json"), *c;
    cJSON_ArrayForEach(c, cases) {
        char out[64];
        generate_format_py_float(cJSON_GetArrayItem(c, 0)->valuedouble, out, sizeof out);
        const char *want = cJSON_GetArrayItem(c, 1)->valuestring;
        CHECKF(strcmp(out, want) == 0, "str(%.17g): '%s', Python '%s'",
               cJSON_GetArrayItem(c, 0)->valuedouble, out, want);
    }
    cJSON_Delete(cases);
}

static void test_prompt_line(void) {
    PromptLine p;
    Error err = {{0}};
    CHECK_OK(prompt_line_parse("  a cat --N ugly, blurry --W 640 --h 768 --s 2000 --d 5,6 --l 9.5 "
                               "--nl 3 --c clip text --zz what  ",
                               "test", &p, &err),
             &err);
    CHECK(strcmp(p.prompt, "a cat") == 0);
    CHECK(p.negative_prompt && strcmp(p.negative_prompt, "ugly, blurry") == 0);
    CHECK(p.has_width && p.width == 640 && p.has_height && p.height == 768);
    CHECK(p.has_steps && p.steps == 1000); /* clamped as kohya does */
    CHECK(p.seed_count == 2 && p.seeds[0] == 5 && p.seeds[1] == 6);
    CHECK(p.has_scale && p.scale == 9.5);
    CHECK(p.negative_scale_set == 1 && p.negative_scale == 3.0);
    CHECK(p.clip_prompt && strcmp(p.clip_prompt, "clip text") == 0);
    prompt_line_free(&p);
    CHECK_OK(prompt_line_parse("x --nl none --s 0", "test", &p, &err), &err);
    CHECK(p.negative_scale_set == 2 && p.steps == 1);
    prompt_line_free(&p);
    CHECK_FAILS_WITH(prompt_line_parse("x --am 0.5", "test", &p, &err), &err, "not supported yet");
    CHECK_FAILS_WITH(prompt_line_parse("a cat AND a dog", "test", &p, &err), &err, "AND");
    CHECK_FAILS_WITH(prompt_line_parse("x --d 1,,2", "test", &p, &err), &err, "seeds");
}

static void test_prompt_file(void) {
    const char *dir = test_tmp_dir("test_generate_prompt");
    char path[1024];
    snprintf(path, sizeof path, "%s/p.txt", dir);
    const char text[] = "# comment\nfirst\r\n\n   \nsecond\rthird\xe2\x80\xa8"
                        "fourth\n #x\n";
    test_write_file(path, text, sizeof text - 1);
    char **lines = NULL;
    int n = 0;
    Error err = {{0}};
    CHECK_OK(generate_read_prompt_file(path, &lines, &n, &err), &err);
    const char *want[] = {"first", "second", "third", "fourth", " #x"};
    CHECKF(n == 5, "%d lines", n);
    for (int i = 0; i < n && i < 5; i++)
        CHECKF(strcmp(lines[i], want[i]) == 0, "line %d: '%s'", i, lines[i]);
    generate_free_lines(lines, n);
    test_write_file(path, "ok\nbad \xff\n", 8);
    CHECK_FAILS_WITH(generate_read_prompt_file(path, &lines, &n, &err), &err, "line 2");
}

static void test_chunk_weights(void) {
    /* kohya's pad_tokens_and_weights (no_boseos_middle False): per chunk 1, its weights, 1 */
    double w[80];
    for (int i = 0; i < 80; i++)
        w[i] = 2.0;
    float out[154];
    text_condition_chunk_weights(w, 80, 2, out);
    CHECK(out[0] == 1.0f && out[1] == 2.0f && out[75] == 2.0f && out[76] == 1.0f);
    CHECK(out[77] == 1.0f && out[78] == 2.0f && out[82] == 2.0f && out[83] == 1.0f);
    CHECK(out[84] == 1.0f && out[153] == 1.0f);
}

/* Latin-1 text goes to tEXt (as Latin-1 bytes), anything else to iTXt (UTF-8), as PIL writes
 * them; libpng reads both back as the same UTF-8 / Latin-1 strings. */
static void test_png_text(void) {
    const char *dir = test_tmp_dir("test_generate_png");
    char path[1024];
    snprintf(path, sizeof path, "%s/t.png", dir);
    uint8_t rgb[2 * 3 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 13);
    PngTextEntry text[2] = {{"prompt", "caf\xc3\xa9"}, {"negative-prompt", "\xe7\x8c\xab cat"}};
    Error err = {{0}};
    CHECK_OK(png_output_write(path, rgb, 3, 2, text, 2, &err), &err);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        png_read_info(png, info);
        png_textp t = NULL;
        int n = 0;
        png_get_text(png, info, &t, &n);
        CHECK(n == 2);
        if (n == 2) {
            CHECK(t[0].compression == PNG_TEXT_COMPRESSION_NONE &&
                  strcmp(t[0].text, "caf\xe9") == 0);
            CHECK(t[1].compression == PNG_ITXT_COMPRESSION_NONE &&
                  strcmp(t[1].text, "\xe7\x8c\xab cat") == 0);
        }
        CHECK(png_get_image_width(png, info) == 3 && png_get_image_height(png, info) == 2);
    } else {
        CHECK(false);
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
}

int main(void) {
    test_png_text();
    test_attention();
    test_option_table();
    test_py_float();
    test_dynamic();
    test_prompt_line();
    test_prompt_file();
    test_chunk_weights();
    return test_finish();
}
