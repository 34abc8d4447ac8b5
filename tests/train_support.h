/* What the `sdti train` CLI tests share: a small image set they write themselves, and running
 * the sdti binary on the tiny SD1 fixture model. */
#ifndef SDTI_TESTS_TRAIN_SUPPORT_H
#define SDTI_TESTS_TRAIN_SUPPORT_H

#include <stdbool.h>

#define TRAIN_SUPPORT_MODEL "models/sd1-tiny/ldm.safetensors"

/* `count` 64x64 RGB PNGs (img<i>.png, a pattern per index) with `caption` in img<i>.txt, in
 * dir (created). Failures are recorded as test failures. */
void train_support_make_images(const char *dir, int count, const char *caption);
/* The same with width x height images. */
void train_support_make_images_sized(const char *dir, int count, int width, int height,
                                     const char *caption);
bool train_support_exists(const char *path);
/* Runs `sdti train --pretrained_model_name_or_path <tiny SD1 model> <args>`; returns the exit
 * code and the combined output (malloc'd) in *out. */
int train_support_run(const char *args, char **out);

#endif
