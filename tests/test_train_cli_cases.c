// labels: cli
/* `sdti train` on the tiny SD1 fixture model: the good case and a table of bad ones.
 *
 * Good: a kohya-style dataset .toml with two training subsets (64x64 and 192x64 images), a
 * regularisation subset, aspect-ratio buckets, shuffled captions with kept tokens, and
 * kohya's object templates trains 3 steps and writes a 2 x 8 embedding.
 *
 * Bad: every row of the table is a bad .toml, folder or option; sdti must exit non-zero
 * (never crash: a signal fails the row) with a message holding each of the row's substrings
 * (the file, key or line, and the reason). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"
#include "text/embedding_file.h"
#include "train_support.h"

static char tmp[512];

/* The placeholders the table uses, replaced by paths under tmp:
 *   @A @B  training image folders (captions with the token), @R the regularisation images,
 *   @N     images whose captions lack the token, @E an empty folder, @X a missing path,
 *   @J     a folder with a broken PNG, @K a folder with an empty PNG, @F a plain text file,
 *   @D     a kohya folder tree (<repeats>_<class> subfolders), @W one with a folder not
 *          named so, @T this row's .toml,
 *   @O     the output folder, @M the model */
static void expand(const char *in, const char *toml, char *out, size_t size) {
    size_t n = 0;
    for (const char *s = in; *s && n + 1 < size; s++) {
        const char *rep = NULL;
        char buf[1024];
        if (*s == '@' && s[1]) {
            const char *name = NULL;
            switch (s[1]) {
            case 'A':
                name = "imgA";
                break;
            case 'B':
                name = "imgB";
                break;
            case 'R':
                name = "reg";
                break;
            case 'N':
                name = "nocap";
                break;
            case 'E':
                name = "empty";
                break;
            case 'X':
                name = "no-such-folder";
                break;
            case 'J':
                name = "broken";
                break;
            case 'K':
                name = "zero";
                break;
            case 'F':
                name = "plain.txt";
                break;
            case 'D':
                name = "tree";
                break;
            case 'W':
                name = "badname";
                break;
            case 'O':
                name = "out";
                break;
            default:
                break;
            }
            if (name) {
                snprintf(buf, sizeof buf, "%s/%s", tmp, name);
                rep = buf;
            } else if (s[1] == 'T') {
                rep = toml;
            } else if (s[1] == 'M') {
                rep = test_fixture(TRAIN_SUPPORT_MODEL);
            }
        }
        if (rep) {
            size_t len = strlen(rep);
            if (n + len >= size)
                break;
            memcpy(out + n, rep, len);
            n += len;
            s++;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

/* Runs sdti train with `args` (placeholders expanded); the model is the tiny SD1 model unless
 * the args name one. Returns the exit code (-1: killed by a signal); *log gets the output. */
static int run_train(const char *args, const char *toml, char **log) {
    char expanded[6000], cmd[8000];
    expand(args, toml, expanded, sizeof expanded);
    bool own_model = strstr(args, "--pretrained_model_name_or_path") != NULL;
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive '%s' train %s%s%s %s", getenv("SDTI_BIN"),
             own_model ? "" : "--pretrained_model_name_or_path '",
             own_model ? "" : test_fixture(TRAIN_SUPPORT_MODEL), own_model ? "" : "'", expanded);
    return test_run(cmd, log);
}

static void write_text(const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    CHECK(test_write_file(path, text, strlen(text)) == 0);
}

static void make_inputs(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/imgA", tmp);
    train_support_make_images_sized(dir, 2, 64, 64, "mytok, a red thing, on a table");
    snprintf(dir, sizeof dir, "%s/imgB", tmp);
    train_support_make_images_sized(dir, 2, 192, 64, "a wide photo of mytok, outdoors");
    snprintf(dir, sizeof dir, "%s/reg", tmp);
    train_support_make_images_sized(dir, 2, 64, 64, "a photo of a thing");
    snprintf(dir, sizeof dir, "%s/nocap", tmp);
    train_support_make_images_sized(dir, 2, 64, 64, "a photo of a dog");
    snprintf(dir, sizeof dir, "%s/tree/2_mytok", tmp);
    train_support_make_images_sized(dir, 2, 64, 64, "mytok");
    snprintf(dir, sizeof dir, "%s/badname/x_thing", tmp);
    train_support_make_images_sized(dir, 1, 64, 64, "mytok");
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/empty' '%s/broken' '%s/zero' '%s/out'", tmp, tmp, tmp,
             tmp);
    CHECK(system(cmd) == 0);
    write_text("broken/bad.png", "\x89PNG\r\n\x1a\n this is not a PNG stream");
    write_text("broken/bad.txt", "mytok");
    write_text("zero/empty.png", "");
    write_text("zero/empty.txt", "mytok");
    write_text("plain.txt", "not a model\n");
}

static void test_good_toml(void) {
    char toml[1024];
    snprintf(toml, sizeof toml, "%s/good.toml", tmp);
    char text[4096], body[4096];
    snprintf(body, sizeof body,
             "# two subsets, a regularisation subset, buckets\n"
             "[general]\n"
             "caption_extension = \".txt\"\n"
             "shuffle_caption = true\n"
             "keep_tokens = 1\n"
             "enable_bucket = true\n"
             "min_bucket_reso = 64\n"
             "max_bucket_reso = 256\n"
             "bucket_reso_steps = 64\n"
             "\n"
             "[[datasets]]\n"
             "resolution = 128\n"
             "batch_size = 2\n"
             "\n"
             "  [[datasets.subsets]]\n"
             "  image_dir = '@A'\n"
             "  num_repeats = 2\n"
             "\n"
             "  [[datasets.subsets]]\n"
             "  image_dir = '@B'\n"
             "  num_repeats = 1\n"
             "  flip_aug = true\n"
             "\n"
             "  [[datasets.subsets]]\n"
             "  image_dir = '@R'\n"
             "  is_reg = true\n"
             "  num_repeats = 1\n");
    expand(body, toml, text, sizeof text);
    CHECK(test_write_file(toml, text, strlen(text)) == 0);
    char *log = NULL;
    int rc = run_train("--dataset_config '@T' --token_string mytok --init_word cat "
                       "--num_vectors_per_token 2 --use_object_template --max_train_steps 3 "
                       "--learning_rate 1e-2 --prior_loss_weight 0.5 --output_dir '@O/good' "
                       "--output_name good --save_model_as safetensors --seed 3",
                       toml, &log);
    /* the wide images in their own 192x64 bucket, the others upscaled to 128x128 */
    CHECKF(rc == 0 && log && strstr(log, "steps 3/3") && strstr(log, "resolution (192, 64)") &&
               strstr(log, "resolution (128, 128)"),
           "good .toml (%d): %s", rc, log ? log : "");
    free(log);
    char path[1200];
    snprintf(path, sizeof path, "%s/out/good/good.safetensors", tmp);
    Embedding e;
    embedding_init(&e);
    Error err = {{0}};
    CHECK_OK(embedding_load(path, &e, &err), &err);
    CHECKF(e.num_vectors == 2 && e.dim == 8, "%s: %d x %d", path, e.num_vectors, e.dim);
    embedding_free(&e);
}

typedef struct BadCase {
    const char *toml;    /* the .toml's text (placeholders expanded), or NULL */
    const char *args;    /* after --pretrained_model_name_or_path; "@T" is the .toml */
    const char *needles; /* '|'-separated substrings the output must hold */
} BadCase;

/* What most rows add: the token, the output folder, one step */
#define RUN      "--token_string mytok --init_word cat --max_train_steps 1 --output_dir '@O/bad' "
#define TOML_RUN RUN "--dataset_config '@T' "
#define GEN      "[general]\ncaption_extension = \".txt\"\n"
#define DS       "[[datasets]]\nresolution = 64\nbatch_size = 1\n"
#define SUB      "[[datasets.subsets]]\nimage_dir = '@A'\n"

static const BadCase bad_cases[] = {
    /* the dataset .toml */
    {GEN "foo = 1\n" DS SUB, TOML_RUN, "@T|foo"},
    {GEN DS SUB "caption_dropout_rate = 0.1\n", TOML_RUN, "@T|caption_dropout_rate"},
    {GEN DS SUB "num_repeats = \"two\"\n", TOML_RUN, "@T|num_repeats"},
    {GEN "[[datasets]]\nresolution = \"big\"\n" SUB, TOML_RUN, "@T|resolution"},
    {GEN "[[datasets]]\nresolution = [64, 64, 64]\n" SUB, TOML_RUN, "@T|resolution"},
    {GEN "[[datasets]]\nresolution = 64\nbatch_size = 0\n" SUB, TOML_RUN, "@T|batch_size"},
    {GEN DS SUB "is_reg = \"yes\"\n", TOML_RUN, "@T|is_reg"},
    {GEN DS SUB "keep_tokens = 1.5\n", TOML_RUN, "@T|keep_tokens"},
    {"[general\ncaption_extension = \".txt\"\n", TOML_RUN, "@T|1"},
    {GEN "caption_extension = \".txt\"\n" DS SUB, TOML_RUN, "@T|caption_extension"},
    {GEN "[foo]\nbar = 1\n" DS SUB, TOML_RUN, "@T|foo"},
    {GEN DS "[[datasets.subsets]]\nnum_repeats = 1\n", TOML_RUN, "@T|image_dir"},
    {GEN DS "[[datasets.subsets]]\nimage_dir = '@X'\n", TOML_RUN,
     "no-such-folder|not a folder|no training images"},
    {GEN DS "[[datasets.subsets]]\nimage_dir = '@E'\n", TOML_RUN,
     "no images found in @E|no training images"},
    {GEN DS "[[datasets.subsets]]\nimage_dir = '@N'\n", TOML_RUN, "mytok|occurs in no caption"},
    {GEN, TOML_RUN, "@T|datasets"},
    {GEN "enable_bucket = true\nmin_bucket_reso = 256\nmax_bucket_reso = 128\n" DS SUB, TOML_RUN,
     "min_bucket_reso"},
    {GEN DS SUB "shuffle_caption = 1\n", TOML_RUN, "@T|shuffle_caption"},
    {NULL, RUN "--dataset_config '@X'", "no-such-folder: no such file"},
    {NULL, RUN "--dataset_config '@E'", "empty: a folder"},
    /* folders */
    {NULL, RUN "--train_data_dir '@X' --resolution 64", "no-such-folder"},
    {NULL, RUN "--train_data_dir '@E' --resolution 64", "empty"},
    {NULL, RUN "--train_data_dir '@W' --resolution 64", "x_thing|no sub-folder named"},
    {NULL, RUN "--train_data_dir '@D' --reg_data_dir '@X' --resolution 64", "no-such-folder"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --in_json '@X'", "no-such-folder"},
    {GEN DS "[[datasets.subsets]]\nimage_dir = '@J'\n", TOML_RUN, "bad.png"},
    {GEN DS "[[datasets.subsets]]\nimage_dir = '@K'\n", TOML_RUN, "empty.png"},
    /* options */
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --no_such_option 1", "--no_such_option"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --max_train_epochs many",
     "--max_train_epochs|integer"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --learning_rate fast",
     "--learning_rate|number"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64x64", "--resolution|64x64"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --save_model_as onnx",
     "--save_model_as|onnx"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --mixed_precision fp8",
     "--mixed_precision|fp8"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --sample_every_n_steps 1",
     "--sample_every_n_steps|need --sample_prompts"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --optimizer_type Prodigy",
     "Prodigy|not supported yet"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --cache_latents --color_aug", "color_aug"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --use_8bit_adam --use_lion_optimizer",
     "--use_8bit_adam|--use_lion_optimizer"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --num_vectors_per_token 0",
     "--num_vectors_per_token"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --lr_scheduler sometimes", "sometimes"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --optimizer_args amsgrad",
     "amsgrad|key=value"},
    {NULL,
     "--init_word cat --max_train_steps 1 --output_dir '@O/bad' --train_data_dir '@D' "
     "--resolution 64",
     "--token_string"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --weights '@X'", "--weights: @X"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --resume '@X'", "no-such-folder"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --config_file '@X'",
     "--config_file: @X.toml: cannot open"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --output_dir '@F'", "plain.txt"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --in_json '@F'", "plain.txt"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --weights '@F'", "--weights: @F"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --max_token_length 100", "100"},
    {NULL, RUN "--train_data_dir '@D' --resolution 0", "--resolution"},
    {NULL,
     "--token_string cat --max_train_steps 1 --output_dir '@O/bad' --train_data_dir '@D' "
     "--resolution 64",
     "cat|token"},
    {GEN DS SUB "num_repeats = 0\n", TOML_RUN, "num_repeats is less than 1|no training images"},
    {GEN DS SUB "caption_extension = 7\n", TOML_RUN, "@T|caption_extension"},
    /* the model */
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --pretrained_model_name_or_path '@X'",
     "no-such-folder"},
    {NULL, RUN "--train_data_dir '@D' --resolution 64 --pretrained_model_name_or_path '@F'",
     "plain.txt"},
};

