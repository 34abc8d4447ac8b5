/* The loss curve written at the end of a logged training run: a PNG with the loss of every
 * logged step (thin, light) and its trailing mean (thick, dark) against the step, inside a
 * frame with tick marks and a light grid (five divisions each way). No text: the numbers are
 * in the CSV beside it. */
#ifndef SDTI_TRAIN_LOSS_PLOT_H
#define SDTI_TRAIN_LOSS_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define LOSS_PLOT_WIDTH  640
#define LOSS_PLOT_HEIGHT 400

/* The trailing mean drawn over the loss: each point averages the last `window` values
 * (fewer at the start); window = max(1, count / 10). mean gets count values. */
void loss_plot_trailing_mean(const double *loss, size_t count, double *mean);

/* Draws the curve into rgb (LOSS_PLOT_WIDTH x LOSS_PLOT_HEIGHT x 3 bytes). Steps and losses
 * that are not finite are skipped; no points gives the empty frame. */
int loss_plot_draw(const int64_t *steps, const double *loss, size_t count, uint8_t *rgb,
                   Error *err);

/* Draws and writes the PNG at path (temp name + rename). */
int loss_plot_write_png(const char *path, const int64_t *steps, const double *loss, size_t count,
                        Error *err);

#endif
