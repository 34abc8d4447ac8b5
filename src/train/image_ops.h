/* Pixel operations of kohya's data loader on 8-bit RGB(A) images (Image from
 * formats/image.h), each reproducing the library kohya calls:
 *   - image_resize_area: OpenCV's cv2.resize(..., INTER_AREA) for downscaling (the
 *     integer-factor fast path with its 2x2 rounding, and the general path with float
 *     weights accumulated in OpenCV's order);
 *   - image_resize_lanczos: PIL's Image.resize(..., LANCZOS) (fixed-point separable
 *     filter, Pillow 13's pass order, RGBA premultiplied), which kohya's utils.pil_resize
 *     uses when upscaling;
 *   - image_resize_kohya: utils.resize_image's automatic choice (area when neither side
 *     grows, else Lanczos);
 *   - image_trim_and_resize: train_util.trim_and_resize_if_required (resize, then a center
 *     crop, or a random one drawn with Python's random.randint);
 *   - image_flip_horizontal, image_color_aug (AugHelper.color_aug), image_to_tensor
 *     (ToTensor + Normalize([0.5], [0.5]) into a float CHW tensor in [-1, 1]). */
#ifndef SDTI_TRAIN_IMAGE_OPS_H
#define SDTI_TRAIN_IMAGE_OPS_H

#include <stdbool.h>

#include "base/error.h"
#include "formats/image.h"
#include "train/py_random.h"

typedef enum ResizeMethod { RESIZE_AUTO = 0, RESIZE_AREA, RESIZE_LANCZOS } ResizeMethod;

/* Each writes a new image into *out (free with image_free). */
int image_resize_area(const Image *in, int width, int height, Image *out, Error *err);
int image_resize_lanczos(const Image *in, int width, int height, Image *out, Error *err);
int image_resize_kohya(const Image *in, int width, int height, ResizeMethod method, Image *out,
                       Error *err);

/* Resizes `image` to resized_w x resized_h (if it differs), then crops to bucket_w x
 * bucket_h: centered, or at random_crop offsets from rng (randint(0, excess), width first).
 * Replaces *image. */
int image_trim_and_resize(Image *image, int bucket_w, int bucket_h, int resized_w, int resized_h,
                          bool random_crop, PyRandom *rng, ResizeMethod method, Error *err);

/* Replaces *image by its w x h part at (x0, y0). */
int image_crop(Image *image, int x0, int y0, int w, int h, Error *err);

void image_flip_horizontal(Image *image);

/* AugHelper.color_aug: with probability 0.33, either a hue shift of uniform(-8, 8) OpenCV hue
 * units or a gamma of uniform(0.95, 1.05), half and half; draws from rng in kohya's order.
 * The HSV round trip follows OpenCV's 8-bit BGR2HSV (fixed-point tables) and its float
 * HSV2BGR. The new hue and the gamma curve are computed in double, as numpy 2 does; kohya's
 * pinned numpy 1.x computes `hsv + shift` and `image ** gamma` in float16 (value-based
 * casting), which can move a truncated result by one level. */
void image_color_aug(Image *image, PyRandom *rng);
/* The hue-shift branch alone: hsv[..., 0] = (h + shift) % 180 with shift in [0, 180). */
void image_hue_shift(Image *image, double shift);

/* ToTensor + Normalize([0.5], [0.5]): out[c][y][x] = (v / 255 - 0.5) / 0.5 in float32, the
 * first three channels only. `out` holds 3 * height * width floats. */
void image_to_tensor(const Image *image, float *out);

#endif
