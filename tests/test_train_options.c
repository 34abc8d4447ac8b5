// labels: unit
/* sdti train's option table against kohya's own argparse parser
 * (tests/fixtures/train_options/kohya_ti_options.json, written by
 * tools/reference/dump_kohya_train_options.py from sd-scripts): the same options in the same
 * order, types, defaults and choices. Then: every option parses in both spellings
 * (--opt=value, --opt value), --config_file merges as kohya's read_config_from_file does,
 * --output_config writes what reads back, bad values and unsupported options fail with clear
 * messages, and docs/options.md lists every option. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/train_options.h"
#include "test_util.h"

static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text && fread(text, 1, (size_t)size, fp) != (size_t)size) {
        free(text);
        text = NULL;
    }
    if (text)
        text[size] = '\0';
    fclose(fp);
    return text;
}

static void test_table_matches_kohya(void) {
    char *text = read_text(test_fixture("train_options/kohya_ti_options.json"));
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECKF(root != NULL, "cannot read the kohya option fixture");
    if (!root)
        return;
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "options");
    /* sdti's own options (--replay) follow kohya's */
    int kohya_count = train_option_count;
    while (kohya_count > 0 && train_option_defs[kohya_count - 1].status == TRAIN_OPT_SDTI)
        kohya_count--;
    CHECKF(cJSON_GetArraySize(opts) == kohya_count, "kohya has %d options, sdti %d",
           cJSON_GetArraySize(opts), kohya_count);
    int i = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, opts) {
        if (i >= kohya_count)
            break;
        const TrainOptionDef *d = &train_option_defs[i++];
        const char *name = cJSON_GetObjectItemCaseSensitive(k, "name")->valuestring;
        const char *action = cJSON_GetObjectItemCaseSensitive(k, "action")->valuestring;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(k, "type");
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(k, "default");
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(k, "choices");
        const cJSON *nargs = cJSON_GetObjectItemCaseSensitive(k, "nargs");
        CHECKF(strcmp(d->name, name) == 0, "option %d: kohya %s, sdti %s", i, name, d->name);
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        OptionType want = strcmp(action, "store_true") == 0 ? OPT_FLAG
                          : cJSON_IsString(nargs)           ? OPT_LIST
                          : strcmp(t, "int") == 0           ? OPT_INT
                          : strcmp(t, "float") == 0         ? OPT_FLOAT
                                                            : OPT_STRING;
        CHECKF(d->type == want, "--%s: type %d, kohya's is %d", name, d->type, want);
        if (cJSON_IsNull(def) || d->type == OPT_FLAG || d->type == OPT_LIST) {
            CHECKF(d->default_text == NULL, "--%s: default should be none", name);
            if (d->type == OPT_INT || d->type == OPT_FLOAT)
                CHECKF(d->has_offset != TRAIN_OPTION_NO_HAS, "--%s: None needs a has_ flag", name);
        } else if (cJSON_IsString(def)) {
            CHECKF(d->default_text && strcmp(d->default_text, def->valuestring) == 0,
                   "--%s: default '%s', kohya '%s'", name, d->default_text ? d->default_text : "",
                   def->valuestring);
        } else if (cJSON_IsNumber(def)) {
            CHECKF(d->default_text && strtod(d->default_text, NULL) == def->valuedouble,
                   "--%s: default %s, kohya %g", name, d->default_text ? d->default_text : "none",
                   def->valuedouble);
        }
        if (d->type == OPT_STRING && cJSON_IsArray(choices)) {
            int n = 0;
            const cJSON *c;
            cJSON_ArrayForEach(c, choices) {
                if (cJSON_IsNull(c))
                    continue;
                CHECKF(d->choices && d->choices[n] && strcmp(d->choices[n], c->valuestring) == 0,
                       "--%s: choice %d differs", name, n);
                if (!d->choices || !d->choices[n])
                    break;
                n++;
            }
            CHECKF(d->choices && !d->choices[n], "--%s: extra choices", name);
        } else if (d->type == OPT_STRING) {
            CHECKF(d->choices == NULL, "--%s: kohya has no choices", name);
        }
    }
    cJSON_Delete(root);
}

/* the minimum a valid run needs */
static const char *const base_args[] = {"train",
                                        "--pretrained_model_name_or_path",
                                        "model.safetensors",
                                        "--token_string",
                                        "tok",
                                        "--train_data_dir",
                                        "img",
                                        "--output_dir",
                                        "out"};
