/* One UNet pass on an SD1.5-shaped UNet2DConditionModel with random weights (no file needed),
 * for bench/bench_unet.sh, which runs PyTorch on the same shapes and prints the ratios.
 *   bench_unet fwd|fwdbwd|ckpt|plan LATENT [THREADS] [fp32|fp16|bf16|bf16c] [RUNS] [BATCH]
 *   bench_unet sgemm N [THREADS]
 * fwd: forward only; fwdbwd: forward + backward to encoder_hidden_states; ckpt: the same
 * with gradient checkpointing. Batch BATCH (default 1; 2 is generation's guidance), 77 tokens,
 * LATENT x LATENT latents. The first run warms up (oneDNN primitive creation, page faults); the
 * best of the following RUNS (default 1; 0: the single cold run) is printed as "seconds <t>",
 * and the CPU seconds per timed run as "cpu_seconds <t>", with the arena size, the FLOPs of the
 * pass (2 per multiply-add, counted from the shapes: convolutions, linear layers, attention
 * products) and the time per block kind. plan: only the arena size of each mode. bf16c: bf16
 * weights and bf16 convolutions (f32 accumulation). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "models/unet_internal.h"
#include "nn/conv2d.h"

#include "bench_util.h"

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* FLOPs of a block's forward, and of its input-gradient backward as sdti runs it (the
 * first transformer only walks its cross-attention key/value path back). */
static void block_flops(const Unet *u, const UnetBlock *b, const UnetShape *s, int k, double *fwd,
                        double *bwd) {
    double hw = (double)unet_dim(s->height, b->scale) * unet_dim(s->width, b->scale);
    double B = s->batch, T = s->tokens;
    double f = 0, g = 0;
    switch (b->kind) {
    case UB_CONV_IN:
    case UB_OUT:
        f = 2 * B * hw * b->in_ch * b->out_ch * 9;
        g = b->kind == UB_OUT ? f : 0;
        break;
    case UB_DOWNSAMPLE:
        f = g = 2 * B * hw / 4 * b->in_ch * b->out_ch * 9;
        break;
    case UB_UPSAMPLE:
        f = g = 2 * B * hw * 4 * b->in_ch * b->out_ch * 9;
        break;
    case UB_RESNET:
        f = 2 * B * hw *
            ((double)b->in_ch * b->out_ch * 9 + (double)b->out_ch * b->out_ch * 9 +
             (b->in_ch != b->out_ch ? (double)b->in_ch * b->out_ch : 0));
        g = f;
        break;
    case UB_TRANSFORMER: {
        double C = b->out_ch, D = u->cfg.cross_attention_dim, R = B * hw;
        double lin_rows = 2 * R * C * C * (2 + 4 + 2) + 2 * R * C * 8 * C + 2 * R * 4 * C * C;
        double kv = 2 * 2 * B * T * D * C;
        double att_self = 4 * B * hw * hw * C, att_cross = 4 * B * hw * T * C;
        f = lin_rows + kv + att_self + att_cross;
        /* backward: recompute the scores, then dP, dV, dQ, dK: 2.5x the forward products */
        if (k == u->first_transformer)
            g = 2 * R * C * C * 3 + 2 * R * C * 8 * C + 2 * R * 4 * C * C + kv + 2.5 * att_cross;
        else
            g = lin_rows + kv + 2.5 * (att_self + att_cross);
        break;
    }
    default:
        break;
    }
    *fwd += f;
    if (k >= u->first_transformer)
        *bwd += g;
}

/* The machine's practical peak: one n x n x n sgemm (best of 3), oneDNN's (Debian's
 * OpenBLAS picks slow generic kernels on recent CPUs). */
