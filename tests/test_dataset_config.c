// labels: unit
/* kohya's dataset .toml (config_util.py, ConfigSanitizer for TI: DreamBooth + fine-tuning,
 * no dropout): a full config resolves every value through subset -> dataset -> general ->
 * command line -> default exactly as BlueprintGenerator.generate_params_by_fallbacks does
 * (the expected values follow from kohya's rules, written next to each check); a table of
 * bad configs each fails with the file, line and key in the message; the folder layout
 * (<repeats>_<class tokens>) and --in_json make the same structures. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"
#include "train/dataset_config.h"

static void test_good(void) {
    Error err = {{0}};
    DatasetArgs args;
    dataset_args_init(&args);
    args.prior_loss_weight = 0.5;
    args.flip_aug = true; /* --flip_aug on the command line reaches every subset */
    const char *text = "[general]\n"
                       "enable_bucket = true\n"
                       "shuffle_caption = true\n"
                       "caption_extension = \".txt\"\n"
                       "keep_tokens = 1\n"
                       "min_bucket_reso = 320\n"
                       "\n"
                       "[[datasets]]\n"
                       "resolution = [768, 512]\n"
                       "batch_size = 4\n"
                       "keep_tokens = 2\n"
                       "\n"
                       "  [[datasets.subsets]]\n"
                       "  image_dir = \"img\"\n"
                       "  num_repeats = 10\n"
                       "  class_tokens = \"mychar\"\n"
                       "  keep_tokens = 3\n"
                       "  shuffle_caption = false\n"
                       "\n"
                       "  [[datasets.subsets]]\n"
                       "  image_dir = \"reg\"\n"
                       "  is_reg = true\n"
                       "  class_tokens = \"girl\"\n"
                       "  caption_separator = \";\"\n"
                       "  token_warmup_step = 0.5\n"
                       "  custom_attributes = { anything = 1 }\n"
                       "\n"
                       "[[datasets]]\n"
                       "resolution = 512\n"
                       "  [[datasets.subsets]]\n"
                       "  metadata_file = \"meta.json\"\n"
                       "  image_dir = \"ft\"\n";
    DatasetGroupConfig cfg;
    CHECK_OK(dataset_config_parse("good.toml", text, strlen(text), &args, &cfg, &err), &err);
    CHECK(cfg.dataset_count == 2);
    if (cfg.dataset_count != 2) {
        dataset_config_free(&cfg);
        return;
    }
    DatasetConfig *d = &cfg.datasets[0];
    CHECK(d->is_dreambooth && d->subset_count == 2);
    CHECK(d->resolution[0] == 768 && d->resolution[1] == 512);
    CHECK(d->batch_size == 4 && d->enable_bucket); /* dataset, general */
    CHECK(d->min_bucket_reso == 320);              /* general */
    CHECK(d->max_bucket_reso == 1024);             /* argparse default */
    CHECK(d->bucket_reso_steps == 64);
    CHECK(d->prior_loss_weight == 0.5); /* only from the command line */
    SubsetConfig *s0 = &d->subsets[0], *s1 = &d->subsets[1];
    CHECK(!strcmp(s0->image_dir, "img") && s0->num_repeats == 10 && !s0->is_reg);
    CHECK(s0->keep_tokens == 3);                   /* subset beats dataset and general */
    CHECK(!s0->shuffle_caption);                   /* an explicit false is a value */
    CHECK(!strcmp(s0->caption_extension, ".txt")); /* general */
    CHECK(!strcmp(s0->caption_separator, ","));    /* argparse default */
    CHECK(s0->flip_aug);                           /* command line */
    CHECK(s0->secondary_separator == NULL && s0->caption_prefix == NULL);
    CHECK(!strcmp(s0->where, "good.toml:13"));
    CHECK(s1->is_reg && !strcmp(s1->class_tokens, "girl"));
    CHECK(s1->keep_tokens == 2); /* dataset beats general */
    CHECK(s1->shuffle_caption);  /* general */
    CHECK(s1->num_repeats == 1); /* --dataset_repeats default */
    CHECK(!strcmp(s1->caption_separator, ";") && s1->token_warmup_step == 0.5);
    CHECK(s1->token_warmup_min == 1);
    DatasetConfig *f = &cfg.datasets[1];
    CHECK(!f->is_dreambooth && f->subset_count == 1);
    CHECK(f->resolution[0] == 512 && f->resolution[1] == 512 && f->batch_size == 1);
    CHECK(!strcmp(f->subsets[0].metadata_file, "meta.json") &&
          !strcmp(f->subsets[0].image_dir, "ft"));
    dataset_config_free(&cfg);
}

typedef struct BadCase {
    const char *toml;
    const char *expect; /* substring of the message */
} BadCase;

#define DS  "[[datasets]]\nresolution = 512\n"
#define SUB "[[datasets.subsets]]\nimage_dir = \"img\"\n"

