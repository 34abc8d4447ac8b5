/* `sdti train --replay FILE`: a testing aid. The file (tools/reference/kohya_ti_step.py, kohya's
 * textual-inversion step in PyTorch) fixes everything random in the run: per micro-batch the
 * images of the batch, their timesteps and noise, and per image its (cached, scaled) latents.
 * The trainer takes those instead of drawing them, and records the trajectory: the loss of
 * every micro-batch, and after every optimizer step the new rows' clipped gradient and the new
 * rows, written to <output_dir>/replay_trajectory.safetensors at the end of the run
 * ("loss" [M], "grad" [K, N, W], "rows" [K, N, W], "rows_init" [N, W], "lr" [K]) for
 * tests/test_train_replay.c to compare with the reference's.
 *
 * Replay file: "latents" f32 [I, C, h, w], "order" i64 [M, B] (indices into the metadata's
 * comma-separated "images" file names), "timesteps" i64 [M, B], "noise" f32 [M, B, C, h, w];
 * metadata "format" = "sdti-replay-1". Other entries (the reference's expected values) are
 * ignored. */
#ifndef SDTI_TRAIN_TRAINER_REPLAY_H
#define SDTI_TRAIN_TRAINER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct Trainer;

/* Reads o->replay and checks it against the run (one dataset holding every image named,
 * latent shape, at least max_train_steps batches). After the datasets and the schedule. */
int trainer_replay_open(struct Trainer *t, Error *err);
void trainer_replay_free(struct Trainer *t);

/* The next micro-batch's images (dataset image indices, in t->datasets[0]); returns the batch
 * size. */
int trainer_replay_images(struct Trainer *t, const size_t **idx);
/* Replaces the micro-batch's latents, noise and timesteps by the file's and recomputes the
 * noisy latents (add_noise); then moves to the next micro-batch. */
void trainer_replay_draws(struct Trainer *t, int batch, size_t per_sample, float *latents,
                          float *noise, float *noisy, int64_t *timesteps);
void trainer_replay_record_loss(struct Trainer *t, float loss);
/* After an optimizer step: the new rows' gradient as the optimizer saw it (clipped), the rows
 * after the step, the learning rate used. */
void trainer_replay_record_step(struct Trainer *t, const float *grad_rows, double lr);
/* Writes the trajectory file. */
int trainer_replay_write(struct Trainer *t, Error *err);

#endif
