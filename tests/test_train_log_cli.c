// labels: cli
/* `sdti train --logging_dir` on the tiny SD1 fixture model: 3 optimizer steps, then the run
 * folder kohya's accelerate tracker makes (<logging_dir>/<prefix><timestamp>/<tracker name>/
 * events.out.tfevents.*), loss.csv with one row per micro-batch and kohya's global steps (with
 * gradient accumulation the first micro-batch logs at step 0), the loss-curve PNG, an event
 * file whose every record has valid CRCs (the version event, "loss" and "lr" per micro-batch,
 * "loss/epoch" per epoch), --log_config's hparams file, and --log_with / --log_tracker_config
 * refusals.
 * tools/reference/check_tensorboard_log.py reads such a folder with TensorBoard's own reader. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "test_util.h"
#include "train/tb_events.h"
#include "train_support.h"

/* The one entry of dir whose name starts with prefix (malloc'd path), else NULL. */
static char *only_entry(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    char *found = NULL;
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            free(found);
            found = path_join(dir, e->d_name);
            count++;
        }
    if (d)
        closedir(d);
    if (count == 1)
        return found;
    free(found);
    return NULL;
}

static bool find_bytes(const char *hay, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; k <= n && i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

static uint64_t get_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Records in an event file with both CRCs valid; -1 when one is broken or cut. */
static int count_records(const char *path) {
    char *data = NULL;
    size_t size = 0, pos = 0;
    Error err = {{0}};
    if (file_read_all(path, &data, &size, &err) != 0)
        return -1;
    const uint8_t *p = (const uint8_t *)data;
    int records = 0;
    while (pos < size) {
        if (pos + 12 > size || get_le(p + pos + 8, 4) != tb_masked_crc32c(p + pos, 8)) {
            records = -1;
            break;
        }
        uint64_t len = get_le(p + pos, 8);
        if (pos + 16 + len > size ||
            get_le(p + pos + 12 + len, 4) != tb_masked_crc32c(p + pos + 12, len)) {
            records = -1;
            break;
        }
        pos += 16 + len;
        records++;
    }
    free(data);
    return records;
}

/* The CSV's step column, rows after the header; returns the row count. */
static int csv_steps(const char *path, long *steps, int cap) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    int rows = 0;
    bool header =
        fgets(line, sizeof line, f) && strcmp(line, "step,epoch,loss,loss_avg,lr,time\n") == 0;
    while (header && fgets(line, sizeof line, f)) {
        if (rows < cap)
            steps[rows] = strtol(line, NULL, 10);
        rows++;
    }
    fclose(f);
    return header ? rows : -1;
}

/* One run with --logging_dir; checks the folder and returns the CSV's steps. */
static int run_logged(const char *tmp, const char *images, const char *name, const char *extra,
                      int want_records, long *steps, int cap) {
    char logs[1024], out[1024], args[8192];
    snprintf(logs, sizeof logs, "%s/logs-%s", tmp, name);
    snprintf(out, sizeof out, "%s/out-%s", tmp, name);
    snprintf(args, sizeof args,
             "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string mytok "
             "--init_word cat --max_train_steps 3 --learning_rate 1e-2 --output_dir '%s' "
             "--seed 1 --cache_latents --logging_dir '%s' --log_prefix %s- %s",
             images, out, logs, name, extra);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train --logging_dir failed (%d): %s", rc, log ? log : "");
    CHECKF(log && strstr(log, "the loss curve"), "no line about the loss curve: %s",
           log ? log : "");
    free(log);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s-", name);
    char *run = only_entry(logs, prefix);
    CHECKF(run != NULL, "not one %s<timestamp> folder in %s", prefix, logs);
    if (!run)
        return -1;
    char path[1400];
    snprintf(path, sizeof path, "%s/loss_curve.png", run);
    CHECKF(file_exists(path), "%s missing", path);
    snprintf(path, sizeof path, "%s/textual_inversion", run);
    char *events = only_entry(path, "events.out.tfevents.");
    CHECKF(events != NULL, "no event file in %s", path);
    if (events) {
        int records = count_records(events);
        CHECKF(records == want_records, "%s: %d records, want %d", events, records, want_records);
    }
    free(events);
    snprintf(path, sizeof path, "%s/loss.csv", run);
    int rows = csv_steps(path, steps, cap);
    printf("%s: %d CSV rows\n", run, rows);
    free(run);
    return rows;
}

