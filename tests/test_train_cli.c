// labels: cli
/* `sdti train` end to end on the tiny SD1 fixture model (tests/fixtures/models/sd1-tiny,
 * text width 8, a VAE that halves the size): a few 64x64 PNG images written here, captions,
 * a dataset .toml or the <repeats>_<class> folder layout, 3 optimizer steps. Checks: exit 0,
 * a kohya embedding that embedding_load reads with N rows of width 8, rows moved away from the
 * init word's rows (the model's own, read through ti_tokens), step and final files where
 * kohya puts them, the model file unchanged byte for byte; and the refusals: an option the
 * loop does not run, an unknown option, captions without the token string, a run whose rows
 * become Inf (no embedding written). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/model_files.h"
#include "test_util.h"
#include "train_support.h"
#include "text/embedding_file.h"
#include "text/ti_tokens.h"
#include "text/tokenizer.h"

#define MODEL TRAIN_SUPPORT_MODEL

static uint64_t file_hash(const char *path) {
    FILE *f = fopen(path, "rb");
    uint64_t h = 1469598103934665603ull;
    if (!f)
        return 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        h = (h ^ (uint8_t)c) * 1099511628211ull;
    fclose(f);
    return h;
}

/* The rows kohya starts from with --init_word cat, from the model's token embedding. */
static void init_rows(int n, float *rows) {
    ModelFiles mf;
    Tokenizer *tok = NULL;
    TiTokens ti;
    Error err = {{0}};
    CHECK_OK(model_files_open(test_fixture(MODEL), NULL, &mf, &err), &err);
    CHECK_OK(tokenizer_create_builtin(TOKENIZER_SD1_PAD_ID, &tok, &err), &err);
    CHECK_OK(ti_tokens_add(tok, "mytok", n, "cat", &ti, &err), &err);
    const NamedTensor *te = tensor_set_find(&mf.components[COMPONENT_TEXT_ENCODER],
                                            "text_model.embeddings.token_embedding.weight");
    CHECK(te != NULL);
    if (te)
        CHECK_OK(ti_tokens_init_rows(&ti, te, rows, &err), &err);
    ti_tokens_free(&ti);
    tokenizer_free(tok);
    model_files_close(&mf);
}

/* The embedding at path: N rows of width 8, each at least `min_move` (max abs) from the init
 * rows. */
static void check_embedding(const char *path, int n, double min_move) {
    Embedding e;
    embedding_init(&e);
    Error err = {{0}};
    CHECK_OK(embedding_load(path, &e, &err), &err);
    CHECKF(e.num_vectors == n && e.dim == 8, "%s: %d x %d, want %d x 8", path, e.num_vectors, e.dim,
           n);
    if (e.num_vectors == n && e.dim == 8) {
        float init[4 * 8];
        init_rows(n, init);
        for (int r = 0; r < n; r++) {
            double move = 0;
            for (int k = 0; k < 8; k++)
                move = fmax(move, fabs((double)e.data[r * 8 + k] - init[r * 8 + k]));
            printf("%s row %d moved %.3g from the init row\n", path, r, move);
            CHECKF(move >= min_move, "%s: row %d moved only %.3g", path, r, move);
        }
    }
    embedding_free(&e);
}

static void test_dataset_toml(const char *tmp) {
    char dir[1024], toml[1024], out[1024], args[8192], path[1200];
    snprintf(dir, sizeof dir, "%s/images", tmp);
    train_support_make_images(dir, 3, "a photo of mytok, outdoors");
    snprintf(toml, sizeof toml, "%s/dataset.toml", tmp);
    char text[4096];
    snprintf(text, sizeof text,
             "[general]\ncaption_extension = \".txt\"\n\n[[datasets]]\nresolution = 64\n"
             "batch_size = 1\n\n  [[datasets.subsets]]\n  image_dir = \"%s\"\n"
             "  num_repeats = 1\n",
             dir);
    CHECK(test_write_file(toml, text, strlen(text)) == 0);
    snprintf(out, sizeof out, "%s/out", tmp);
    uint64_t model_before = file_hash(test_fixture(MODEL));
    snprintf(args, sizeof args,
             "--dataset_config '%s' --token_string mytok --init_word cat "
             "--num_vectors_per_token 2 --max_train_steps 3 --learning_rate 1e-2 "
             "--output_dir '%s' --save_model_as safetensors --seed 1 --cache_latents_to_disk",
             toml, out);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train failed (%d): %s", rc, log ? log : "");
    CHECKF(log && strstr(log, "steps 3/3"), "no progress line: %s", log ? log : "");
    free(log);
    snprintf(path, sizeof path, "%s/mytok.safetensors", out);
    check_embedding(path, 2, 1e-3);
    CHECK(file_hash(test_fixture(MODEL)) == model_before);
    /* kohya's latent cache name: <image stem>_<WWWW>x<HHHH>_sd.npz */
    snprintf(path, sizeof path, "%s/img0_0064x0064_sd.npz", dir);
    CHECKF(train_support_exists(path), "%s missing", path);

    /* Adafactor steps kohya's whole embedding matrix (its factored statistics mix rows) */
    snprintf(out, sizeof out, "%s/out-adafactor", tmp);
    snprintf(args, sizeof args,
             "--dataset_config '%s' --token_string mytok --init_word cat "
             "--num_vectors_per_token 2 --max_train_steps 3 --optimizer_type AdaFactor "
             "--optimizer_args relative_step=False scale_parameter=False warmup_init=False "
             "--learning_rate 1e-2 --output_dir '%s' --seed 1 --cache_latents",
             toml, out);
    rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train --optimizer_type AdaFactor failed (%d): %s", rc, log ? log : "");
    free(log);
    snprintf(path, sizeof path, "%s/mytok.pt", out);
    check_embedding(path, 2, 1e-3);
}

