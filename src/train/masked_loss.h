/* The masks of kohya's masked loss (library/custom_train_functions.py apply_masked_loss, fed by
 * train_util.py ControlNetDataset and the alpha_mask path of BaseDataset.__getitem__):
 *   - conditioning images (--masked_loss with a dataset whose every subset has
 *     conditioning_data_dir): one image per training image, found by file stem; loaded as
 *     RGB, resized as ControlNetDataset resizes it (with buckets: straight to the bucket size
 *     from the original size, which it must have; without: to the resolution when it
 *     differs), mirrored with its image, then ToTensor + Normalize(0.5, 0.5) and back:
 *     mask = R / 2 + 0.5, so 0 (black) drops a pixel from the loss and 1 (white) keeps it;
 *   - alpha masks (alpha_mask): the image's alpha / 255, resized, cropped and flipped with the
 *     image (dataset.c, latent cache), 1 for images without alpha and, in a batch where
 *     another image has a mask, for images of subsets without alpha_mask.
 * The loss (loss.c) area-resizes the [batch, H, W] mask to the latent size and multiplies
 * the elementwise loss by it before the mean over C, H, W. Conditioning images win over
 * alpha masks, as in apply_masked_loss. */
#ifndef SDTI_TRAIN_MASKED_LOSS_H
#define SDTI_TRAIN_MASKED_LOSS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "train/dataset.h"

/* The mask of image `index` of a ControlNet-style dataset from its conditioning image:
 * bucket.height x bucket.width floats (the sample's size), mirrored when `flipped`. */
int masked_loss_conditioning_mask(const Dataset *ds, size_t index, bool flipped, float *mask,
                                  Error *err);

/* ToTensor + Normalize([0.5], [0.5]) of the R channel, then / 2 + 0.5, in kohya's float32
 * order: RGB 8-bit pixels [h, w, channels] -> mask [h, w]. */
void masked_loss_mask_from_rgb(const unsigned char *pixels, int channels, size_t count,
                               float *mask);

/* A mask [h, w] mirrored left to right (torch.flip(mask, [1])); out must not alias in. */
void masked_loss_flip(int h, int w, const float *in, float *out);

#endif
