/* Tiled products with 16-bit right-hand operands: see gemm_half.h.
 *
 * Each tile of b (tile_n columns of the result by tile_k summed values) is widened into the
 * calling thread's buffer and multiplied by a single-threaded oneDNN sgemm (oneDNN runs its
 * kernels sequentially when called inside an OpenMP parallel region). Threads own whole
 * column tiles of c, so they never write the same values; within a column tile the k tiles
 * are summed in order, the first one applying the caller's beta. */
#include "nn/gemm_half.h"

#include "nn/nn_context_internal.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* Measured with bench/bench_linear_half at SD1.5's shapes (docs/design.md):
 * - up to CHUNKED_MIN_ROWS rows (the UNet's 16x16 and 8x8 levels, the text encoder's 77
 *   tokens) each thread widens tiles of 256 columns by up to 1024 summed values (1 MiB, half
 *   of this machine's 2 MiB L2, the rest for sgemm's packed copy of a) and multiplies them
 *   single-threaded: 0.8-1.0x the time of float32 weights, where widening the whole weight
 *   first took 1.2-1.6x;
 * - with more rows (64x64 and 32x32 levels) a is large and re-reading it for every column
 *   tile costs more than the weight: chunks of CHUNK_FLOATS widened values (4 MiB) are
 *   multiplied by multi-threaded sgemm, as fast as float32 weights there. */
enum {
    DEFAULT_TILE_FLOATS = 1 << 18,
    DEFAULT_TILE_N = 256,
    MIN_TILE_N = 16,
    CHUNKED_MIN_ROWS = 512,
    CHUNK_FLOATS = 1 << 20
};

static void widen_bf16(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(v, 16));
    }
#elif defined(__AVX2__)
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(v, 16));
    }
#endif
    for (; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}

static void widen_f16(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
#endif
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++)
        dst[i] = f16_to_f32(src[i]);
}

void half_widen(DType bt, const void *src, float *dst, size_t n) {
    if (bt == DTYPE_BF16)
        widen_bf16(src, dst, n);
    else
        widen_f16(src, dst, n);
}

/* The calling context's per-thread tile buffers, grown on first use and kept (a few MiB). */
static float *tile_buffers(NnContext *ctx, size_t floats_per_thread, Error *err) {
    size_t need = floats_per_thread * (size_t)ctx->threads;
    if (ctx->half_tile_floats >= need)
        return ctx->half_tiles;
    free(ctx->half_tiles);
    ctx->half_tiles = NULL;
    ctx->half_tile_floats = 0;
    void *p = NULL;
    if (posix_memalign(&p, 64, need * sizeof(float)) != 0) {
        error_set(err, "gemm_half: out of memory for %zu KiB of weight tiles",
                  need * sizeof(float) / 1024);
        return NULL;
    }
    ctx->half_tiles = p;
    ctx->half_tile_floats = need;
    return p;
}

static int round_up(int v, int to) {
    return (v + to - 1) / to * to;
}

/* Chunks of whole rows of b widened by all threads, one multi-threaded sgemm per chunk. */
static int gemm_half_chunked(NnContext *ctx, char transb, int m, int n, int k, const float *a,
                             int lda, const uint16_t *b, DType bt, int ldb, float beta, float *c,
                             int ldc, size_t chunk, Error *err) {
    int cols = transb == 'T' ? k : n, rows = transb == 'T' ? n : k;
    int per = (int)(chunk / (size_t)cols);
    if (per < 16)
        per = 16;
    if (per > rows)
        per = rows;
    int chunks = (rows + per - 1) / per;
    per = (rows + chunks - 1) / chunks;
    float *buf = tile_buffers(ctx, ((size_t)per * cols + ctx->threads - 1) / ctx->threads, err);
    if (!buf)
        return -1;
    for (int r0 = 0; r0 < rows; r0 += per) {
        int rb = rows - r0 < per ? rows - r0 : per;
#pragma omp parallel for schedule(static)
        for (int j = 0; j < rb; j++)
            half_widen(bt, b + (size_t)(r0 + j) * ldb, buf + (size_t)j * cols, (size_t)cols);
        dnnl_status_t st;
        if (transb == 'T')
            st = dnnl_sgemm('N', 'T', m, rb, k, 1.0f, a, lda, buf, cols, beta, c + r0, ldc);
        else
            st = dnnl_sgemm('N', 'N', m, n, rb, 1.0f, a + r0, lda, buf, cols, r0 == 0 ? beta : 1.0f,
                            c, ldc);
        if (st != dnnl_success)
            return error_set(err, "gemm_half: oneDNN sgemm failed (m=%d n=%d k=%d)", m, n, k);
    }
    return 0;
}

