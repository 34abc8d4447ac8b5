/* The trainer's side of --logging_dir (train_log.h): what kohya's train_textual_inversion.py
 * hands accelerate's tracker, from the trainer's state. Every function is a no-op returning 0
 * when the run has no --logging_dir (log NULL). */
#ifndef SDTI_TRAIN_TRAINER_LOG_H
#define SDTI_TRAIN_TRAINER_LOG_H

#include "train/train_log.h"
#include "train/trainer_internal.h"

/* Opens the log when --logging_dir is given (*log NULL otherwise), reading
 * --log_tracker_config first. */
int trainer_log_open(const Trainer *t, TrainLog **log, Error *err);
/* After every micro-batch (kohya logs after the step's optimizer update, at the global step
 * it has then): "loss" (the micro-batch's), "lr" (the scheduler's rate at that step), the CSV
 * row with loss_avg (the epoch's running mean, kohya's avr_loss). */
int trainer_log_step(TrainLog *log, const Trainer *t, double loss, double loss_avg, Error *err);
/* At the end of an epoch (the last one too): "loss/epoch", kohya's epoch loss sum over the
 * epoch's batch count. */
int trainer_log_epoch(TrainLog *log, const Trainer *t, double loss_epoch, Error *err);
/* The end of the run: the loss-curve PNG (also after a failed run: the log shows how it
 * went), a line saying where the log is, then closes and frees. Returns rc when it is not 0
 * (the run's error stays in err), else the PNG's result. */
int trainer_log_end(TrainLog *log, int rc, Error *err);

#endif
