/* The training log of `sdti train --logging_dir DIR`, laid out as kohya's run makes it through
 * accelerate's TensorBoard tracker (train_util.prepare_accelerator, TensorBoardTracker):
 *   DIR/<--log_prefix><YYYYmmddHHMMSS, local time>/          the run folder
 *       <--log_tracker_name, default textual_inversion>/events.out.tfevents.*
 *       loss.csv        step,epoch,loss,loss_avg,lr,time (one row per logged loss)
 *       loss_curve.png  written at the end (temp name + rename)
 * Scalars, with kohya's train_textual_inversion.py tags and steps: "loss" (the micro-batch's
 * loss) and "lr" (the scheduler's last learning rate) after every micro-batch at the current
 * global step, "loss/epoch" (the epoch's loss sum over its batch count) at step epoch + 1.
 * The event file and the CSV are flushed per row, so a killed run keeps its log; only the
 * PNG, a summary of the whole run, is written at the end. A run folder that exists already
 * (two runs in one second) gets "-1", "-2", ... appended instead of mixing two runs' CSVs. */
#ifndef SDTI_TRAIN_TRAIN_LOG_H
#define SDTI_TRAIN_TRAIN_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"
#include "train/tb_events.h"

typedef struct TrainLogSettings {
    const char *logging_dir;   /* --logging_dir */
    const char *prefix;        /* --log_prefix, NULL: none */
    const char *tracker_name;  /* --log_tracker_name, NULL: "textual_inversion" */
    char filename_suffix[256]; /* SummaryWriter's filename_suffix from --log_tracker_config */
} TrainLogSettings;

/* --log_tracker_config: kohya passes the file's [tensorboard] table to torch's SummaryWriter
 * as keyword arguments (accelerate: init_kwargs[tracker name]). filename_suffix is used;
 * max_queue and flush_secs change nothing (sdti flushes every row); comment is ignored by
 * SummaryWriter when it has a folder, as here; purge_step is refused (sdti never reopens a
 * run folder); any other key is an error, as SummaryWriter's TypeError is. Tables for other
 * trackers (wandb, ...) are not read by a TensorBoard-only run, in kohya either. */
int train_log_read_tracker_config(const char *path, TrainLogSettings *s, Error *err);

typedef struct TrainLog {
    char *run_dir;
    char *csv_path;
    char *curve_path;
    TbEventWriter events;
    FILE *csv;
    double start; /* wall-clock seconds at open */
    /* every logged "loss", for the curve */
    int64_t *steps;
    double *losses;
    size_t count, cap;
} TrainLog;

/* Makes the folders, the event file and the CSV. wall_time: seconds since the epoch (the
 * folder's timestamp and the event file's name). */
int train_log_open(TrainLog *l, const TrainLogSettings *s, double wall_time, Error *err);
/* One micro-batch: "loss" and "lr" at `step` and a CSV row (loss_avg: the epoch's running
 * mean, kohya's avr_loss). epoch is 1-based. */
int train_log_step(TrainLog *l, int64_t step, int epoch, double loss, double loss_avg, double lr,
                   Error *err);
/* The end of an epoch: "loss/epoch" at step epoch (1-based). */
int train_log_epoch(TrainLog *l, int epoch, double loss, Error *err);
/* Writes loss_curve.png from the logged losses. */
int train_log_write_curve(TrainLog *l, Error *err);
/* Closes the files and frees everything (safe on a zeroed or closed log). */
void train_log_close(TrainLog *l);

#endif
