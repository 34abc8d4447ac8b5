/* One VAE pass on an SD1.5-shaped AutoencoderKL with random weights (no file needed), for
 * bench/bench_vae.sh, which runs PyTorch on the same shapes and prints the ratios.
 *   bench_vae encode|decode SIZE [THREADS] [fp32|fp16|bf16]
 * SIZE is the image side for encode, the latent side for decode. Prints the seconds of the
 * pass itself (weights built beforehand) on one line: "seconds <t>". Only the half that runs
 * is built, as sdti uses the VAE (latent caching: encoder; generation: decoder). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/vae.h"

#include "bench_util.h"

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "encode") != 0 && strcmp(argv[1], "decode") != 0)) {
        fprintf(stderr, "usage: bench_vae encode|decode SIZE [THREADS] [fp32|fp16|bf16]\n");
        return 2;
    }
    int encode = strcmp(argv[1], "encode") == 0;
    int size = atoi(argv[2]), threads = argc > 3 ? atoi(argv[3]) : 2;
    DType storage = DTYPE_F32;
    if (argc > 4 && strcmp(argv[4], "fp16") == 0)
        storage = DTYPE_F16;
    else if (argc > 4 && strcmp(argv[4], "bf16") == 0)
        storage = DTYPE_BF16;
    /* SD1.5's vae/config.json */
    VaeConfig cfg = {.in_channels = 3,
                     .out_channels = 3,
                     .latent_channels = 4,
                     .num_levels = 4,
                     .block_out_channels = {128, 256, 512, 512},
                     .layers_per_block = 2,
                     .norm_num_groups = 32,
                     .norm_eps = 1e-6f,
                     .scaling_factor = 0.18215f};
    Error err = {{0}};
    NnContext *ctx = NULL;
    Vae vae;
    if (nn_context_create(threads, &ctx, &err) != 0 ||
        vae_init_random(&vae, &cfg, encode ? VAE_ENCODER : VAE_DECODER, storage, 42, &err) != 0) {
        fprintf(stderr, "bench_vae: %s\n", err.message);
        return 1;
    }
    int f = vae_downscale_factor(&cfg);
    int img = encode ? size : size * f, lat = encode ? size / f : size;
    size_t n_img = (size_t)3 * img * img, n_lat = (size_t)4 * lat * lat;
    float *image = malloc(n_img * sizeof *image), *mean = malloc(n_lat * sizeof *mean);
    float *logvar = malloc(n_lat * sizeof *logvar);
    if (!image || !mean || !logvar) {
        fprintf(stderr, "bench_vae: out of memory\n");
        return 1;
    }
    size_t ws = encode ? vae_encode_workspace_floats(&vae, img, img)
                       : vae_decode_workspace_floats(&vae, lat, lat);
    fprintf(stderr, "bench_vae %s %d: weights %.1f MiB (%s), workspace %.1f MiB\n", argv[1], size,
            vae.pool.bytes / 1048576.0, dtype_display_name(storage), ws * 4 / 1048576.0);
    double t0 = bench_now();
    int rc;
    if (encode) {
        bench_fill(image, n_img, 1);
        t0 = bench_now();
        rc = vae_encode(ctx, &vae, 1, img, img, image, mean, logvar, NULL, &err);
    } else {
        bench_fill(mean, n_lat, 2);
        t0 = bench_now();
        rc = vae_decode(ctx, &vae, 1, lat, lat, mean, image, NULL, &err);
    }
    double t = bench_now() - t0;
    if (rc != 0) {
        fprintf(stderr, "bench_vae: %s\n", err.message);
        return 1;
    }
    printf("seconds %.3f\n", t);
    free(image);
    free(mean);
    free(logvar);
    vae_free(&vae);
    nn_context_free(ctx);
    return 0;
}