static void test_bad_cases(void) {
    size_t n = sizeof bad_cases / sizeof *bad_cases;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        const BadCase *c = &bad_cases[i];
        char toml[1100], text[4096];
        snprintf(toml, sizeof toml, "%s/case%02zu.toml", tmp, i);
        if (c->toml) {
            expand(c->toml, toml, text, sizeof text);
            CHECK(test_write_file(toml, text, strlen(text)) == 0);
        }
        char *log = NULL;
        int rc = run_train(c->args, toml, &log);
        bool ok = rc > 0 && log; /* -1: killed by a signal */
        char needles[1024];
        expand(c->needles, toml, needles, sizeof needles);
        for (char *save = NULL, *w = strtok_r(needles, "|", &save); ok && w;
             w = strtok_r(NULL, "|", &save))
            ok = strstr(log, w) != NULL;
        const char *msg = log ? log : "";
        if (!ok) {
            failed++;
            CHECKF(0, "case %zu (%s | %s): exit code %d, want '%s' in:\n%s", i,
                   c->toml ? c->toml : "", c->args, rc, c->needles, msg);
        } else { /* the message users see */
            const char *last = strstr(msg, "sdti train: ");
            printf("case %2zu: %s", i, last ? last : msg);
        }
        free(log);
    }
    printf("%zu bad cases, %zu failed\n", n, failed);
}

int main(void) {
    if (!getenv("SDTI_BIN"))
        return 0;
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_cli_cases"));
    make_inputs();
    test_good_toml();
    test_bad_cases();
    return test_finish();
}