int gemm_half(NnContext *ctx, char transb, int m, int n, int k, const float *a, int lda,
              const void *b, DType bt, int ldb, float beta, float *c, int ldc,
              const GemmHalfTiles *tiles, Error *err) {
    if (bt != DTYPE_F16 && bt != DTYPE_BF16)
        return error_set(err, "gemm_half: weights must be float16 or bfloat16, got %s",
                         dtype_display_name(bt));
    if ((transb != 'T' && transb != 'N') || m < 0 || n <= 0 || k <= 0)
        return error_set(err, "gemm_half: bad arguments (transb %c, m=%d n=%d k=%d)", transb, m, n,
                         k);
    if (m == 0)
        return 0;
    if (tiles ? tiles->chunked : m >= CHUNKED_MIN_ROWS)
        return gemm_half_chunked(ctx, transb, m, n, k, a, lda, b, bt, ldb, beta, c, ldc,
                                 tiles && tiles->chunk ? tiles->chunk : CHUNK_FLOATS, err);
    int threads = ctx->threads > 0 ? ctx->threads : 1;
    /* Column tiles: about DEFAULT_TILE_N wide, a multiple of 16 (sgemm's vector width), and
     * as many as a multiple of the thread count so the threads get equal shares. */
    int want_n = tiles && tiles->n > 0 ? tiles->n : DEFAULT_TILE_N;
    int n_tiles = (n + want_n - 1) / want_n;
    n_tiles = round_up(n_tiles, threads);
    int tile_n = round_up((n + n_tiles - 1) / n_tiles, MIN_TILE_N);
    if (tile_n > n)
        tile_n = n;
    n_tiles = (n + tile_n - 1) / tile_n;
    int tile_k = tiles && tiles->k > 0 ? tiles->k : DEFAULT_TILE_FLOATS / tile_n;
    if (tile_k > k)
        tile_k = k;
    /* equal k tiles, so no thin last one */
    int k_tiles = (k + tile_k - 1) / tile_k;
    tile_k = (k + k_tiles - 1) / k_tiles;
    size_t per_thread = (size_t)tile_n * tile_k;
    float *buffers = tile_buffers(ctx, per_thread, err);
    if (!buffers)
        return -1;
    const uint16_t *bh = b;
    int failed = 0;
#pragma omp parallel for schedule(static) num_threads(threads) if (n_tiles > 1)
    for (int t = 0; t < n_tiles; t++) {
        float *buf = buffers + (size_t)omp_get_thread_num() * per_thread;
        int n0 = t * tile_n, nb = n - n0 < tile_n ? n - n0 : tile_n;
        for (int k0 = 0; k0 < k; k0 += tile_k) {
            int kb = k - k0 < tile_k ? k - k0 : tile_k;
            dnnl_status_t st;
            float bet = k0 == 0 ? beta : 1.0f;
            if (transb == 'T') {
                /* rows n0.. of b, values k0..: buf is [nb, kb] */
                for (int j = 0; j < nb; j++)
                    half_widen(bt, bh + (size_t)(n0 + j) * ldb + k0, buf + (size_t)j * kb,
                               (size_t)kb);
                st = dnnl_sgemm('N', 'T', m, nb, kb, 1.0f, a + k0, lda, buf, kb, bet, c + n0, ldc);
            } else {
                /* rows k0.. of b, columns n0..: buf is [kb, nb] */
                for (int j = 0; j < kb; j++)
                    half_widen(bt, bh + (size_t)(k0 + j) * ldb + n0, buf + (size_t)j * nb,
                               (size_t)nb);
                st = dnnl_sgemm('N', 'N', m, nb, kb, 1.0f, a + k0, lda, buf, nb, bet, c + n0, ldc);
            }
            if (st != dnnl_success) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    if (failed)
        return error_set(err, "gemm_half: oneDNN sgemm failed (m=%d n=%d k=%d)", m, n, k);
    return 0;
}