static int sgemm_peak(int n, int threads) {
    Error err = {{0}};
    NnContext *ctx = NULL;
    if (nn_context_create(threads, &ctx, &err) != 0) {
        fprintf(stderr, "bench_unet: %s\n", err.message);
        return 1;
    }
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    bench_fill(a, nn, 1);
    bench_fill(b, nn, 2);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = bench_now();
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = bench_now() - t0;
        if (dt < best)
            best = dt;
    }
    printf("seconds %.3f\nflops %.0f\n", best, 2.0 * n * nn);
    free(a), free(b), free(c);
    nn_context_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_unet fwd|fwdbwd|ckpt LATENT [THREADS] [fp32|fp16|bf16] "
                        "[RUNS]\n");
        return 2;
    }
    const char *op = argv[1];
    int latent = atoi(argv[2]), threads = argc > 3 ? atoi(argv[3]) : 2;
    if (strcmp(op, "sgemm") == 0)
        return sgemm_peak(latent, threads);
    int runs = argc > 5 ? atoi(argv[5]) : 1;
    /* BATCH (default 1): generation with guidance runs the UNet on batch 2 */
    int batch = argc > 6 ? atoi(argv[6]) : 1;
    if (batch < 1)
        batch = 1;
    DType storage = DTYPE_F32;
    if (argc > 4 && strcmp(argv[4], "fp16") == 0)
        storage = DTYPE_F16;
    else if (argc > 4 && strncmp(argv[4], "bf16", 4) == 0)
        storage = DTYPE_BF16;
    /* bf16c: bf16 weights and bf16 convolution inputs (AVX512-BF16), f32 accumulation */
    bool bf16_conv = argc > 4 && strcmp(argv[4], "bf16c") == 0;
    bool plan_only = strcmp(op, "plan") == 0; /* arena sizes of the three modes, no run */
    if (plan_only)
        op = "fwd";
    UnetMode mode = strcmp(op, "fwd") == 0      ? UNET_INFERENCE
                    : strcmp(op, "ckpt") == 0   ? UNET_TRAIN_CHECKPOINTED
                    : strcmp(op, "fwdbwd") == 0 ? UNET_TRAIN
                                                : (UnetMode)-1;
    if ((int)mode < 0 || latent < 8 || latent % 8) {
        fprintf(stderr, "bench_unet: unknown pass '%s' or latent %d (a multiple of 8)\n", op,
                latent);
        return 2;
    }
    /* SD1.5's unet/config.json */
    UnetConfig cfg = {.in_channels = 4,
                      .out_channels = 4,
                      .num_levels = 4,
                      .block_out_channels = {320, 640, 1280, 1280},
                      .layers_per_block = 2,
                      .level_has_attention = {true, true, true, false},
                      .heads = {8, 8, 8, 8},
                      .mid_has_attention = true,
                      .transformer_depth = 1,
                      .cross_attention_dim = 768,
                      .norm_num_groups = 32,
                      .resnet_norm_eps = 1e-5f,
                      .transformer_norm_eps = 1e-6f,
                      .layer_norm_eps = 1e-5f,
                      .flip_sin_to_cos = true,
                      .freq_shift = 0};
    Error err = {{0}};
    NnContext *ctx = NULL;
    Unet *u = NULL;
    UnetArena *a = NULL;
    UnetShape shape = {batch, latent, latent, 77};
    if (nn_context_create(threads, &ctx, &err) != 0 ||
        (bf16_conv && conv2d_set_algorithm(ctx, CONV2D_ALGO_ONEDNN_BF16, &err) != 0) ||
        unet_create_random(&cfg, storage, 42, &u, &err) != 0 ||
        unet_arena_create(u, &shape, mode, &a, &err) != 0) {
        fprintf(stderr, "bench_unet: %s\n", err.message);
        return 1;
    }
    if (plan_only) {
        const char *names[3] = {"inference", "training", "training, checkpointed"};
        for (int m = 0; m < 3; m++) {
            UnetArena *pa = NULL;
            if (unet_arena_create(u, &shape, (UnetMode)m, &pa, &err) != 0) {
                fprintf(stderr, "bench_unet: %s\n", err.message);
                return 1;
            }
            printf("arena %-24s %8.1f MiB\n", names[m], unet_arena_bytes(pa) / 1048576.0);
            unet_arena_free(pa);
        }
        printf("weights %.1f MiB\n", unet_weight_bytes(u) / 1048576.0);
        return 0;
    }
    size_t n_lat = (size_t)batch * 4 * latent * latent, n_ctx = (size_t)batch * 77 * 768;
    float *x = malloc(n_lat * sizeof *x), *out = malloc(n_lat * sizeof *x);
    float *dy = malloc(n_lat * sizeof *x), *c = malloc(n_ctx * sizeof *c);
    float *dc = malloc(n_ctx * sizeof *c), t[64];
    for (int i = 0; i < 64; i++)
        t[i] = 500.0f;
    if (batch > 64) {
        fprintf(stderr, "bench_unet: batch %d > 64\n", batch);
        return 2;
    }
    bench_fill(x, n_lat, 1);
    bench_fill(c, n_ctx, 2);
    bench_fill(dy, n_lat, 3);
    double best = 1e30, cpu_timed = 0;
    for (int r = 0; r <= runs; r++) {
        double t0 = bench_now(), c0 = cpu_now();
        int rc = unet_forward(ctx, u, a, x, t, c, out, &err);
        if (rc == 0 && mode != UNET_INFERENCE)
            rc = unet_backward_input(ctx, u, a, dy, dc, &err);
        if (rc != 0) {
            fprintf(stderr, "bench_unet: %s\n", err.message);
            return 1;
        }
        double dt = bench_now() - t0;
        if ((r > 0 || runs == 0) && dt < best)
            best = dt;
        if (r > 0 || runs == 0)
            cpu_timed += cpu_now() - c0;
    }
    double ff = 0, fb = 0;
    for (int k = 0; k < u->block_count; k++)
        block_flops(u, &u->blocks[k], &shape, k, &ff, &fb);
    double flops = mode == UNET_INFERENCE ? ff : ff + fb;
    double fs[4], bs[4];
    unet_arena_block_seconds(a, fs, bs);
    double n = runs + 1;
    printf("seconds %.3f\n", best);
    /* CPU seconds (all threads) per timed run: steadier than wall time on a busy machine */
    printf("cpu_seconds %.3f\n", cpu_timed / (runs > 0 ? runs : 1));
    printf("flops %.0f\n", flops);
    printf("arena_mib %.1f\n", unet_arena_bytes(a) / 1048576.0);
    printf("weights_mib %.1f\n", unet_weight_bytes(u) / 1048576.0);
    printf("breakdown fwd: conv/sampling %.2f s, resnets %.2f s, transformers %.2f s; "
           "bwd: conv/sampling %.2f s, resnets %.2f s, transformers %.2f s (per pass)\n",
           fs[0] / n, fs[1] / n, fs[2] / n, bs[0] / n, bs[1] / n, bs[2] / n);
    double tf_f[4], tf_b[4];
    unet_arena_transformer_seconds(a, tf_f, tf_b);
    printf("breakdown transformers fwd: linear %.2f s, attention %.2f s, norms %.2f s, "
           "GEGLU/transposes/adds %.2f s; bwd: linear %.2f s, attention %.2f s, norms %.2f s, "
           "GEGLU/transposes/adds %.2f s (per pass)\n",
           tf_f[0] / n, tf_f[1] / n, tf_f[2] / n, tf_f[3] / n, tf_b[0] / n, tf_b[1] / n,
           tf_b[2] / n, tf_b[3] / n);
    free(x), free(out), free(dy), free(c), free(dc);
    unet_arena_free(a);
    unet_free(u);
    nn_context_free(ctx);
    return 0;
}
