/* --debug_dataset: what each sample of the first epoch would be trained on, and no training
 * (kohya's train_util.debug_dataset with show_input_ids, as text: sdti shows no image
 * windows). See trainer_internal.h. */
#include <stdio.h>
#include <stdlib.h>

#include "train/trainer_internal.h"

int trainer_debug_dataset(Trainer *t, Error *err) {
    CaptionStep cstep = {.current_step = 0, .max_train_steps = t->max_train_steps};
    for (size_t d = 0; d < t->dataset_count; d++) {
        const Dataset *ds = &t->datasets[d];
        printf("dataset %zu: %zu images, %lld with repeats (%lld regularisation), %zu batches\n", d,
               ds->image_count, (long long)ds->num_train_images, (long long)ds->num_reg_images,
               ds->batch_count);
        for (size_t b = 0; b < ds->batch_count; b++) {
            const size_t *idx;
            size_t n = dataset_batch_images(ds, b, &idx);
            for (size_t i = 0; i < n; i++) {
                const DatasetImage *im = &ds->images[idx[i]];
                DatasetSample s;
                if (dataset_load_sample(ds, idx[i], false, t->repl.count ? &t->repl.entry : NULL,
                                        t->repl.count, &cstep, &t->py, &s, err) != 0)
                    return -1;
                int *ids = NULL, count = 0;
                int rc = tokenizer_encode(t->tok, s.caption, &ids, &count, err);
                if (rc == 0) {
                    printf("batch %zu  %s\n  bucket %dx%d  repeats %d%s%s\n  caption: %s\n  ids:",
                           b, im->path, im->bucket.width, im->bucket.height, im->num_repeats,
                           im->is_reg ? "  (regularisation)" : "", s.flipped ? "  flipped" : "",
                           s.caption);
                    for (int k = 0; k < count; k++)
                        printf(" %d%s", ids[k], ids[k] >= t->ti.ids[0] ? "*" : "");
                    printf("\n");
                    /* the loss masks (train/masked_loss.h) */
                    if (im->cond_path)
                        printf("  conditioning image (loss mask): %s\n", im->cond_path);
                    else if (ds->config->subsets[im->subset].alpha_mask)
                        printf("  alpha mask (loss mask): the image's alpha channel\n");
                }
                free(ids);
                dataset_sample_free(&s);
                if (rc != 0)
                    return -1;
            }
        }
    }
    printf("(* = a new token; --debug_dataset trains nothing)\n");
    return 0;
}
