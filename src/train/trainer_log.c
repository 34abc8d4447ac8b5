/* --logging_dir from the trainer. See trainer_log.h. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "base/log.h"
#include "train/tb_hparams.h"
#include "train/trainer_log.h"

/* --log_config: accelerate's store_init_configuration (tb_hparams.h) into the tracker folder,
 * with the max_train_steps kohya has by then (max_train_epochs overrides it). */
static int trainer_log_hparams(const Trainer *t, const TrainLog *l, Error *err) {
    const TrainOptions *o = t->o;
    int n = o->log_config_count;
    TbHParam *params = malloc(sizeof *params * (size_t)(n > 0 ? n : 1));
    char *dir = path_join(l->run_dir, o->log_tracker_name ? o->log_tracker_name
                                                          : "textual_inversion");
    if (!params || !dir) {
        free(params);
        free(dir);
        return error_set(err, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        params[i] = o->log_config_values[i];
        if (strcmp(params[i].name, "max_train_steps") == 0)
            params[i].number = (double)t->max_train_steps;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char *folder = NULL;
    int rc = tb_hparams_write(dir, params, n, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9,
                              &folder, err);
    if (rc == 0)
        log_info("--log_config: %d settings written as TensorBoard hparams in %s", n, folder);
    free(folder);
    free(params);
    free(dir);
    return rc;
}

int trainer_log_open(const Trainer *t, TrainLog **log, Error *err) {
    const TrainOptions *o = t->o;
    *log = NULL;
    if (!o->logging_dir) {
        if (o->log_prefix || o->log_tracker_name || o->log_tracker_config)
            log_warning("--log_prefix, --log_tracker_name and --log_tracker_config do nothing "
                        "without --logging_dir (kohya ignores them too)");
        return 0;
    }
    TrainLogSettings s = {.logging_dir = o->logging_dir,
                          .prefix = o->log_prefix,
                          .tracker_name = o->log_tracker_name};
    if (o->log_tracker_config && train_log_read_tracker_config(o->log_tracker_config, &s, err) != 0)
        return -1;
    TrainLog *l = malloc(sizeof *l);
    if (!l)
        return error_set(err, "out of memory");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (train_log_open(l, &s, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9, err) != 0) {
        free(l);
        return -1;
    }
    log_info("logging to %s (TensorBoard events in %s/, loss.csv)", l->run_dir,
             o->log_tracker_name ? o->log_tracker_name : "textual_inversion");
    if (o->log_config && trainer_log_hparams(t, l, err) != 0) {
        train_log_close(l);
        free(l);
        return -1;
    }
    *log = l;
    return 0;
}

int trainer_log_step(TrainLog *log, const Trainer *t, double loss, double loss_avg, Error *err) {
    if (!log)
        return 0;
    /* kohya: float(lr_scheduler.get_last_lr()[0]) after the scheduler has stepped
     * global_step times */
    double lr = lr_scheduler_lr(&t->sched, t->global_step);
    return train_log_step(log, t->global_step, t->epoch + 1, loss, loss_avg, lr, err);
}

int trainer_log_epoch(TrainLog *log, const Trainer *t, double loss_epoch, Error *err) {
    if (!log)
        return 0;
    return train_log_epoch(log, t->epoch + 1, loss_epoch, err);
}

int trainer_log_end(TrainLog *log, int rc, Error *err) {
    if (!log)
        return rc;
    Error curve_err = {{0}};
    int crc = train_log_write_curve(log, &curve_err);
    if (crc == 0)
        fprintf(stderr,
                "sdti train: the loss log is %s (loss.csv; TensorBoard: tensorboard "
                "--logdir %s), the loss curve %s\n",
                log->run_dir, log->run_dir, log->curve_path);
    train_log_close(log);
    free(log);
    if (rc != 0)
        return rc;
    if (crc != 0) {
        *err = curve_err;
        return -1;
    }
    return 0;
}
