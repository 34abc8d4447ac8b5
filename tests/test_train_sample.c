// labels: cli
/* sdti train's sample images (kohya's --sample_prompts, --sample_every_n_steps,
 * --sample_at_first): a 4-step run on the tiny SD1 model writes kohya's file names at steps 0
 * (e000000), 2 and 4 with the prompts' sizes (floored to 8, at least 64); the fixed-seed
 * prompt's image at step 4 has the same pixels as `sdti generate` makes with the final
 * embedding file, prompt, seed, sampler (euler, where kohya's training samples and
 * gen_img_diffusers agree) and steps; the final embedding is byte-equal to a run
 * without samples (sampling draws from no training generator), also when a run with samples is
 * resumed from its step-2 state; a .toml prompt file works, and a .json one with the same
 * prompts gives the same images;
 * bad prompt files stop the run before training with a message naming the problem. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "text/embedding_file.h"
#include "test_util.h"
#include "train_support.h"

static const char *tmp;
static char images[1024];

static int train(const char *out, const char *extra, char **log) {
    char args[8192];
    snprintf(args, sizeof args,
             "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string mychar "
             "--init_word cat --num_vectors_per_token 3 --max_train_steps 4 --learning_rate 0.05 "
             "--output_dir '%s' --output_name mychar --save_model_as safetensors --seed 1 %s",
             images, out, extra);
    return train_support_run(args, log);
}

/* The one file in dir named prefix + 14 timestamp digits + suffix; path gets it. */
static bool find_sample(const char *dir, const char *prefix, const char *suffix, char *path,
                        size_t size) {
    DIR *d = opendir(dir);
    if (!d)
        return false;
    int found = 0;
    struct dirent *e;
    size_t np = strlen(prefix), ns = strlen(suffix);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n != np + 14 + ns || strncmp(e->d_name, prefix, np) != 0 ||
            strcmp(e->d_name + np + 14, suffix) != 0)
            continue;
        bool digits = true;
        for (size_t i = 0; i < 14; i++)
            digits = digits && e->d_name[np + i] >= '0' && e->d_name[np + i] <= '9';
        if (digits) {
            found++;
            snprintf(path, size, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return found == 1;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void check_size(const char *path, int width, int height) {
    int w = 0, h = 0;
    Error err = {{0}};
    CHECK_OK(image_read_size(path, &w, &h, &err), &err);
    CHECKF(w == width && h == height, "%s: %dx%d, expected %dx%d", path, w, h, width, height);
}

static void write_text(const char *path, const char *text) {
    CHECK(test_write_file(path, text, strlen(text)) == 0);
}

static void bad_prompt_file(const char *name, const char *text, const char *needle) {
    char path[1200], out[1200], extra[2600], emb[1300];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    if (text)
        write_text(path, text);
    snprintf(out, sizeof out, "%s/bad", tmp);
    snprintf(extra, sizeof extra, "--sample_every_n_steps 2 --sample_prompts '%s'", path);
    char *log = NULL;
    int rc = train(out, extra, &log);
    CHECKF(rc != 0 && log && strstr(log, needle), "%s: expected an error with '%s', rc %d:\n%s",
           name, needle, rc, log ? log : "");
    CHECKF(!log || !strstr(log, "steps per epoch"), "%s: training started:\n%s", name, log);
    snprintf(emb, sizeof emb, "%s/mychar.safetensors", out);
    CHECKF(!train_support_exists(emb), "%s: an embedding was written", name);
    free(log);
}

int main(void) {
    tmp = test_tmp_dir("test_train_sample");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/img/2_mychar", tmp);
    train_support_make_images(dir, 2, "a photo of mychar");
    snprintf(images, sizeof images, "%s/img", tmp);

    /* a run with samples and one without */
    char prompts[1200], with[1200], without[1200], extra[4096];
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", tmp);
    write_text(prompts, "# sample prompts\n"
                        "a photo of mychar --w 64 --h 72 --d 7 --s 3 --ss euler\n"
                        "\n"
                        "a dog --n blurry --w 40 --h 70 --s 2 --l 5.5 --ss euler_a\n");
    snprintf(with, sizeof with, "%s/with", tmp);
    snprintf(without, sizeof without, "%s/without", tmp);
    snprintf(extra, sizeof extra,
             "--sample_every_n_steps 2 --sample_at_first --sample_prompts '%s'", prompts);
    char *log = NULL;
    int rc = train(with, extra, &log);
    CHECKF(rc == 0, "sdti train with samples failed:\n%s", log ? log : "");
    free(log);
    log = NULL;
    rc = train(without, "", &log);
    CHECKF(rc == 0, "sdti train without samples failed:\n%s", log ? log : "");
    free(log);

    /* the same training bytes (the files differ only in their modelspec.date) */
    char pa[1300], pb[1300];
    snprintf(pa, sizeof pa, "%s/mychar.safetensors", with);
    snprintf(pb, sizeof pb, "%s/mychar.safetensors", without);
    Embedding ea, eb;
    embedding_init(&ea);
    embedding_init(&eb);
    Error lerr = {{0}};
    CHECK_OK(embedding_load(pa, &ea, &lerr), &lerr);
    CHECK_OK(embedding_load(pb, &eb, &lerr), &lerr);
    CHECKF(ea.data && eb.data && ea.num_vectors == 3 && eb.num_vectors == 3 && ea.dim == eb.dim &&
               memcmp(ea.data, eb.data, sizeof(float) * 3 * ea.dim) == 0,
           "the embedding with samples differs from the one without");
    embedding_free(&ea);
    embedding_free(&eb);

    /* a run with samples stopped at its step-2 state and resumed (sampling again) still
     * trains the rows of the run without samples */
    char stopped[1200];
    snprintf(stopped, sizeof stopped, "%s/stopped", tmp);
    snprintf(extra, sizeof extra,
             "--sample_every_n_steps 2 --sample_prompts '%s' --save_every_n_steps 2 --save_state",
             prompts);
    log = NULL;
    rc = train(stopped, extra, &log);
    CHECKF(rc == 0, "sdti train with samples and states failed:\n%s", log ? log : "");
    free(log);
    snprintf(
        extra, sizeof extra,
        "--sample_every_n_steps 2 --sample_prompts '%s' --resume '%s/mychar-step00000002-state'",
        prompts, stopped);
    char resumed[1200];
    snprintf(resumed, sizeof resumed, "%s/resumed", tmp);
    log = NULL;
    rc = train(resumed, extra, &log);
    CHECKF(rc == 0, "resumed sdti train with samples failed:\n%s", log ? log : "");
    free(log);
    char pr[1300];
    snprintf(pr, sizeof pr, "%s/mychar.safetensors", resumed);
    embedding_init(&ea);
    embedding_init(&eb);
    CHECK_OK(embedding_load(pr, &ea, &lerr), &lerr);
    CHECK_OK(embedding_load(pb, &eb, &lerr), &lerr);
    CHECKF(ea.data && eb.data && ea.num_vectors == eb.num_vectors && ea.dim == eb.dim &&
               memcmp(ea.data, eb.data, sizeof(float) * (size_t)ea.num_vectors * ea.dim) == 0,
           "resumed with samples: the embedding differs from the run without samples");
    embedding_free(&ea);
    embedding_free(&eb);
    snprintf(pr, sizeof pr, "%s/sample", resumed);
    CHECKF(count_files(pr) == 2, "%s: %d files, expected 2 (step 4's)", pr, count_files(pr));

    /* kohya's names: step 0 is "e000000" (its sample_at_first call passes epoch 0), the
     * seed only for --d; sizes floored to 8, at least 64 */
    char sdir[1300], path[1600], first[1600], last[1600];
    snprintf(sdir, sizeof sdir, "%s/sample", with);
    CHECKF(count_files(sdir) == 6, "%s: %d files, expected 6", sdir, count_files(sdir));
    const char *nums[] = {"e000000", "000002", "000004"};
    for (int i = 0; i < 3; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "mychar_%s_00_", nums[i]);
        bool ok = find_sample(sdir, prefix, "_7.png", path, sizeof path);
        CHECKF(ok, "no %s<timestamp>_7.png in %s", prefix, sdir);
        if (ok)
            check_size(path, 64, 72);
        if (ok && i == 0)
            snprintf(first, sizeof first, "%s", path);
        if (ok && i == 2)
            snprintf(last, sizeof last, "%s", path);
        snprintf(prefix, sizeof prefix, "mychar_%s_01_", nums[i]);
        ok = find_sample(sdir, prefix, ".png", path, sizeof path);
        CHECKF(ok, "no %s<timestamp>.png in %s", prefix, sdir);
        if (ok)
            check_size(path, 64, 64);
    }

    /* step 4's fixed-seed image is what sdti generate makes with the final embedding (euler on
     * SD1: kohya's training samples and gen_img_diffusers agree there; ddim, pndm, heun and
     * the ancestral samplers differ, see test_train_sample_kohya) */
    char cmd[8192];
    const char *bin = getenv("SDTI_BIN");
    snprintf(cmd, sizeof cmd,
             "%s generate --ckpt %s/%s --prompt 'a photo of mychar --w 64 --h 72 --d 7 --s 3' "
             "--sampler euler --sequential_file_name --outdir '%s/gen' "
             "--textual_inversion_embeddings '%s'",
             bin ? bin : "sdti", SDTI_FIXTURES, TRAIN_SUPPORT_MODEL, tmp, pa);
    log = NULL;
    rc = test_run(cmd, &log);
    CHECKF(rc == 0, "sdti generate failed:\n%s", log ? log : "");
    free(log);
    char gen[1300];
    snprintf(gen, sizeof gen, "%s/gen/im_000001.png", tmp);
    Image ig = {0}, il = {0}, i0 = {0};
    Error err = {{0}};
    ImageLoadOptions lo = {0};
    CHECK_OK(image_load_file(gen, &lo, &ig, &err), &err);
    CHECK_OK(image_load_file(last, &lo, &il, &err), &err);
    CHECK_OK(image_load_file(first, &lo, &i0, &err), &err);
    if (ig.pixels && il.pixels && i0.pixels) {
        size_t n = (size_t)ig.width * ig.height * 3;
        CHECKF(ig.width == il.width && ig.height == il.height &&
                   memcmp(ig.pixels, il.pixels, n) == 0,
               "the step-4 sample differs from sdti generate's image");
        /* and the samples follow the training: step 0's rows give another image */
        CHECKF(memcmp(i0.pixels, il.pixels, n) != 0, "step 0 and step 4 gave the same image");
    }
    image_free(&ig);
    image_free(&il);
    image_free(&i0);

    /* a .toml prompt file: [prompt] defaults with [[prompt.subset]] entries */
    char toml[1200], tdir[1200];
    snprintf(toml, sizeof toml, "%s/prompts.toml", tmp);
    write_text(toml, "[prompt]\nwidth = 64\nsample_steps = 2\n"
                     "[[prompt.subset]]\nprompt = \"mychar\"\nseed = 3\nheight = 64\n"
                     "[[prompt.subset]]\nprompt = \"a cat\"\nseed = 4\nheight = 80\n"
                     "sample_sampler = \"euler\"\n");
    snprintf(tdir, sizeof tdir, "%s/toml", tmp);
    snprintf(extra, sizeof extra,
             "--max_train_epochs 1 --sample_every_n_epochs 1 --sample_prompts '%s'", toml);
    log = NULL;
    rc = train(tdir, extra, &log);
    CHECKF(rc == 0, "sdti train with a .toml prompt file failed:\n%s", log ? log : "");
    free(log);
    snprintf(sdir, sizeof sdir, "%s/sample", tdir);
    CHECKF(count_files(sdir) == 2, "%s: %d files, expected 2", sdir, count_files(sdir));
    if (find_sample(sdir, "mychar_e000001_00_", "_3.png", path, sizeof path))
        check_size(path, 64, 64);
    else
        CHECKF(false, "no mychar_e000001_00_<timestamp>_3.png in %s", sdir);
    if (find_sample(sdir, "mychar_e000001_01_", "_4.png", path, sizeof path))
        check_size(path, 64, 80);
    else
        CHECKF(false, "no mychar_e000001_01_<timestamp>_4.png in %s", sdir);

    /* a .json prompt file with the same prompts (a line and an object) gives the .toml run's
     * images, pixel for pixel */
    char json[1200], jdir[1200], jsdir[1300], jpath[1600];
    snprintf(json, sizeof json, "%s/prompts.json", tmp);
    write_text(json,
               "[\"mychar --w 64 --h 64 --s 2 --d 3\",\n"
               " {\"prompt\": \"a cat\", \"width\": 64, \"height\": 80, \"sample_steps\": 2,\n"
               "  \"seed\": 4, \"sample_sampler\": \"euler\", \"subset\": {}}]\n");
    snprintf(jdir, sizeof jdir, "%s/json", tmp);
    snprintf(extra, sizeof extra,
             "--max_train_epochs 1 --sample_every_n_epochs 1 --sample_prompts '%s'", json);
    log = NULL;
    rc = train(jdir, extra, &log);
    CHECKF(rc == 0, "sdti train with a .json prompt file failed:\n%s", log ? log : "");
    free(log);
    snprintf(jsdir, sizeof jsdir, "%s/sample", jdir);
    CHECKF(count_files(jsdir) == 2, "%s: %d files, expected 2", jsdir, count_files(jsdir));
    const char *json_names[][2] = {{"mychar_e000001_00_", "_3.png"},
                                   {"mychar_e000001_01_", "_4.png"}};
    for (int i = 0; i < 2; i++) {
        bool ok = find_sample(sdir, json_names[i][0], json_names[i][1], path, sizeof path) &&
                  find_sample(jsdir, json_names[i][0], json_names[i][1], jpath, sizeof jpath);
        CHECKF(ok, "no %s<timestamp>%s in %s and %s", json_names[i][0], json_names[i][1], sdir,
               jsdir);
        Image it = {0}, ij = {0};
        if (ok && image_load_file(path, &lo, &it, &err) == 0 &&
            image_load_file(jpath, &lo, &ij, &err) == 0)
            CHECKF(it.width == ij.width && it.height == ij.height &&
                       memcmp(it.pixels, ij.pixels, (size_t)it.width * it.height * 3) == 0,
                   "%s: the .json prompt's image differs from the .toml one's (%s)", jpath, path);
        else if (ok)
            CHECKF(false, "%s", err.message);
        image_free(&it);
        image_free(&ij);
    }

    /* bad prompt files stop the run before training */
    bad_prompt_file("sampler.txt", "a cat\na dog --ss nosuch\n", "sampler.txt line 2");
    bad_prompt_file("scale.txt", "a cat --l 1.2.3\n", "--l 1.2.3 is not a number");
    bad_prompt_file("empty.txt", "# only a comment\n\n", "no prompts in it");
    bad_prompt_file("missing.txt", NULL, "cannot open it");
    bad_prompt_file("bad.json", "[\"a cat\",\n {\"width\": 64,}]", "bad.json:2:");
    bad_prompt_file("width.json", "[{\"width\": \"64\"}]",
                    "[0] key \"width\": expected an integer");
    bad_prompt_file("dup.toml",
                    "[prompt]\nwidth = 64\n[[prompt.subset]]\nprompt = \"a\"\nwidth = 8\n",
                    "also set in [prompt]");
    bad_prompt_file("steps.toml", "[prompt]\n[[prompt.subset]]\nprompt = \"a\"\nsample_steps = 0\n",
                    "0 sample steps");
    log = NULL;
    char out[1300];
    snprintf(out, sizeof out, "%s/noprompts", tmp);
    rc = train(out, "--sample_at_first", &log);
    CHECKF(rc != 0 && log && strstr(log, "need --sample_prompts"), "no --sample_prompts: rc %d\n%s",
           rc, log ? log : "");
    free(log);
    return test_finish();
}