int main(void) {
    if (!getenv("SDTI_BIN"))
        return 0;
    char tmp[512], root[1024], dir[1200];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_log_cli"));
    snprintf(root, sizeof root, "%s/train", tmp);
    snprintf(dir, sizeof dir, "%s/1_mytok", root);
    train_support_make_images(dir, 3, "a photo of mytok");

    /* 3 batches per epoch, 3 steps: one epoch; the version event, loss and lr per step,
     * loss/epoch once */
    long steps[16];
    int rows = run_logged(tmp, root, "plain", "", 1 + 3 * 2 + 1, steps, 16);
    CHECKF(rows == 3 && steps[0] == 1 && steps[1] == 2 && steps[2] == 3,
           "CSV: %d rows (want 3, steps 1 2 3)", rows);

    /* accumulation 2 over 3 batches: steps end at batches 2 and 3 (the epoch's last batch
     * syncs), so epoch 1 logs at steps 0, 1, 2 and epoch 2 at 2, 3 (kohya logs after the
     * update, at the global step it has then) */
    rows =
        run_logged(tmp, root, "accum", "--gradient_accumulation_steps 2", 1 + 5 * 2 + 2, steps, 16);
    CHECKF(rows == 5 && steps[0] == 0 && steps[1] == 1 && steps[2] == 2 && steps[3] == 2 &&
               steps[4] == 3,
           "CSV with accumulation: %d rows (want steps 0 1 2 2 3)", rows);

    /* --log_tracker_config: the [tensorboard] table's filename_suffix names the event file */
    char cfg[1200], logs[1200], args[8192];
    snprintf(cfg, sizeof cfg, "%s/tracker.toml", tmp);
    const char *text = "[tensorboard]\nfilename_suffix = \".mine\"\n";
    CHECK(test_write_file(cfg, text, strlen(text)) == 0);
    snprintf(logs, sizeof logs, "%s/logs-cfg", tmp);
    const char *base = "--train_data_dir '%s' --caption_extension .txt --resolution 64 "
                       "--token_string mytok --init_word cat --max_train_steps 1 "
                       "--output_dir '%s/out-cfg' --seed 1 %s";
    char extra[2600];
    snprintf(extra, sizeof extra,
             "--logging_dir '%s' --log_tracker_config '%s' --log_tracker_name tb", logs, cfg);
    snprintf(args, sizeof args, base, root, tmp, extra);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "--log_tracker_config run failed (%d): %s", rc, log ? log : "");
    free(log);
    char *run = only_entry(logs, "");
    char tb[1400];
    snprintf(tb, sizeof tb, "%s/tb", run ? run : "?");
    char *events = only_entry(tb, "events.out.tfevents.");
    CHECKF(events && path_has_suffix(events, ".0.mine"), "event file %s, want *.0.mine in %s",
           events ? events : "none", tb);
    free(events);
    free(run);

    /* --log_config: accelerate's add_hparams file in a time-named folder of the tracker
     * folder (4 records: version, experiment, session start, session end) holding kohya's
     * sanitized config: output_name defaults to the token string, resolution is a tuple,
     * lists are str(list), max_train_steps a number; no paths (they are filtered out) */
    snprintf(logs, sizeof logs, "%s/logs-config", tmp);
    snprintf(extra, sizeof extra,
             "--logging_dir '%s' --log_config --optimizer_args weight_decay=0.1", logs);
    snprintf(args, sizeof args, base, root, tmp, extra);
    log = NULL;
    rc = train_support_run(args, &log);
    CHECKF(rc == 0, "--log_config run failed (%d): %s", rc, log ? log : "");
    free(log);
    run = only_entry(logs, "");
    snprintf(tb, sizeof tb, "%s/textual_inversion", run ? run : "?");
    char *sub = only_entry(tb, "1");
    const char *subname = sub ? strrchr(sub, '/') + 1 : "";
    CHECKF(sub && strspn(subname, "0123456789.") == strlen(subname) && strchr(subname, '.'),
           "no time-named hparams folder in %s", tb);
    events = sub ? only_entry(sub, "events.out.tfevents.") : NULL;
    CHECKF(events && path_has_suffix(events, ".1") && count_records(events) == 4,
           "%s: want one event file *.1 with 4 records", sub ? sub : tb);
    char *data = NULL;
    size_t size = 0;
    Error ferr = {{0}};
    if (events && file_read_all(events, &data, &size, &ferr) == 0) {
        static const char max_steps[] = "\x0a\x0fmax_train_steps\x12\x09\x11\0\0\0\0\0\0\xf0\x3f";
        struct {
            const char *bytes;
            size_t n;
        } want[] = {
            {"_hparams_/experiment", 20},
            {"_hparams_/session_start_info", 28},
            {"_hparams_/session_end_info", 26},
            {"\x0a\x0boutput_name\x12\x07\x1a\x05mytok", 22},
            {"\x0a\x0aresolution\x12\x0a\x1a\x08(64, 64)", 22},
            {"\x0a\x0eoptimizer_args\x12\x16\x1a\x14['weight_decay=0.1']", 38},
            {max_steps, sizeof max_steps - 1},
        };
        for (size_t i = 0; i < sizeof want / sizeof *want; i++)
            CHECKF(find_bytes(data, size, want[i].bytes, want[i].n),
                   "%s: no hparams bytes for case %zu", events, i);
        const char *absent[] = {"train_data_dir", "output_dir",
                                "logging_dir",    "pretrained_model_name_or_path",
                                "replay",         tmp};
        for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
            CHECKF(!find_bytes(data, size, absent[i], strlen(absent[i])),
                   "%s: holds '%s' (filtered out by kohya)", events, absent[i]);
    }
    free(data);
    free(events);
    free(sub);
    free(run);

    /* kill -9 in the middle of a long run: the log up to there stays readable (every event
     * record whole with valid CRCs, every CSV row whole) */
    snprintf(logs, sizeof logs, "%s/logs-killed", tmp);
    char cmd[12000];
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive '%s' train --pretrained_model_name_or_path '%s' "
             "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string "
             "mytok --init_word cat --max_train_steps 100000 --output_dir '%s/out-killed' "
             "--seed 1 --cache_latents --logging_dir '%s' > '%s/killed.out' 2>&1 & pid=$!; "
             "for i in $(seq 600); do "
             "  n=$(cat '%s'/*/loss.csv 2>/dev/null | wc -l); [ \"$n\" -ge 4 ] && break; "
             "  sleep 0.1; done; kill -9 $pid; wait $pid; exit 0",
             getenv("SDTI_BIN"), test_fixture(TRAIN_SUPPORT_MODEL), root, tmp, logs, tmp, logs);
    CHECK(test_run(cmd, NULL) == 0);
    run = only_entry(logs, "");
    CHECKF(run != NULL, "no run folder in %s", logs);
    if (run) {
        char path[1400];
        snprintf(path, sizeof path, "%s/textual_inversion", run);
        events = only_entry(path, "events.out.tfevents.");
        int records = events ? count_records(events) : -1;
        snprintf(path, sizeof path, "%s/loss.csv", run);
        int csv_rows = csv_steps(path, steps, 16);
        printf("killed run: %d event records, %d CSV rows\n", records, csv_rows);
        /* the version event, then loss and lr per row (the kill may fall between them) */
        CHECKF(csv_rows >= 3 && records >= 1 + 2 * (csv_rows - 1),
               "after kill -9: %d event records, %d CSV rows", records, csv_rows);
        free(events);
        free(run);
    }

    struct {
        const char *extra, *needle;
    } cases[] = {
        {"--log_with wandb", "--log_with wandb is not supported yet"},
        {"--log_with all --logging_dir x", "--log_with all is not supported yet"},
        {"--log_with tensorboard", "logging_dir is required when log_with is tensorboard"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(args, sizeof args, base, root, tmp, cases[i].extra);
        rc = train_support_run(args, &log);
        CHECKF(rc != 0 && log && strstr(log, cases[i].needle), "'%s': rc %d, want '%s' in: %s",
               cases[i].extra, rc, cases[i].needle, log ? log : "");
        free(log);
    }
    return test_finish();
}
