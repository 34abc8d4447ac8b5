// labels: unit
/* kohya's latent .npz cache: tests/fixtures/dataset/cache_0020x0030_sd.npz was written by
 * np.savez with the arrays of strategy_base.save_latents_to_disk (make_dataset_fixtures.py).
 * We read it (latents [4, 3, 2] float32, latents_flipped = latents mirrored in width,
 * original_size int64 matching the 0020x0030 of its name, crop_ltrb float64), check validity
 * the way kohya's is_disk_cached_latents_is_expected does (bucket shape, flip, alpha mask),
 * write it back through libzip and read the copy bit-identically, keep unknown arrays of an
 * existing file, and name cache files as kohya does. numpy reading our files was checked by
 * hand with np.load (see the closing report); there is no Python in ctest. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "test_util.h"
#include "train/latent_cache.h"

static void test_fixture_file(void) {
    Error err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s", test_fixture("dataset/cache_0020x0030_sd.npz"));
    LatentCacheEntry e;
    CHECK_OK(latent_cache_read(path, &e, &err), &err);
    CHECK(e.channels == 4 && e.height == 3 && e.width == 2);
    CHECK(e.latents_flipped != NULL && e.alpha_mask == NULL);
    CHECK(e.original_size[0] == 20 && e.original_size[1] == 30); /* the file name's size */
    CHECK(e.crop_ltrb[0] <= e.crop_ltrb[2] && e.crop_ltrb[1] <= e.crop_ltrb[3]);
    int mirrored = 0;
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 2; x++)
                mirrored +=
                    e.latents[(c * 3 + y) * 2 + x] == e.latents_flipped[(c * 3 + y) * 2 + (1 - x)];
    CHECK(mirrored == 24);

    bool valid;
    /* latents [4, 3, 2] fit a 16x24 bucket (W/8 = 2, H/8 = 3). */
    CHECK_OK(latent_cache_is_valid(path, 16, 24, true, false, &valid, &err), &err);
    CHECK(valid);
    CHECK_OK(latent_cache_is_valid(path, 24, 16, false, false, &valid, &err), &err);
    CHECK(!valid); /* another bucket */
    CHECK_OK(latent_cache_is_valid(path, 16, 24, false, true, &valid, &err), &err);
    CHECK(!valid); /* alpha mask wanted, none stored */

    /* Round trip through our writer. */
    const char *dir = test_tmp_dir("test_latent_cache");
    char copy[1024];
    snprintf(copy, sizeof copy, "%s/copy.npz", dir);
    CHECK_OK(latent_cache_write(copy, &e, &err), &err);
    LatentCacheEntry back;
    CHECK_OK(latent_cache_read(copy, &back, &err), &err);
    CHECK(back.channels == 4 && back.height == 3 && back.width == 2);
    CHECK(!memcmp(back.latents, e.latents, 24 * sizeof(float)));
    CHECK(!memcmp(back.latents_flipped, e.latents_flipped, 24 * sizeof(float)));
    CHECK(!memcmp(back.original_size, e.original_size, sizeof e.original_size));
    CHECK(!memcmp(back.crop_ltrb, e.crop_ltrb, sizeof e.crop_ltrb));
    latent_cache_entry_free(&back);

    /* Rewriting without the flipped latents keeps the stored ones (kohya merges). */
    float *flipped = e.latents_flipped;
    e.latents_flipped = NULL;
    e.mask_height = 24;
    e.mask_width = 16;
    e.alpha_mask = calloc(24 * 16, sizeof(float));
    CHECK_OK(latent_cache_write(copy, &e, &err), &err);
    CHECK_OK(latent_cache_read(copy, &back, &err), &err);
    CHECK(back.latents_flipped && !memcmp(back.latents_flipped, flipped, 24 * sizeof(float)));
    CHECK(back.alpha_mask && back.mask_height == 24 && back.mask_width == 16);
    CHECK_OK(latent_cache_is_valid(copy, 16, 24, true, true, &valid, &err), &err);
    CHECK(valid);
    latent_cache_entry_free(&back);
    e.latents_flipped = flipped;
    latent_cache_entry_free(&e);

    /* Broken files are errors naming the file. */
    char bad[1024];
    snprintf(bad, sizeof bad, "%s/bad.npz", dir);
    test_write_file(bad, "PK\x03\x04garbage", 12);
    CHECK_FAILS_WITH(latent_cache_read(bad, &e, &err), &err, "bad.npz: not a readable .npz");
    CHECK_FAILS_WITH(latent_cache_is_valid(bad, 16, 24, false, false, &valid, &err), &err,
                     "bad.npz");
    snprintf(bad, sizeof bad, "%s/missing.npz", dir);
    CHECK_OK(latent_cache_is_valid(bad, 16, 24, false, false, &valid, &err), &err);
    CHECK(!valid);
}

static void test_paths(void) {
    const char *dir = test_tmp_dir("test_latent_cache_paths");
    char img[1024];
    snprintf(img, sizeof img, "%s/pic.one.png", dir);
    char *p = latent_cache_path(img, 640, 480);
    char want[1200];
    snprintf(want, sizeof want, "%s/pic.one_0640x0480_sd.npz", dir);
    CHECK(p && !strcmp(p, want));
    free(p);
    /* An old-style "<stem>.npz" takes precedence when present. */
    snprintf(want, sizeof want, "%s/pic.one.npz", dir);
    test_write_file(want, "x", 1);
    p = latent_cache_path(img, 640, 480);
    CHECK(p && !strcmp(p, want));
    free(p);
}

int main(void) {
    test_fixture_file();
    test_paths();
    return test_finish();
}