#define BASE_COUNT ((int)(sizeof base_args / sizeof *base_args))

static int parse_with(TrainOptions *o, const char *const *extra, int n, Error *err) {
    char *argv[64];
    int argc = 0;
    for (int i = 0; i < BASE_COUNT; i++)
        argv[argc++] = (char *)base_args[i];
    for (int i = 0; i < n && argc < 64; i++)
        argv[argc++] = (char *)extra[i];
    bool help = false;
    train_options_init(o);
    if (train_options_parse(o, argc, argv, &help, err) != 0)
        return -1;
    return train_options_finish(o, err);
}

static void test_defaults_pass(void) {
    TrainOptions o;
    Error err = {0};
    CHECK_OK(parse_with(&o, NULL, 0, &err), &err);
    CHECK(o.optimizer.kind == OPTIMIZER_ADAMW && o.optimizer.weight_decay == 0.01);
    CHECK(strcmp(o.output_name, "tok") == 0); /* kohya's TI: output_name defaults to the token */
    CHECK(o.noise.max_timestep == NOISE_SCHEDULE_STEPS && o.loss.loss_type == LOSS_L2);
    CHECK(!o.warmup.is_ratio && o.warmup.value == 0);
    train_options_free(&o);
}

/* Every option given a legal value, alternately as --opt=value and --opt value. */
static void test_every_option_parses(void) {
    char empty[600];
    snprintf(empty, sizeof empty, "%s/empty.toml", test_tmp_dir("test_train_options_all"));
    CHECK(test_write_file(empty, "", 0) == 0);
    for (int i = 0; i < train_option_count; i++) {
        const TrainOptionDef *d = &train_option_defs[i];
        char eq[800];
        const char *value = d->choices ? d->choices[0] : "7";
        if (strcmp(d->name, "config_file") == 0)
            value = empty;
        if (d->type == OPT_FLOAT)
            value = "0.25";
        if (strcmp(d->name, "max_token_length") == 0)
            value = "150";
        if (strcmp(d->name, "zero_stage") == 0)
            value = "1";
        char *argv[6] = {"train", NULL, NULL, NULL, NULL, NULL};
        int argc = 2;
        snprintf(eq, sizeof eq, "--%s", d->name);
        argv[1] = eq;
        if (d->type == OPT_LIST) {
            argv[2] = "a=1";
            argv[3] = "b=(1,2)";
            argc = 4;
        } else if (d->type != OPT_FLAG) {
            if (i % 2) {
                snprintf(eq, sizeof eq, "--%s=%s", d->name, value);
            } else {
                argv[2] = (char *)value;
                argc = 3;
            }
        }
        TrainOptions o;
        Error err = {0};
        bool help = false;
        train_options_init(&o);
        CHECK_OK(train_options_parse(&o, argc, argv, &help, &err), &err);
        CHECKF(o.given[i] && o.from_cli[i], "--%s not marked given", d->name);
        const void *v = (const char *)&o + d->offset;
        switch (d->type) {
        case OPT_FLAG:
            CHECKF(*(const bool *)v, "--%s", d->name);
            break;
        case OPT_INT:
            CHECKF(*(const long *)v == strtol(value, NULL, 10), "--%s", d->name);
            break;
        case OPT_FLOAT:
            CHECKF(*(const double *)v == 0.25, "--%s", d->name);
            break;
        case OPT_STRING:
            CHECKF(strcmp(*(const char *const *)v, value) == 0, "--%s", d->name);
            break;
        case OPT_LIST:
            CHECKF(((const StringList *)v)->count == 2, "--%s", d->name);
            break;
        }
        if (d->has_offset != TRAIN_OPTION_NO_HAS)
            CHECKF(*(const bool *)((const char *)&o + d->has_offset), "--%s: has_ not set",
                   d->name);
        CHECK(train_option_differs(&o, d) || d->type == OPT_STRING);
        train_options_free(&o);
    }
}

