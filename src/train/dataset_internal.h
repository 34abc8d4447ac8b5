/* Shared by dataset.c and dataset_finetune.c. */
#ifndef SDTI_TRAIN_DATASET_INTERNAL_H
#define SDTI_TRAIN_DATASET_INTERNAL_H

#include "train/dataset.h"

/* Appends an image (taking its strings; freed on failure). */
int dataset_push_image(Dataset *ds, size_t *cap, DatasetImage img, Error *err);
/* The fine-tuning subsets of ds->config. */
int dataset_load_finetuning(Dataset *ds, size_t *cap, Error *err);

#endif