static void test_folders_cached(const char *tmp) {
    char root[1024], dir[1200], out[1024], args[8192], path[1400];
    snprintf(root, sizeof root, "%s/train", tmp);
    snprintf(dir, sizeof dir, "%s/2_mytok", root);
    train_support_make_images(dir, 2, "mytok");
    snprintf(out, sizeof out, "%s/out-pt", tmp);
    /* 4 batches of 1 per epoch, an optimizer step every 2: 3 steps over 2 epochs */
    snprintf(args, sizeof args,
             "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string "
             "mytok --init_word cat --num_vectors_per_token 3 --max_train_steps 3 "
             "--learning_rate 1e-2 --gradient_accumulation_steps 2 --cache_latents "
             "--flip_aug --max_grad_norm 0.5 --save_every_n_steps 1 --save_last_n_steps 1 "
             "--output_dir '%s' "
             "--output_name emb --seed 7",
             root, out);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train failed (%d): %s", rc, log ? log : "");
    free(log);
    /* kohya saves every multiple of --save_every_n_steps, the last step too, and with
     * --save_last_n_steps 1 removes step s - 2 at step s */
    for (int s = 1; s <= 3; s++) {
        snprintf(path, sizeof path, "%s/emb-step%08d.pt", out, s);
        CHECKF(train_support_exists(path) == (s != 1), "%s: %s", path,
               s == 1 ? "not removed" : "missing");
    }
    snprintf(path, sizeof path, "%s/emb.pt", out);
    check_embedding(path, 3, 1e-3);

    /* --debug_dataset: the captions with the new tokens' ids (49408, 49409 for N = 2), no
     * training */
    snprintf(out, sizeof out, "%s/out-debug", tmp);
    snprintf(args, sizeof args,
             "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string "
             "mytok --num_vectors_per_token 2 --debug_dataset --output_dir '%s' --seed 1",
             root, out);
    rc = train_support_run(args, &log);
    CHECKF(rc == 0 && log && strstr(log, "caption: mytok mytok1") &&
               strstr(log, "ids: 49408* 49409*"),
           "--debug_dataset (%d): %s", rc, log ? log : "");
    free(log);
    snprintf(path, sizeof path, "%s/mytok.pt", out);
    CHECK(!train_support_exists(path));
}

static void test_refusals(const char *tmp) {
    char dir[1024], out[1024], args[8192], path[1200];
    snprintf(dir, sizeof dir, "%s/nocap/1_dog", tmp);
    train_support_make_images(dir, 2, "a photo of a dog");
    snprintf(dir, sizeof dir, "%s/nocap", tmp);
    snprintf(out, sizeof out, "%s/out-err", tmp);
    const char *base = "--train_data_dir '%s' --caption_extension .txt --resolution 64 "
                       "--token_string mytok --init_word cat --max_train_steps 3 "
                       "--output_dir '%s' --seed 1 %s";
    struct {
        const char *extra, *needle;
    } cases[] = {
        {"", "occurs in no caption"},
        {"--sample_every_n_steps 1", "need --sample_prompts"},
        {"--vae other.safetensors", "--vae other.safetensors: no such file or folder"},
        {"--no_such_option 1", "no_such_option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(args, sizeof args, base, dir, out, cases[i].extra);
        char *log = NULL;
        int rc = train_support_run(args, &log);
        CHECKF(rc != 0 && log && strstr(log, cases[i].needle), "'%s': rc %d, want '%s' in: %s",
               cases[i].extra, rc, cases[i].needle, log ? log : "");
        free(log);
    }
    /* rows blown up by the learning rate: an error, and no embedding written */
    snprintf(dir, sizeof dir, "%s/train", tmp);
    snprintf(args, sizeof args, base, dir, out, "--learning_rate 1e38");
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc != 0 && log && strstr(log, "NaN or Inf"), "rc %d: %s", rc, log ? log : "");
    free(log);
    snprintf(path, sizeof path, "%s/mytok.pt", out);
    CHECKF(!train_support_exists(path), "%s written after the rows became Inf", path);
}

int main(void) {
    if (!getenv("SDTI_BIN"))
        return 0;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_cli"));
    test_dataset_toml(tmp);
    test_folders_cached(tmp);
    test_refusals(tmp);
    return test_finish();
}
