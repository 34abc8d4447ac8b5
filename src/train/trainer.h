/* `sdti train`: kohya's textual-inversion training run (train_textual_inversion.py,
 * TextualInversionTrainer.train; ../shared/reference/kohya-ti-facts.md sections 2 and 5), from
 * parsed and checked options:
 *   model -> tokenizer + the N new tokens (init word, --weights) -> datasets (a .toml, the
 *   folder layout or --in_json) -> latents (cached in memory / on disk, or encoded per batch)
 *   -> per batch: noise and timesteps (kohya's draws), text encoder with the new rows, UNet,
 *   loss, backward through the UNet and the text encoder to the gradient of every token row
 *   used, and on optimizer steps clip_grad_norm over those rows (kohya clips the whole
 *   embedding matrix), the optimizer on the new rows only (every other row stays as loaded:
 *   kohya restores them after each step), the learning-rate schedule
 *   -> kohya's saves (every n steps / epochs, and the final file).
 * The original rows never change because they are never copied: the new rows live outside the
 * model's matrix (clip_text_forward's extra_rows). A NaN or Inf loss or row stops the run with
 * an error and writes nothing for that step. Options the loop does not run yet are refused
 * by name before anything is loaded. */
#ifndef SDTI_TRAIN_TRAINER_H
#define SDTI_TRAIN_TRAINER_H

#include "base/error.h"
#include "cli/train_options.h"

/* The whole run. lr: the scheduler settings from the options (train_options_lr_settings);
 * its max_train_steps is replaced by the run's (kohya recomputes it from --max_train_epochs
 * and the dataset). threads <= 0: every core. Options the loop does not run must be refused
 * before (cmd_train does). */
int trainer_run(const TrainOptions *o, const LrSchedulerSettings *lr, int threads, Error *err);

#endif
