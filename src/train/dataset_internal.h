/* Shared by dataset.c and dataset_finetune.c. */
#ifndef SDTI_TRAIN_DATASET_INTERNAL_H
#define SDTI_TRAIN_DATASET_INTERNAL_H

#include "train/dataset.h"

/* Appends an image (taking its strings; freed on failure). */
int dataset_push_image(Dataset *ds, size_t *cap, DatasetImage img, Error *err);
/* glob_images(dir): the images with one of kohya's extensions (full paths, sorted); a
 * missing folder gives none. Free each and the list. */
int dataset_list_images(const char *dir, char ***out, size_t *count, Error *err);
/* ControlNet-style datasets (train/masked_loss.c): each image's conditioning image, by stem,
 * in its subset's conditioning_data_dir; missing and unpaired ones are errors. */
int dataset_pair_conditioning(Dataset *ds, Error *err);
/* The fine-tuning subsets of ds->config. */
int dataset_load_finetuning(Dataset *ds, size_t *cap, Error *err);

#endif