static const BadCase BAD[] = {
    /* caption dropout: refused as kohya's TI refuses it, at every level */
    {DS SUB "caption_dropout_rate = 0.1\n",
     "bad.toml:5:24: key 'datasets[0].subsets[0].caption_dropout_rate': unknown key: kohya's "
     "textual inversion has no caption dropout"},
    {"[general]\ncaption_dropout_every_n_epochs = 2\n" DS SUB,
     "bad.toml:2:34: key 'general.caption_dropout_every_n_epochs': unknown key"},
    {DS "caption_tag_dropout_rate = 0.2\n" SUB, "key 'datasets[0].caption_tag_dropout_rate'"},
    /* unknown keys and keys at the wrong level */
    {DS SUB "imagedir = \"x\"\n",
     "bad.toml:5:12: key 'datasets[0].subsets[0].imagedir': unknown key in a DreamBooth "
     "[[datasets.subsets]] table"},
    {"[general]\nimage_dir = \"x\"\n" DS SUB,
     "key 'general.image_dir': not allowed in [general]: this key belongs only in "
     "[[datasets.subsets]]"},
    {DS SUB "batch_size = 2\n",
     "key 'datasets[0].subsets[0].batch_size': not allowed in a DreamBooth [[datasets.subsets]] "
     "table: this key belongs only in [general] or [[datasets]]"},
    {DS "is_reg = true\n" SUB, "key 'datasets[0].is_reg': not allowed in [[datasets]]"},
    {"[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nmetadata_file = \"m.json\"\n"
     "caption_extension = \".txt\"\n",
     "key 'datasets[0].subsets[0].caption_extension': not allowed in a fine-tuning "
     "[[datasets.subsets]] table (one with metadata_file): this key belongs only with "
     "DreamBooth subsets"},
    {DS SUB "prior_loss_weight = 1.0\n",
     "key 'datasets[0].subsets[0].prior_loss_weight': unknown key: this is a command-line "
     "option (--prior_loss_weight)"},
    {DS SUB "conditioning_data_dir = \"c\"\n", "conditioning images"},
    {"[train]\nx = 1\n" DS SUB, "bad.toml:1:1: key 'train': unknown top-level key"},
    /* wrong types */
    {DS SUB "num_repeats = \"10\"\n",
     "bad.toml:5:15: key 'datasets[0].subsets[0].num_repeats': expected an integer, found a "
     "string"},
    {DS SUB "shuffle_caption = 1\n", "key 'datasets[0].subsets[0].shuffle_caption': expected "
                                     "true or false, found an integer"},
    {"[[datasets]]\nresolution = 512\nnetwork_multiplier = 1\n" SUB,
     "key 'datasets[0].network_multiplier': expected a float, found an integer (kohya's schema "
     "refuses it too: write 1.0)"},
    {"[[datasets]]\nresolution = \"512\"\n" SUB,
     "key 'datasets[0].resolution': expected a positive integer (512) or [width, height]"},
    {"[[datasets]]\nresolution = [512, 512, 3]\n" SUB, "key 'datasets[0].resolution'"},
    {DS SUB "face_crop_aug_range = [2, 4]\n",
     "key 'datasets[0].subsets[0].face_crop_aug_range': expected two floats"},
    {DS SUB "class_tokens = 5\n", "expected a string, found an integer"},
    {DS SUB "custom_attributes = 5\n", "expected a table"},
    /* structure */
    {"[datasets]\nresolution = 512\n", "expected an array of tables: write [[datasets]]"},
    {"[general]\nshuffle_caption = true\n", "bad.toml: no [[datasets]]"},
    {DS, "bad.toml:1:1: key 'datasets[0]': dataset has no [[datasets.subsets]]"},
    {DS "[[datasets.subsets]]\nnum_repeats = 2\n",
     "bad.toml:3:1: key 'datasets[0].subsets[0]': required key 'image_dir' is missing"},
    {DS SUB "[[datasets.subsets]]\nmetadata_file = \"m.json\"\n",
     "key 'datasets[0]': DreamBooth subsets (image_dir) and fine-tuning subsets (metadata_file) "
     "cannot be mixed"},
    /* values */
    {"[[datasets]]\n" SUB, "no resolution: set resolution in the dataset config or pass "
                           "--resolution"},
    {DS "enable_bucket = true\nbucket_reso_steps = 32\n" SUB,
     "bucket_reso_steps is 32; textual inversion needs a multiple of 64"},
    {DS "batch_size = 0\n" SUB, "batch_size must be at least 1"},
    {DS SUB "caption_separator = \"\"\n", "bad.toml:3: caption_separator is empty"},
    {DS SUB "resize_interpolation = \"fancy\"\n", "resize_interpolation 'fancy' is not one of"},
    {DS SUB "face_crop_aug_range = [2.0, 4.0]\n", "face_crop_aug_range is not supported"},
    {DS SUB "resize_interpolation = \"bicubic\"\n",
     "bad.toml:3: resize_interpolation 'bicubic' is not supported by sdti yet"},
    /* TOML syntax errors keep the parser's place */
    {DS SUB "num_repeats = \n", "bad.toml:5:15:"},
};

