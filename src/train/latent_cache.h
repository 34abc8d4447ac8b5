/* kohya's on-disk latent cache (--cache_latents_to_disk): one numpy .npz per image next to
 * it (library/strategy_sd.py SdSdxlLatentsCachingStrategy, strategy_base.py
 * LatentsCachingStrategy: save_latents_to_disk / load_latents_from_disk /
 * _default_is_disk_cached_latents_expected).
 *   name:   "<image without extension>_<WWWW>x<HHHH>_sd.npz" (the image's original size,
 *           4 digits), or the old "<image without extension>.npz" when that file exists;
 *   arrays: latents float32 [4, H/8, W/8]; original_size int64 [2] (w, h);
 *           crop_ltrb float64 [4]; latents_flipped (with flip_aug); alpha_mask float32
 *           [H, W] (with --alpha_mask).
 * An .npz is a zip of .npy files (stored, not compressed, as np.savez writes it); we read
 * and write it through libzip. Writing keeps the other arrays an existing file holds (kohya
 * loads and re-saves them) and goes through libzip's temporary file + rename, so a crash
 * never leaves a half-written cache under the final name. */
#ifndef SDTI_TRAIN_LATENT_CACHE_H
#define SDTI_TRAIN_LATENT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

typedef struct LatentCacheEntry {
    int channels, height, width; /* latents shape */
    float *latents;              /* channels * height * width */
    float *latents_flipped;      /* same shape, or NULL */
    int64_t original_size[2];    /* width, height of the image before resizing */
    double crop_ltrb[4];
    float *alpha_mask; /* mask_height * mask_width, or NULL */
    int mask_height, mask_width;
} LatentCacheEntry;

/* The cache file for an image of the given original size (malloc'd). */
char *latent_cache_path(const char *image_path, int image_width, int image_height);

/* Whether the file can be used for a bucket of bucket_w x bucket_h: it exists, has latents,
 * original_size and crop_ltrb, latents of [*, H/8, W/8], latents_flipped when flip_aug, and
 * alpha_mask of [H, W] exactly when alpha_mask (kohya's older, stricter check, which also
 * catches a cache written for another bucket). An unreadable file is an error naming it. */
int latent_cache_is_valid(const char *path, int bucket_w, int bucket_h, bool flip_aug,
                          bool alpha_mask, bool *valid, Error *err);

int latent_cache_read(const char *path, LatentCacheEntry *out, Error *err);

/* latent_cache_is_valid's conditions on an entry already read, for a VAE of any downscale
 * factor: latents of [channels, latent_h, latent_w], mirrored ones when flip_aug, an alpha
 * mask exactly when alpha_mask (of the bucket's pixel size). */
bool latent_cache_entry_fits(const LatentCacheEntry *e, int channels, int latent_h, int latent_w,
                             bool flip_aug, bool alpha_mask, int bucket_w, int bucket_h);
int latent_cache_write(const char *path, const LatentCacheEntry *entry, Error *err);
void latent_cache_entry_free(LatentCacheEntry *entry);

#endif