static void test_bad_values(void) {
    struct {
        const char *args[4];
        int n;
        const char *needle;
    } cases[] = {
        {{"--max_train_steps=abc"}, 1, "--max_train_steps expects an integer"},
        {{"--learning_rate", "fast"}, 2, "--learning_rate expects a number"},
        {{"--loss_type", "l3"}, 2, "'l3' is not one of"},
        {{"--no_such_option"}, 1, "unknown option '--no_such_option'"},
        {{"--v2=1"}, 1, "is a flag"},
        {{"--max_token_length", "100"}, 2, "--max_token_length: 100"},
        {{"--face_crop_aug_range", "2.0,4.0"},
         2,
         "--face_crop_aug_range is not supported yet by sdti"},
        {{"--full_bf16"}, 1, "--full_bf16 is not supported yet"},
        {{"--huggingface_repo_id", "a/b"}, 2, "--huggingface_repo_id is not supported yet"},
        {{"--optimizer_type", "PagedAdamW8bit"}, 2, "PagedAdamW8bit is not supported"},
        {{"--use_8bit_adam", "--optimizer_type", "Lion"}, 3, "--use_8bit_adam and"},
        {{"--optimizer_type", "Prodigy"}, 2, "--optimizer_type Prodigy is not supported yet"},
        {{"--log_with", "wandb"}, 2, "--log_with wandb is not supported yet"},
        {{"--adaptive_noise_scale", "0.1"}, 2, "adaptive_noise_scale requires noise_offset"},
        {{"--scale_v_pred_loss_like_noise_pred"}, 1, "only with v_parameterization"},
        {{"--v_pred_like_loss", "0.2", "--v_parameterization"}, 3, "cannot be enabled with"},
        {{"--resolution", "512x512"}, 2, "--resolution: '512x512'"},
        {{"--resolution", "1,2,3"}, 2, "--resolution"},
        {{"--bucket_reso_steps", "32"}, 2, "divisible by 64"},
        {{"--cache_latents", "--color_aug"}, 2, "color_aug or random_crop"},
        {{"--max_timestep", "1001"}, 2, "at most 1000"},
        {{"--min_timestep", "1000"}, 2, "outside 0..999"},
        {{"--num_vectors_per_token", "0"}, 2, "--num_vectors_per_token must be at least 1"},
        {{"--lr_scheduler", "constant", "--lr_warmup_steps", "10"}, 4, "does not require"},
        {{"--lr_warmup_steps", "1.5"}, 2, "not an int or float"},
        {{"--lr_scheduler", "cosine_annealing"}, 2, "'cosine_annealing'"},
        {{"--optimizer_args", "betas=0.9"}, 2, "two numbers"},
        {{"--fused_backward_pass"}, 1, "only works with optimizer_type Adafactor"},
        {{"--use_8bit_adam", "--use_lion_optimizer"}, 2, "are both given"},
        {{"--loss_type", "huber", "--huber_c", "0"}, 4, "--huber_c must be above 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        TrainOptions o;
        Error err = {0};
        CHECK_FAILS_WITH(parse_with(&o, cases[i].args, cases[i].n, &err), &err, cases[i].needle);
        train_options_free(&o);
    }
    /* required options */
    const char *const missing[][2] = {{"pretrained_model_name_or_path", "is required"},
                                      {"token_string", "--token_string is required"},
                                      {"output_dir", "--output_dir is required"}};
    for (int m = 0; m < 3; m++) {
        char *argv[16];
        int argc = 0;
        for (int i = 0; i < BASE_COUNT; i++) {
            if (i > 0 && strcmp(base_args[i] + 2, missing[m][0]) == 0) {
                i++;
                continue;
            }
            argv[argc++] = (char *)base_args[i];
        }
        TrainOptions o;
        Error err = {0};
        bool help;
        train_options_init(&o);
        CHECK_OK(train_options_parse(&o, argc, argv, &help, &err), &err);
        CHECK_FAILS_WITH(train_options_finish(&o, &err), &err, missing[m][1]);
        train_options_free(&o);
    }
}

static void test_kohya_adjustments(void) {
    TrainOptions o;
    Error err = {0};
    const char *a[] = {"--cache_latents_to_disk", "--caption_extention", ".txt",
                       "--sample_every_n_steps", "0"};
    CHECK_OK(parse_with(&o, a, 5, &err), &err);
    CHECK(o.cache_latents);                          /* implied by _to_disk */
    CHECK(strcmp(o.caption_extension, ".txt") == 0); /* the old spelling wins */
    CHECK(!o.has_sample_every_n_steps);              /* <= 0 turns it off */
    train_options_free(&o);

    const char *b[] = {"--optimizer_type", "adafactor", "--lr_warmup_steps=5%",
                       "--lr_scheduler",   "linear",    "--resolution",
                       "512,768"};
    CHECK_FAILS_WITH(parse_with(&o, b, 7, &err), &err, "adafactor does not require");
    train_options_free(&o);
    const char *c[] = {"--optimizer_type",
                       "adafactor",
                       "--optimizer_args",
                       "relative_step=False",
                       "--lr_warmup_steps=5%",
                       "--lr_scheduler",
                       "linear",
                       "--resolution",
                       "512,768",
                       "--noise_offset",
                       "0.1",
                       "--min_snr_gamma",
                       "5"};
    CHECK_OK(parse_with(&o, c, 13, &err), &err);
    CHECK(o.optimizer.kind == OPTIMIZER_ADAFACTOR && !o.optimizer.relative_step);
    CHECK(o.warmup.is_ratio && fabs(o.warmup.value - 0.05) < 1e-15);
    CHECK(o.resolution_width == 512 && o.resolution_height == 768);
    CHECK(o.noise.noise_offset == 0.1 && o.loss.min_snr_gamma == 5.0);
    LrSchedulerSettings st;
    LrScheduler s;
    train_options_lr_settings(&o, 200, &st);
    CHECK_OK(lr_scheduler_resolve(&s, &st, &err), &err);
    CHECK(s.kind == LR_LINEAR && s.warmup_steps == 10);
    train_options_free(&o);
}

static void test_config_file(void) {
    const char *dir = test_tmp_dir("test_train_options");
    char path[600], stem[512];
    snprintf(stem, sizeof stem, "%s/run", dir);
    snprintf(path, sizeof path, "%s.toml", stem);
    const char *toml = "learning_rate = 5e-4\n"
                       "max_train_steps = 300\n"
                       "unknown_key = 1\n"
                       "[model]\n"
                       "pretrained_model_name_or_path = \"from-file.safetensors\"\n"
                       "v2 = true\n"
                       "[training]\n"
                       "token_string = \"filetok\"\n"
                       "train_data_dir = \"img\"\n"
                       "output_dir = \"out\"\n"
                       "optimizer_args = [\"weight_decay=0.1\", \"betas=(0.9,0.99)\"]\n"
                       "lr_scheduler = \"cosine\"\n"
                       "lr_warmup_steps = 0.1\n"
                       "noise_offset = 0\n"
                       "[later]\n"
                       "max_train_steps = 400\n";
    CHECK(test_write_file(path, toml, strlen(toml)) == 0);
    char cfg_arg[600];
    snprintf(cfg_arg, sizeof cfg_arg, "--config_file=%s", stem); /* ".toml" appended */
    char *argv[] = {"train", cfg_arg, "--learning_rate", "1e-3", "--token_string", "clitok"};
    TrainOptions o;
    Error err = {0};
    bool help;
    train_options_init(&o);
    CHECK_OK(train_options_parse(&o, 6, argv, &help, &err), &err);
    CHECK_OK(train_options_finish(&o, &err), &err);
    CHECK(o.learning_rate == 1e-3);               /* the command line wins */
    CHECK(strcmp(o.token_string, "clitok") == 0); /* over the file's value too */
    CHECK(o.max_train_steps == 400);              /* sections flattened, later wins */
    CHECK(o.v2);                                  /* a flag from the file */
    CHECK(strcmp(o.pretrained_model_name_or_path, "from-file.safetensors") == 0);
    CHECK(o.optimizer_args.count == 2 && o.optimizer.weight_decay == 0.1 &&
          o.optimizer.beta2 == 0.99);
    CHECK(o.warmup.is_ratio && o.warmup.value == 0.1); /* a TOML float is a ratio */
    CHECK(o.has_noise_offset && o.noise.noise_offset == 0.0);
    CHECK(o.given[train_option_find("lr_scheduler") - train_option_defs]);
    CHECK(!o.from_cli[train_option_find("lr_scheduler") - train_option_defs]);
    train_options_free(&o);

    /* a wrong type names file, line and column */
    const char *bad = "[x]\nmax_train_steps = \"many\"\n";
    CHECK(test_write_file(path, bad, strlen(bad)) == 0);
    train_options_init(&o);
    CHECK_FAILS_WITH(train_options_parse(&o, 2, argv, &help, &err), &err, "run.toml:2:");
    CHECK(strstr(err.message, "--max_train_steps expects an integer") != NULL);
    train_options_free(&o);
    const char *bad_choice = "loss_type = \"l5\"\n";
    CHECK(test_write_file(path, bad_choice, strlen(bad_choice)) == 0);
    train_options_init(&o);
    CHECK_FAILS_WITH(train_options_parse(&o, 2, argv, &help, &err), &err, "'l5'");
    train_options_free(&o);
    const char *bad_toml = "learning_rate = \n";
    CHECK(test_write_file(path, bad_toml, strlen(bad_toml)) == 0);
    train_options_init(&o);
    CHECK_FAILS_WITH(train_options_parse(&o, 2, argv, &help, &err), &err, "--config_file");
    train_options_free(&o);
    char *missing[] = {"train", "--config_file", "/nonexistent/x"};
    train_options_init(&o);
    CHECK_FAILS_WITH(train_options_parse(&o, 3, missing, &help, &err), &err, "x.toml");
    train_options_free(&o);

    /* --output_config writes the non-default options; they read back the same */
    char out_stem[512], out_arg[600];
    snprintf(out_stem, sizeof out_stem, "%s/written", dir);
    snprintf(out_arg, sizeof out_arg, "--config_file=%s", out_stem);
    char *wargv[] = {"train",
                     out_arg,
                     "--output_config",
                     "--learning_rate",
                     "0.5",
                     "--caption_prefix",
                     "a \"quoted\" \\ prefix",
                     "--v2",
                     "--optimizer_args",
                     "weight_decay=0.2",
                     "--max_train_steps",
                     "12"};
    train_options_init(&o);
    CHECK_OK(train_options_parse(&o, 12, wargv, &help, &err), &err);
    CHECK_OK(train_options_write_config(&o, &err), &err);
    CHECK_FAILS_WITH(train_options_write_config(&o, &err), &err, "cannot create"); /* exists */
    train_options_free(&o);
    char *rargv[] = {"train", out_arg};
    TrainOptions r;
    train_options_init(&r);
    CHECK_OK(train_options_parse(&r, 2, rargv, &help, &err), &err);
    CHECK(r.learning_rate == 0.5 && r.v2 && r.max_train_steps == 12);
    CHECK(r.caption_prefix && strcmp(r.caption_prefix, "a \"quoted\" \\ prefix") == 0);
    CHECK(r.optimizer_args.count == 1 &&
          strcmp(r.optimizer_args.items[0], "weight_decay=0.2") == 0);
    CHECK(!r.given[train_option_find("output_config") - train_option_defs]);
    train_options_free(&r);
}

static void test_docs_list_every_option(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/../../docs/options.md", SDTI_FIXTURES);
    char *doc = read_text(path);
    CHECKF(doc != NULL, "cannot read %s", path);
    if (!doc)
        return;
    for (int i = 0; i < train_option_count; i++) {
        char needle[96];
        snprintf(needle, sizeof needle, "| `--%s` |", train_option_defs[i].name);
        CHECKF(strstr(doc, needle) != NULL, "docs/options.md lacks --%s",
               train_option_defs[i].name);
    }
    free(doc);
}

static void test_binary(void) {
    const char *bin = getenv("SDTI_BIN");
    if (!bin)
        return;
    char cmd[1024];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s train --help", bin);
    CHECK(test_run(cmd, &out) == 0 && out && strstr(out, "--lr_scheduler_num_cycles"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --token_string x --max_train_steps=abc", bin);
    CHECK(test_run(cmd, &out) == 1 && out && strstr(out, "expects an integer"));
    free(out);
    snprintf(cmd, sizeof cmd,
             "%s train --pretrained_model_name_or_path m --token_string t --train_data_dir d "
             "--output_dir o",
             bin);
    /* valid options reach the trainer, which fails on the missing model */
    CHECK(test_run(cmd, &out) == 1 && out && strstr(out, "m: no such file or folder"));
    free(out);
}

int main(void) {
    test_table_matches_kohya();
    test_defaults_pass();
    test_every_option_parses();
    test_bad_values();
    test_kohya_adjustments();
    test_config_file();
    test_docs_list_every_option();
    test_binary();
    return test_finish();
}
