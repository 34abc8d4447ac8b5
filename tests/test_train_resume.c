// labels: cli
/* `sdti train --save_state` / `--resume` end to end on the tiny SD1 fixture model: a run
 * stopped after a state save and resumed must end with the same embedding file, byte for byte,
 * as the uninterrupted run (the issue asks for bit-identical resumption). The runs use every
 * random stream the loop has: VAE sampling per batch (torch's generator, no latent cache),
 * flip_aug and shuffle_caption (Python's random), the per-epoch reshuffles of the dataset and
 * of the DataLoader order, AdamW's moments, a warm-up schedule, 2 epochs of 4 batches.
 *   uninterrupted: 6 steps, --save_every_n_steps 3 --save_every_n_epochs 1 --save_state;
 *   resumed from its step-3 state (inside epoch 1) and from its epoch-1 state (a boundary);
 *   a run stopped by --max_train_steps 3 with --save_state_on_train_end, resumed to 6;
 *   Adafactor with gradient accumulation and cached latents, resumed inside an epoch;
 *   AdamW8bit (bitsandbytes' 8-bit block state, saved as its bytes), resumed inside an epoch.
 * Also: the state folders kohya's names give, no temporary folder left, --save_last_n_steps_state
 * removing the old state, and --resume of a folder without an sdti state refused. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "test_util.h"
#include "train_support.h"

#define MODEL TRAIN_SUPPORT_MODEL

static bool same_bytes(const char *a, const char *b) {
    char *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = false;
    if (fa && fb) {
        fseek(fa, 0, SEEK_END);
        fseek(fb, 0, SEEK_END);
        na = (size_t)ftell(fa);
        nb = (size_t)ftell(fb);
        rewind(fa);
        rewind(fb);
        da = malloc(na + 1);
        db = malloc(nb + 1);
        same = da && db && na == nb && fread(da, 1, na, fa) == na && fread(db, 1, nb, fb) == nb &&
               memcmp(da, db, na) == 0 && na > 0;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    free(da);
    free(db);
    return same;
}

/* the options every run shares; %s: data dir, output dir, extra */
static const char *BASE =
    "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string mytok "
    "--init_word cat --num_vectors_per_token 2 --learning_rate 5e-2 --flip_aug "
    "--shuffle_caption --lr_scheduler constant_with_warmup --lr_warmup_steps 2 --seed 5 "
    "--output_dir '%s' %s";

static void train_ok(const char *data, const char *out, const char *extra) {
    char args[8192];
    snprintf(args, sizeof args, BASE, data, out, extra);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train %s failed (%d): %s", extra, rc, log ? log : "");
    free(log);
}