static void test_bad(void) {
    DatasetArgs args;
    dataset_args_init(&args);
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        Error err = {{0}};
        DatasetGroupConfig cfg;
        int rc =
            dataset_config_parse("bad.toml", BAD[i].toml, strlen(BAD[i].toml), &args, &cfg, &err);
        CHECKF(rc != 0 && strstr(err.message, BAD[i].expect),
               "case %zu: rc %d, message '%s', expected '%s'", i, rc, err.message, BAD[i].expect);
        if (rc == 0)
            dataset_config_free(&cfg);
    }
    Error err = {{0}};
    DatasetGroupConfig cfg;
    CHECK_FAILS_WITH(dataset_config_load("x.json", &args, &cfg, &err), &err,
                     "x.json: JSON dataset configs are not supported");
    CHECK_FAILS_WITH(dataset_config_load("/nonexistent/x.toml", &args, &cfg, &err), &err,
                     "/nonexistent/x.toml");
}

static void test_folders(void) {
    int r;
    const char *cls;
    CHECK(dataset_parse_folder_name("10_sks dog", &r, &cls) && r == 10 && !strcmp(cls, "sks dog"));
    CHECK(dataset_parse_folder_name("3_a_b", &r, &cls) && r == 3 && !strcmp(cls, "a_b"));
    CHECK(dataset_parse_folder_name("5", &r, &cls) && r == 5 && !strcmp(cls, ""));
    CHECK(!dataset_parse_folder_name("img_10", &r, &cls));
    CHECK(!dataset_parse_folder_name("_x", &r, &cls));

    const char *dir = test_tmp_dir("test_dataset_config");
    char p[2048], train[1024], reg[1024];
    snprintf(train, sizeof train, "%s/train", dir);
    snprintf(reg, sizeof reg, "%s/reg", dir);
    mkdir(train, 0755);
    mkdir(reg, 0755);
    const char *subdirs[] = {"train/5_mychar", "train/2_mychar_b", "train/notes", "train/0_skip",
                             "reg/1_girl"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, subdirs[i]);
        mkdir(p, 0755);
    }
    snprintf(p, sizeof p, "%s/train/7_file_not_dir", dir);
    test_write_file(p, "x", 1);

    Error err = {{0}};
    DatasetArgs args;
    dataset_args_init(&args);
    args.train_data_dir = train;
    args.reg_data_dir = reg;
    args.has_resolution = true;
    args.resolution[0] = args.resolution[1] = 512;
    args.caption_extension = ".txt";
    DatasetGroupConfig cfg;
    CHECK_OK(dataset_config_from_args(&args, &cfg, &err), &err);
    CHECK(cfg.dataset_count == 1 && cfg.datasets[0].is_dreambooth);
    if (cfg.dataset_count == 1 && cfg.datasets[0].subset_count == 3) {
        SubsetConfig *s = cfg.datasets[0].subsets;
        /* sorted: "2_mychar_b" before "5_mychar"; reg folders after train folders */
        CHECK(s[0].num_repeats == 2 && !strcmp(s[0].class_tokens, "mychar_b") && !s[0].is_reg);
        CHECK(s[1].num_repeats == 5 && !strcmp(s[1].class_tokens, "mychar"));
        CHECK(s[2].is_reg && !strcmp(s[2].class_tokens, "girl"));
        CHECK(!strcmp(s[1].caption_extension, ".txt"));
        snprintf(p, sizeof p, "%s/5_mychar", train);
        CHECK(!strcmp(s[1].image_dir, p));
    } else {
        CHECKF(0, "expected 3 subsets");
    }
    dataset_config_free(&cfg);

    args.in_json = "meta.json";
    CHECK_OK(dataset_config_from_args(&args, &cfg, &err), &err);
    CHECK(cfg.dataset_count == 1 && !cfg.datasets[0].is_dreambooth &&
          cfg.datasets[0].subset_count == 1 &&
          !strcmp(cfg.datasets[0].subsets[0].metadata_file, "meta.json"));
    dataset_config_free(&cfg);

    args.in_json = NULL;
    args.train_data_dir = reg;
    args.reg_data_dir = NULL;
    snprintf(p, sizeof p, "%s/empty", dir);
    mkdir(p, 0755);
    args.train_data_dir = p;
    CHECK_FAILS_WITH(dataset_config_from_args(&args, &cfg, &err), &err,
                     "no sub-folder named <repeats>_<class tokens>");
    args.train_data_dir = NULL;
    CHECK_FAILS_WITH(dataset_config_from_args(&args, &cfg, &err), &err,
                     "pass --dataset_config FILE.toml or --train_data_dir DIR");
    args.train_data_dir = train;
    args.has_resolution = false;
    CHECK_FAILS_WITH(dataset_config_from_args(&args, &cfg, &err), &err, "no resolution");
}

int main(void) {
    test_good();
    test_bad();
    test_folders();
    return test_finish();
}
