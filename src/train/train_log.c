/* The --logging_dir log: run folder, TensorBoard events, CSV, loss curve. See train_log.h. */
#define _POSIX_C_SOURCE 200809L /* localtime_r, mkdir */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/file_util.h"
#include "base/log.h"
#include "formats/toml.h"
#include "train/loss_plot.h"
#include "train/train_log.h"

int train_log_read_tracker_config(const char *path, TrainLogSettings *s, Error *err) {
    TomlValue *root = NULL;
    if (toml_parse_file(path, &root, err) != 0)
        return error_prefix(err, "--log_tracker_config: ");
    int rc = 0;
    for (size_t i = 0; i < root->entry_count && rc == 0; i++) {
        const TomlEntry *e = &root->entries[i];
        if (strcmp(e->key, "tensorboard") != 0)
            log_info("--log_tracker_config %s: [%s] is for a tracker this run does not use "
                     "(sdti logs to TensorBoard only); not read",
                     path, e->key);
    }
    const TomlValue *tb = NULL;
    bool found = false;
    if (toml_get_table(root, "tensorboard", &tb, &found, err) != 0)
        rc = -1;
    for (size_t i = 0; rc == 0 && found && i < tb->entry_count; i++) {
        const TomlEntry *e = &tb->entries[i];
        if (strcmp(e->key, "filename_suffix") == 0) {
            if (e->value->kind != TOML_STRING)
                rc = toml_value_error(e->value, err, "expected a string, found %s",
                                      toml_kind_name(e->value->kind));
            else if (e->value->str_len >= sizeof s->filename_suffix || strchr(e->value->str, '/'))
                rc = toml_value_error(e->value, err,
                                      "the event file name suffix must be shorter than %zu "
                                      "bytes and hold no '/'",
                                      sizeof s->filename_suffix);
            else
                snprintf(s->filename_suffix, sizeof s->filename_suffix, "%s", e->value->str);
        } else if (strcmp(e->key, "max_queue") == 0 || strcmp(e->key, "flush_secs") == 0 ||
                   strcmp(e->key, "comment") == 0) {
            log_info("--log_tracker_config %s: tensorboard.%s changes nothing in sdti (every row "
                     "is flushed; the folder is named by --logging_dir)",
                     path, e->key);
        } else if (strcmp(e->key, "purge_step") == 0) {
            rc = toml_value_error(e->value, err,
                                  "purge_step is not supported by sdti (each run writes a new "
                                  "folder, so there is nothing to purge)");
        } else {
            rc =
                toml_value_error(e->value, err,
                                 "not an argument of TensorBoard's SummaryWriter (filename_suffix, "
                                 "max_queue, flush_secs, comment, purge_step)");
        }
    }
    toml_free(root);
    return rc;
}

/* <logging_dir>/<prefix><YYYYmmddHHMMSS>, made new: "-1", "-2", ... when it exists. */
static int make_run_dir(TrainLog *l, const TrainLogSettings *s, double wall_time, Error *err) {
    time_t t = (time_t)floor(wall_time);
    struct tm tm;
    char stamp[32];
    if (!localtime_r(&t, &tm) || strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm) == 0)
        return error_set(err, "--logging_dir: the clock gives no local time");
    const char *prefix = s->prefix ? s->prefix : "";
    size_t size = strlen(s->logging_dir) + strlen(prefix) + sizeof stamp + 16;
    l->run_dir = malloc(size);
    if (!l->run_dir)
        return error_set(err, "out of memory");
    snprintf(l->run_dir, size, "%s/%s%s", s->logging_dir, prefix, stamp);
    /* the folders above the run folder (a --log_prefix may hold a '/' too) */
    char *slash = strrchr(l->run_dir, '/');
    *slash = '\0';
    int rc = file_make_dirs(l->run_dir, err);
    *slash = '/';
    if (rc != 0)
        return error_prefix(err, "--logging_dir: ");
    for (int n = 1; n <= 1000; n++) {
        if (mkdir(l->run_dir, 0777) == 0)
            return 0;
        if (errno != EEXIST)
            return error_set(err, "--logging_dir: cannot create the folder %s: %s", l->run_dir,
                             strerror(errno));
        snprintf(l->run_dir, size, "%s/%s%s-%d", s->logging_dir, prefix, stamp, n);
    }
    return error_set(err, "--logging_dir: %s/%s%s-* all exist", s->logging_dir, prefix, stamp);
}

int train_log_open(TrainLog *l, const TrainLogSettings *s, double wall_time, Error *err) {
    memset(l, 0, sizeof *l);
    l->start = wall_time;
    if (!s->logging_dir || !*s->logging_dir)
        return error_set(err, "--logging_dir is empty");
    if (make_run_dir(l, s, wall_time, err) != 0)
        goto fail;
    const char *tracker = s->tracker_name ? s->tracker_name : "textual_inversion";
    char *events_dir = path_join(l->run_dir, tracker);
    l->csv_path = path_join(l->run_dir, "loss.csv");
    l->curve_path = path_join(l->run_dir, "loss_curve.png");
    if (!events_dir || !l->csv_path || !l->curve_path) {
        free(events_dir);
        error_set(err, "out of memory");
        goto fail;
    }
    int rc = file_make_dirs(events_dir, err) != 0 ? error_prefix(err, "--logging_dir: ") : 0;
    rc = rc ? rc : tb_event_writer_open(&l->events, events_dir, s->filename_suffix, wall_time, err);
    free(events_dir);
    if (rc != 0)
        goto fail;
    l->csv = fopen(l->csv_path, "w");
    if (!l->csv || fputs("step,epoch,loss,loss_avg,lr,time\n", l->csv) < 0 || fflush(l->csv) != 0) {
        error_set(err, "%s: cannot write: %s", l->csv_path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    train_log_close(l);
    return -1;
}

static double wall_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int train_log_step(TrainLog *l, int64_t step, int epoch, double loss, double loss_avg, double lr,
                   Error *err) {
    double now = wall_clock();
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        int64_t *steps = realloc(l->steps, sizeof *steps * cap);
        if (steps)
            l->steps = steps;
        double *losses = realloc(l->losses, sizeof *losses * cap);
        if (losses)
            l->losses = losses;
        if (!steps || !losses)
            return error_set(err, "out of memory");
        l->cap = cap;
    }
    l->steps[l->count] = step;
    l->losses[l->count++] = loss;
    if (tb_event_writer_scalar(&l->events, now, step, "loss", (float)loss, err) != 0 ||
        tb_event_writer_scalar(&l->events, now, step, "lr", (float)lr, err) != 0)
        return -1;
    /* %.9g: a float32 loss and lr read back exactly */
    if (fprintf(l->csv, "%lld,%d,%.9g,%.9g,%.9g,%.3f\n", (long long)step, epoch, loss, loss_avg, lr,
                now - l->start) < 0 ||
        fflush(l->csv) != 0)
        return error_set(err, "%s: write failed: %s", l->csv_path, strerror(errno));
    return 0;
}

int train_log_epoch(TrainLog *l, int epoch, double loss, Error *err) {
    return tb_event_writer_scalar(&l->events, wall_clock(), epoch, "loss/epoch", (float)loss, err);
}

int train_log_write_curve(TrainLog *l, Error *err) {
    return loss_plot_write_png(l->curve_path, l->steps, l->losses, l->count, err);
}

void train_log_close(TrainLog *l) {
    tb_event_writer_close(&l->events);
    if (l->csv)
        fclose(l->csv);
    free(l->run_dir);
    free(l->csv_path);
    free(l->curve_path);
    free(l->steps);
    free(l->losses);
    memset(l, 0, sizeof *l);
}