int main(void) {
    if (!getenv("SDTI_BIN"))
        return 0;
    char tmp[512], data[1024], dir[1024], out[1024], extra[4096], a[1400], b[1400];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_resume"));
    snprintf(dir, sizeof dir, "%s/data/1_thing", tmp);
    train_support_make_images(dir, 4, "mytok, a red thing, on a table, photo");
    snprintf(data, sizeof data, "%s/data", tmp);

    /* the uninterrupted run */
    snprintf(out, sizeof out, "%s/full", tmp);
    train_ok(data, out,
             "--max_train_steps 6 --save_every_n_steps 3 --save_every_n_epochs 1 --save_state "
             "--output_name full");
    const char *expect_dirs[] = {"full-step00000003-state", "full-step00000006-state",
                                 "full-000001-state", "full-state"};
    for (size_t i = 0; i < sizeof expect_dirs / sizeof *expect_dirs; i++) {
        snprintf(a, sizeof a, "%s/%s/state.safetensors", out, expect_dirs[i]);
        CHECKF(train_support_exists(a), "%s missing", a);
        snprintf(a, sizeof a, "%s/%s/state.json", out, expect_dirs[i]);
        CHECKF(train_support_exists(a), "%s missing", a);
    }
    char full_pt[1400];
    snprintf(full_pt, sizeof full_pt, "%s/full.pt", out);
    CHECK(train_support_exists(full_pt));

    /* resumed inside epoch 1 (after step 3 of 4 batches) and at the epoch boundary */
    const char *from[] = {"full-step00000003-state", "full-000001-state"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(out, sizeof out, "%s/res%zu", tmp, i);
        snprintf(extra, sizeof extra,
                 "--max_train_steps 6 --output_name full --resume '%s/full/%s'", tmp, from[i]);
        train_ok(data, out, extra);
        snprintf(b, sizeof b, "%s/full.pt", out);
        CHECKF(same_bytes(full_pt, b), "resumed from %s: %s differs from %s", from[i], b, full_pt);
    }

    /* a run stopped at step 3 (its train-end state), then resumed to step 6 */
    snprintf(out, sizeof out, "%s/part", tmp);
    train_ok(data, out, "--max_train_steps 3 --save_state_on_train_end --output_name full");
    snprintf(a, sizeof a, "%s/full-state/state.safetensors", out);
    CHECKF(train_support_exists(a), "%s missing", a);
    snprintf(extra, sizeof extra, "--max_train_steps 6 --output_name full --resume '%s/full-state'",
             out);
    train_ok(data, out, extra);
    snprintf(b, sizeof b, "%s/full.pt", out);
    CHECKF(same_bytes(full_pt, b), "stopped and resumed: %s differs from %s", b, full_pt);

    /* Adafactor (kohya's whole matrix, relative step) with gradient accumulation over 2
     * batches and cached latents, resumed from its step-1 state (2 of the epoch's 4 batches done)
     */
    const char *ada = "--optimizer_type AdaFactor --gradient_accumulation_steps 2 "
                      "--cache_latents --max_train_steps 4 --output_name ada --lr_warmup_steps 0";
    snprintf(out, sizeof out, "%s/ada", tmp);
    snprintf(extra, sizeof extra, "%s --save_every_n_steps 1 --save_state", ada);
    train_ok(data, out, extra);
    char ada_pt[1400];
    snprintf(ada_pt, sizeof ada_pt, "%s/ada.pt", out);
    snprintf(out, sizeof out, "%s/ada-res", tmp);
    snprintf(extra, sizeof extra, "%s --resume '%s/ada/ada-step00000001-state'", ada, tmp);
    train_ok(data, out, extra);
    snprintf(b, sizeof b, "%s/ada.pt", out);
    CHECKF(same_bytes(ada_pt, b), "Adafactor resumed: %s differs from %s", b, ada_pt);

    /* AdamW8bit: the state holds bitsandbytes' bytes (kohya's whole matrix has >= 4096
     * elements, so the state is 8-bit even for 2 rows of the tiny model's width 8) */
    const char *q8 = "--optimizer_type AdamW8bit --optimizer_args weight_decay=0.1 "
                     "--max_train_steps 5 --output_name q8";
    snprintf(out, sizeof out, "%s/q8", tmp);
    snprintf(extra, sizeof extra, "%s --save_every_n_steps 2 --save_state", q8);
    train_ok(data, out, extra);
    char q8_pt[1400];
    snprintf(q8_pt, sizeof q8_pt, "%s/q8.pt", out);
    snprintf(a, sizeof a, "%s/q8-step00000002-state/state.safetensors", out);
    TensorSet st;
    tensor_set_init(&st);
    Error err = {0};
    CHECK_OK(safetensors_open(a, &st, &err), &err);
    const NamedTensor *s1 = tensor_set_find(&st, "optimizer.state1");
    const NamedTensor *m2 = tensor_set_find(&st, "optimizer.absmax2");
    CHECKF(s1 && s1->dtype == DTYPE_U8 && s1->nbytes == 2 * 8 && m2 && m2->nbytes == 4,
           "%s: no 8-bit optimizer state of 2 x 8 values in one block", a);
    tensor_set_free(&st);
    snprintf(out, sizeof out, "%s/q8-res", tmp);
    snprintf(extra, sizeof extra, "%s --resume '%s/q8/q8-step00000002-state'", q8, tmp);
    train_ok(data, out, extra);
    snprintf(b, sizeof b, "%s/q8.pt", out);
    CHECKF(same_bytes(q8_pt, b), "AdamW8bit resumed: %s differs from %s", b, q8_pt);

    /* --save_last_n_steps_state 1: at step 4 the state of step 2 goes (kohya's arithmetic);
     * no temporary folder is left behind; names from the default --output_name (the token string)
     */
    snprintf(out, sizeof out, "%s/keep", tmp);
    train_ok(data, out,
             "--max_train_steps 4 --save_every_n_steps 2 --save_state --save_last_n_steps_state 1");
    snprintf(a, sizeof a, "%s/mytok-step00000002-state", out);
    CHECKF(!train_support_exists(a), "%s kept", a);
    snprintf(a, sizeof a, "%s/mytok-step00000004-state/state.safetensors", out);
    CHECKF(train_support_exists(a), "%s missing", a);
    snprintf(a, sizeof a, "%s/mytok-state/state.safetensors", out);
    CHECKF(train_support_exists(a), "%s missing", a);
    snprintf(a, sizeof a, "ls '%s' | grep -c tmp", out);
    char *ls = NULL;
    test_run(a, &ls);
    CHECKF(ls && atoi(ls) == 0, "temporary folders left in %s: %s", out, ls ? ls : "");
    free(ls);

    /* a folder without an sdti state */
    snprintf(dir, sizeof dir, "%s/not-a-state", tmp);
    mkdir(dir, 0777);
    snprintf(extra, sizeof extra, "--max_train_steps 6 --resume '%s'", dir);
    char args[8192];
    snprintf(args, sizeof args, BASE, data, out, extra);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc != 0 && log && strstr(log, "not a state sdti saved"), "rc %d: %s", rc,
           log ? log : "");
    free(log);
    return test_finish();
}
