// labels: unit
/* --sample_prompts files (src/train/trainer_sample_prompts.c): a .json list (prompt lines and
 * objects, kohya's json.load branch of sample_images_common) reads to the same prompts as the
 * equivalent .txt and .toml files, field by field; bad .json files give errors naming the file
 * and the place (line:column for bad JSON, the list item and key otherwise). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "train/trainer_sample.h"

static const char *tmp;

static void write_file(char *path, size_t size, const char *name, const char *text) {
    snprintf(path, size, "%s/%s", tmp, name);
    CHECK(test_write_file(path, text, strlen(text)) == 0);
}

static bool same_text(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const char *what, const SamplePromptList *a, const SamplePromptList *b) {
    CHECKF(a->count == b->count, "%s: %d prompts against %d", what, a->count, b->count);
    for (int i = 0; i < a->count && i < b->count; i++) {
        const SamplePrompt *x = &a->items[i], *y = &b->items[i];
        CHECKF(same_text(x->prompt, y->prompt) && same_text(x->negative_prompt, y->negative_prompt),
               "%s [%d]: prompt '%s' / '%s', negative '%s' / '%s'", what, i, x->prompt, y->prompt,
               x->negative_prompt ? x->negative_prompt : "(none)",
               y->negative_prompt ? y->negative_prompt : "(none)");
        CHECKF(x->width == y->width && x->height == y->height && x->steps == y->steps &&
                   x->scale == y->scale,
               "%s [%d]: %dx%d %d steps scale %g against %dx%d %d steps scale %g", what, i,
               x->width, x->height, x->steps, x->scale, y->width, y->height, y->steps, y->scale);
        CHECKF(x->has_seed == y->has_seed && (!x->has_seed || x->seed == y->seed),
               "%s [%d]: seeds differ", what, i);
        CHECKF(x->has_sampler == y->has_sampler && (!x->has_sampler || x->sampler == y->sampler),
               "%s [%d]: samplers differ", what, i);
    }
}

static void load_ok(const char *path, SamplePromptList *list) {
    Error err = {{0}};
    CHECK_OK(sample_prompts_load(path, list, &err), &err);
}

static void bad_json(const char *name, const char *text, const char *needle) {
    char path[1200];
    write_file(path, sizeof path, name, text);
    SamplePromptList list;
    Error err = {{0}};
    int rc = sample_prompts_load(path, &list, &err);
    CHECKF(rc != 0 && strstr(err.message, path) && strstr(err.message, needle),
           "%s: expected an error naming the file and '%s', rc %d: %s", name, needle, rc,
           err.message);
    CHECKF(list.count == 0 && list.items == NULL, "%s: a failed load left prompts", name);
}

int main(void) {
    tmp = test_tmp_dir("test_sample_prompts");
    char txt[1200], toml[1200], json[1200];
    write_file(txt, sizeof txt, "p.txt",
               "a photo of mychar --w 64 --h 72 --d 7 --s 3 --ss euler\n"
               "a dog --n blurry --w 40 --h 70 --s 2 --l 5.5 --ss euler_a\n"
               "plain\n");
    write_file(toml, sizeof toml, "p.toml",
               "[prompt]\nsample_steps = 3\n"
               "[[prompt.subset]]\nprompt = \"a photo of mychar\"\nwidth = 64\nheight = 72\n"
               "seed = 7\nsample_sampler = \"euler\"\n"
               "[[prompt.subset]]\nprompt = \"a dog\"\nnegative_prompt = \"blurry\"\nwidth = 40\n"
               "height = 70\nscale = 5.5\n");
    /* the same prompts as the .txt: a line, an object (with the keys kohya ignores or pops:
     * subset, enum, unknown ones; null seed and negative prompt as left out), a line */
    write_file(json, sizeof json, "p.json",
               "[\n  \"a photo of mychar --w 64 --h 72 --d 7 --s 3 --ss euler\",\n"
               "  {\"prompt\": \"a dog\", \"negative_prompt\": \"blurry\", \"width\": 40,\n"
               "   \"height\": 70, \"sample_steps\": 2, \"scale\": 5.5, \"seed\": null,\n"
               "   \"sample_sampler\": \"euler_a\", \"subset\": [1], \"enum\": 5, \"extra\": {}},\n"
               "  {\"prompt\": \"plain\", \"negative_prompt\": null, \"controlnet_image\": null}\n"
               "]\n");
    SamplePromptList a, b, c;
    load_ok(txt, &a);
    load_ok(json, &b);
    check_same(".json against .txt", &b, &a);
    sample_prompts_free(&a);
    sample_prompts_free(&b);

    /* objects only, against the .toml ([prompt] defaults merged into each subset) */
    write_file(json, sizeof json, "q.json",
               "[{\"sample_steps\": 3, \"prompt\": \"a photo of mychar\", \"width\": 64, "
               "\"height\": 72, \"seed\": 7, \"sample_sampler\": \"euler\"},\n"
               " {\"sample_steps\": 3, \"prompt\": \"a dog\", \"negative_prompt\": \"blurry\", "
               "\"width\": 40, \"height\": 70, \"scale\": 5.5}]");
    load_ok(toml, &c);
    load_ok(json, &b);
    check_same(".json against .toml", &b, &c);
    sample_prompts_free(&b);
    sample_prompts_free(&c);

    /* a later duplicate key wins, as in Python's json; "prompt" left out is "" */
    write_file(json, sizeof json, "dup.json", "[{\"width\": 8, \"width\": 96}, \"\"]");
    load_ok(json, &b);
    CHECKF(b.count == 2 && b.items[0].width == 96 && strcmp(b.items[0].prompt, "") == 0 &&
               strcmp(b.items[1].prompt, "") == 0,
           "dup.json: %d prompts, width %d", b.count, b.count ? b.items[0].width : 0);
    sample_prompts_free(&b);

    bad_json("syntax.json", "[\n  \"a cat\",\n  {\"width\": 64,}\n]", ":3:");
    bad_json("trailing.json", "[\"a cat\"] x", ":1:");
    bad_json("object.json", "{\"prompt\": \"a cat\"}", "expected a JSON list");
    bad_json("number.json", "[\"a cat\", 5]", "[1]: expected a prompt string or an object");
    bad_json("width.json", "[{\"prompt\": \"a\", \"width\": \"64\"}]",
             "[0] key \"width\": expected an integer");
    bad_json("fraction.json", "[{\"height\": 64.5}]", "[0] key \"height\": expected an integer");
    bad_json("seed.json", "[\"a\", {\"seed\": -1}]", "[1] key \"seed\"");
    bad_json("prompt.json", "[{\"prompt\": null}]", "[0] key \"prompt\": expected a string");
    bad_json("scale.json", "[{\"scale\": true}]", "key \"scale\": expected a number");
    bad_json("sampler.json", "[{\"sample_sampler\": \"nosuch\"}]", "[0]");
    bad_json("steps.json", "[{\"sample_steps\": 0}]", "0 sample steps");
    bad_json("line.json", "[\"a cat --l 1.2.3\"]", "[0]: --l 1.2.3 is not a number");
    bad_json("controlnet.json", "[{\"controlnet_image\": \"c.png\"}]", "ControlNet");
    bad_json("empty.json", "[]", "no prompts in it");
    bad_json("latin1.json", "[\"caf\xe9\"]", "not UTF-8");
    return test_finish();
}
