/* --logging_dir from the trainer. See trainer_log.h. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/log.h"
#include "train/trainer_log.h"

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
