/* Winograd F(4x4, 3x3) convolution (see conv2d_winograd.h).
 *
 * Matrices: Lavin & Gray (2015), interpolation points 0, 1, -1, 2, -2 and infinity:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *          0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Point (k, q) of a 6x6 transform is index k * 6 + q in every array below.
 *
 * Data flow for one block of tiles (tiles are numbered over batch, tile rows, tile columns):
 *   V[point][in channel][tile]    input transform (zero padding at the borders)
 *   U[point][out channel][in ch]  weight transform, from the stored f32/f16/bf16 weights
 *   M[point][out channel][tile]   36 sgemms M = U V, summed over chunks of input channels
 *   out                           output transform A^T M A (+ bias) into NCHW
 * The tile block (M) takes up to half of the scratch budget, a chunk of input channels (V)
 * and a chunk of the transformed weights (U) a quarter each; the weights are transformed
 * again for every tile block, which costs a few percent of the sgemms (their work per
 * transformed weight is 2 x the tiles of the block).
 *
 * Every transform works on 16 tiles (or 16 input channels for the weights) at once, one per
 * SIMD lane: gather the tiles into a lane-major array, transform with straight-line code in an
 * `omp simd` loop, store 16 consecutive floats per point. An AVX-512 build of the three
 * per-item kernels is chosen at run time when the CPU has it (the code is the same; the
 * compiler vectorises it 16 wide). */
#include "nn/conv2d_winograd.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <string.h>

#define LANES  16
#define POINTS 36
/* Default scratch budget: 28 MiB. */
#define DEFAULT_BUDGET_BYTES ((size_t)28 << 20)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(SDTI_NO_AVX512)
#define WINO_HAVE_AVX512_CODE 1
#else
#define WINO_HAVE_AVX512_CODE 0
#endif

typedef struct WinoPlan {
    int batch, cin, cout, h, w;
    int tiles_h, tiles_w, tiles;
    int block_tiles; /* tiles per block, a multiple of 16 */
    int cin_chunk, cout_chunk;
    /* Output channels M holds: cout (tile block outer, input channels in chunks summed into
     * M) or cout_chunk (all input channels in V at once, output channels in chunks, each
     * output-transformed as soon as computed). */
    int m_rows;
    int backward;
    int fwd_in_ch; /* the stored weights' in_ch (their row length / 9) */
} WinoPlan;

int conv2d_winograd_applies(const Conv2dShape *s) {
    return s->kernel_h == 3 && s->kernel_w == 3 && s->stride == 1 && s->pad_top == 1 &&
           s->pad_left == 1 && s->pad_bottom == 1 && s->pad_right == 1;
}

static int round_up16(long n) {
    return (int)((n + 15) & ~15L);
}

/* Splits `total` into equal chunks of at most `max_chunk` (rounded up to 16, at least 16). */
static int even_chunk(int total, long max_chunk) {
    if (max_chunk < 16)
        max_chunk = 16;
    if (total <= max_chunk)
        return total;
    long chunks = (total + max_chunk - 1) / max_chunk;
    int c = round_up16((total + chunks - 1) / chunks);
    return c < total ? c : total;
}

static WinoPlan plan_of(const Conv2dShape *s, int backward, size_t budget_bytes) {
    WinoPlan p;
    const size_t budget = (budget_bytes ? budget_bytes : DEFAULT_BUDGET_BYTES) / sizeof(float);
    p.batch = s->batch;
    p.cin = backward ? s->out_ch : s->in_ch;
    p.cout = backward ? s->in_ch : s->out_ch;
    p.h = s->in_h;
    p.w = s->in_w;
    p.tiles_h = (p.h + 3) / 4;
    p.tiles_w = (p.w + 3) / 4;
    p.tiles = p.batch * p.tiles_h * p.tiles_w;
    p.backward = backward;
    p.fwd_in_ch = s->in_ch;
    /* The weights are transformed again for every tile block, so fewer blocks is better:
     * either M (all output channels) or V (all input channels) takes half of the budget,
     * whichever allows the larger block. */
    int all_tiles = round_up16(p.tiles);
    long max_a = (long)(budget / 2 / ((size_t)POINTS * p.cout)) & ~15L;
    long max_c = (long)(budget / 2 / ((size_t)POINTS * p.cin)) & ~15L;
    int tiles_a = round_up16(even_chunk(all_tiles, max_a));
    int tiles_c = round_up16(even_chunk(all_tiles, max_c));
    int blocks_a = (all_tiles + tiles_a - 1) / tiles_a;
    int blocks_c = (all_tiles + tiles_c - 1) / tiles_c;
    if (blocks_c < blocks_a) {
        p.block_tiles = tiles_c;
        p.cin_chunk = p.cin;
        p.cout_chunk =
            even_chunk(p.cout, (long)(budget / 2 / ((size_t)POINTS * (p.cin + p.block_tiles))));
        p.m_rows = p.cout_chunk;
    } else {
        p.block_tiles = tiles_a;
        p.cin_chunk = even_chunk(p.cin, (long)(budget / 4 / ((size_t)POINTS * p.block_tiles)));
        p.cout_chunk = even_chunk(p.cout, (long)(budget / 4 / ((size_t)POINTS * p.cin_chunk)));
        p.m_rows = p.cout;
    }
    return p;
}

static size_t plan_floats(const WinoPlan *p) {
    return (size_t)POINTS *
           ((size_t)p->m_rows * p->block_tiles + (size_t)p->cin_chunk * p->block_tiles +
            (size_t)p->cout_chunk * p->cin_chunk);
}

size_t conv2d_winograd_scratch_bytes(const Conv2dShape *s, int backward, size_t budget_bytes) {
    WinoPlan p = plan_of(s, backward, budget_bytes);
    return plan_floats(&p) * sizeof(float);
}

/* ---- per-item kernels: bodies shared by the portable and the AVX-512 build ------------- */

static inline float load_weight(const void *w, DType dt, size_t i) {
    if (dt == DTYPE_F32)
        return ((const float *)w)[i];
    if (dt == DTYPE_BF16) {
        uint32_t bits = (uint32_t)((const uint16_t *)w)[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return f16_to_f32(((const uint16_t *)w)[i]);
}

/* Tile t (numbered over batch, tile rows, tile columns): its image and top-left output pixel. */
static inline void tile_origin(const WinoPlan *p, int t, int *n, int *y0, int *x0) {
    int per_image = p->tiles_h * p->tiles_w;
    int r = t % per_image;
    *n = t / per_image;
    *y0 = 4 * (r / p->tiles_w);
    *x0 = 4 * (r % p->tiles_w);
}

/* 16 floats, one per tile (or channel): GCC / clang vector extension, 16 wide on AVX-512,
 * split into narrower registers by the compiler elsewhere. Used only inside functions (never
 * passed by value), so no ABI depends on it. */
typedef float V16 __attribute__((vector_size(64)));

static inline V16 v16_load(const float *p) {
    V16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v16_store(float *p, V16 v) {
    memcpy(p, &v, sizeof v);
}

/* V for 16 tiles from tile t (`valid` of them real, the rest zero) of input channel c:
 * v[point * pstride + lane]. */
__attribute__((always_inline)) static inline void input_item_body(const WinoPlan *p,
                                                                  const float *in, int t, int valid,
                                                                  int c, float *v, size_t pstride) {
    _Alignas(64) float d[POINTS][LANES];
    size_t hw = (size_t)p->h * p->w;
    for (int l = 0; l < LANES; l++) {
        if (l >= valid) {
            for (int k = 0; k < POINTS; k++)
                d[k][l] = 0.0f;
            continue;
        }
        int n, y0, x0;
        tile_origin(p, t + l, &n, &y0, &x0);
        y0--; /* the halo: padding 1 */
        x0--;
        const float *plane = in + ((size_t)n * p->cin + c) * hw;
        if (y0 >= 0 && x0 >= 0 && y0 + 6 <= p->h && x0 + 6 <= p->w) {
            const float *src = plane + (size_t)y0 * p->w + x0;
            for (int r = 0; r < 6; r++)
                for (int q = 0; q < 6; q++)
                    d[r * 6 + q][l] = src[(size_t)r * p->w + q];
        } else {
            for (int r = 0; r < 6; r++)
                for (int q = 0; q < 6; q++) {
                    int y = y0 + r, x = x0 + q;
                    d[r * 6 + q][l] = y >= 0 && y < p->h && x >= 0 && x < p->w
                                          ? plane[(size_t)y * p->w + x]
                                          : 0.0f;
                }
        }
    }
    V16 t6[POINTS];
    for (int q = 0; q < 6; q++) { /* columns: B^T d */
        V16 d0 = v16_load(d[q]), d1 = v16_load(d[6 + q]), d2 = v16_load(d[12 + q]);
        V16 d3 = v16_load(d[18 + q]), d4 = v16_load(d[24 + q]), d5 = v16_load(d[30 + q]);
        t6[q] = 4.0f * d0 - 5.0f * d2 + d4;
        t6[6 + q] = (d3 + d4) - 4.0f * (d1 + d2);
        t6[12 + q] = (d4 - d3) + 4.0f * (d1 - d2);
        t6[18 + q] = (d4 - d2) + 2.0f * (d3 - d1);
        t6[24 + q] = (d4 - d2) - 2.0f * (d3 - d1);
        t6[30 + q] = 4.0f * d1 - 5.0f * d3 + d5;
    }
    for (int k = 0; k < 6; k++) { /* rows: (B^T d) B */
        const V16 *r = &t6[k * 6];
        float *o = v + (size_t)k * 6 * pstride;
        v16_store(o, 4.0f * r[0] - 5.0f * r[2] + r[4]);
        v16_store(o + pstride, (r[3] + r[4]) - 4.0f * (r[1] + r[2]));
        v16_store(o + 2 * pstride, (r[4] - r[3]) + 4.0f * (r[1] - r[2]));
        v16_store(o + 3 * pstride, (r[4] - r[2]) + 2.0f * (r[3] - r[1]));
        v16_store(o + 4 * pstride, (r[4] - r[2]) - 2.0f * (r[3] - r[1]));
        v16_store(o + 5 * pstride, 4.0f * r[1] - 5.0f * r[3] + r[5]);
    }
}

/* U for 16 lanes of one row of the stored weights w[row][lane0 + l][3][3] (`valid` lanes
 * real): u[point * pstride + lane]. Forward: row = output channel, lanes = input channels;
 * backward: row = the forward's output channel, lanes = its input channels, kernel flipped.
 * Either way the 16 x 9 weights are one contiguous run. */
__attribute__((always_inline)) static inline void weight_item_body(const WinoPlan *p, const void *w,
                                                                   DType dt, int o, int c,
                                                                   int valid, float *u,
                                                                   size_t pstride) {
    _Alignas(64) float g[9][LANES];
    const size_t sc = 9;
    int flip = p->backward ? 8 : 0;
    size_t base = (size_t)o * p->fwd_in_ch * 9 + (size_t)c * sc;
    if (dt == DTYPE_F32) {
        const float *wf = (const float *)w + base;
        for (int l = 0; l < valid; l++)
            for (int k = 0; k < 9; k++)
                g[k][l] = wf[(size_t)l * sc + (size_t)(flip ? 8 - k : k)];
    } else if (dt == DTYPE_BF16) {
        const uint16_t *wh = (const uint16_t *)w + base;
        for (int l = 0; l < valid; l++)
            for (int k = 0; k < 9; k++) {
                uint32_t bits = (uint32_t)wh[(size_t)l * sc + (size_t)(flip ? 8 - k : k)] << 16;
                memcpy(&g[k][l], &bits, sizeof bits);
            }
    } else {
        for (int l = 0; l < valid; l++)
            for (int k = 0; k < 9; k++)
                g[k][l] = load_weight(w, dt, base + (size_t)l * sc + (size_t)(flip ? 8 - k : k));
    }
    for (int l = valid; l < LANES; l++)
        for (int k = 0; k < 9; k++)
            g[k][l] = 0.0f;
    V16 t6[18]; /* G g: 6 rows x 3 columns */
    for (int q = 0; q < 3; q++) {
        V16 g0 = v16_load(g[q]), g1 = v16_load(g[3 + q]), g2 = v16_load(g[6 + q]);
        t6[q] = 0.25f * g0;
        t6[3 + q] = (-1.0f / 6.0f) * (g0 + g1 + g2);
        t6[6 + q] = (-1.0f / 6.0f) * (g0 - g1 + g2);
        t6[9 + q] = (1.0f / 24.0f) * g0 + (1.0f / 12.0f) * g1 + (1.0f / 6.0f) * g2;
        t6[12 + q] = (1.0f / 24.0f) * g0 - (1.0f / 12.0f) * g1 + (1.0f / 6.0f) * g2;
        t6[15 + q] = g2;
    }
    _Alignas(64) float out[POINTS][LANES];
    for (int k = 0; k < 6; k++) { /* (G g) G^T */
        V16 g0 = t6[k * 3], g1 = t6[k * 3 + 1], g2 = t6[k * 3 + 2];
        V16 r[6] = {0.25f * g0,
                    (-1.0f / 6.0f) * (g0 + g1 + g2),
                    (-1.0f / 6.0f) * (g0 - g1 + g2),
                    (1.0f / 24.0f) * g0 + (1.0f / 12.0f) * g1 + (1.0f / 6.0f) * g2,
                    (1.0f / 24.0f) * g0 - (1.0f / 12.0f) * g1 + (1.0f / 6.0f) * g2,
                    g2};
        for (int q = 0; q < 6; q++) {
            if (valid == LANES)
                v16_store(u + (size_t)(k * 6 + q) * pstride, r[q]);
            else
                v16_store(out[k * 6 + q], r[q]);
        }
    }
    if (valid < LANES)
        for (int k = 0; k < POINTS; k++)
            for (int l = 0; l < valid; l++)
                u[(size_t)k * pstride + l] = out[k][l];
}

/* Output channel o of 16 tiles from t (`valid` real) from m[point * pstride + lane]. */
__attribute__((always_inline)) static inline void output_item_body(const WinoPlan *p,
                                                                   const float *m, size_t pstride,
                                                                   int t, int valid, int o,
                                                                   float bias, float *out) {
    _Alignas(64) float y[16][LANES];
    V16 t4[24]; /* A^T M: 4 rows x 6 columns */
    for (int q = 0; q < 6; q++) {
        V16 m0 = v16_load(m + (size_t)q * pstride), m1 = v16_load(m + (size_t)(6 + q) * pstride);
        V16 m2 = v16_load(m + (size_t)(12 + q) * pstride);
        V16 m3 = v16_load(m + (size_t)(18 + q) * pstride);
        V16 m4 = v16_load(m + (size_t)(24 + q) * pstride);
        V16 m5 = v16_load(m + (size_t)(30 + q) * pstride);
        V16 s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
        t4[q] = m0 + s12 + s34;
        t4[6 + q] = d12 + 2.0f * d34;
        t4[12 + q] = s12 + 4.0f * s34;
        t4[18 + q] = d12 + 8.0f * d34 + m5;
    }
    for (int i = 0; i < 4; i++) { /* (A^T M) A */
        const V16 *r = &t4[i * 6];
        V16 s12 = r[1] + r[2], d12 = r[1] - r[2], s34 = r[3] + r[4], d34 = r[3] - r[4];
        v16_store(y[i * 4], r[0] + s12 + s34 + bias);
        v16_store(y[i * 4 + 1], d12 + 2.0f * d34 + bias);
        v16_store(y[i * 4 + 2], s12 + 4.0f * s34 + bias);
        v16_store(y[i * 4 + 3], d12 + 8.0f * d34 + r[5] + bias);
    }
    size_t hw = (size_t)p->h * p->w;
    for (int l = 0; l < valid; l++) {
        int n, y0, x0;
        tile_origin(p, t + l, &n, &y0, &x0);
        float *plane = out + ((size_t)n * p->cout + o) * hw;
        int rows = p->h - y0 < 4 ? p->h - y0 : 4, cols = p->w - x0 < 4 ? p->w - x0 : 4;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                plane[(size_t)(y0 + i) * p->w + x0 + j] = y[i * 4 + j][l];
    }
}

static void input_item_portable(const WinoPlan *p, const float *in, int t, int valid, int c,
                                float *v, size_t pstride) {
    input_item_body(p, in, t, valid, c, v, pstride);
}
static void weight_item_portable(const WinoPlan *p, const void *w, DType dt, int o, int c,
                                 int valid, float *u, size_t pstride) {
    weight_item_body(p, w, dt, o, c, valid, u, pstride);
}
static void output_item_portable(const WinoPlan *p, const float *m, size_t pstride, int t,
                                 int valid, int o, float bias, float *out) {
    output_item_body(p, m, pstride, t, valid, o, bias, out);
}

#if WINO_HAVE_AVX512_CODE
__attribute__((target("avx512f"))) static void input_item_avx512(const WinoPlan *p, const float *in,
                                                                 int t, int valid, int c, float *v,
                                                                 size_t pstride) {
    input_item_body(p, in, t, valid, c, v, pstride);
}
__attribute__((target("avx512f"))) static void weight_item_avx512(const WinoPlan *p, const void *w,
                                                                  DType dt, int o, int c, int valid,
                                                                  float *u, size_t pstride) {
    weight_item_body(p, w, dt, o, c, valid, u, pstride);
}
__attribute__((target("avx512f"))) static void output_item_avx512(const WinoPlan *p, const float *m,
                                                                  size_t pstride, int t, int valid,
                                                                  int o, float bias, float *out) {
    output_item_body(p, m, pstride, t, valid, o, bias, out);
}
#endif

typedef struct WinoKernels {
    void (*input)(const WinoPlan *, const float *, int, int, int, float *, size_t);
    void (*weight)(const WinoPlan *, const void *, DType, int, int, int, float *, size_t);
    void (*output)(const WinoPlan *, const float *, size_t, int, int, int, float, float *);
} WinoKernels;

static WinoKernels kernels_for_cpu(void) {
    WinoKernels k = {input_item_portable, weight_item_portable, output_item_portable};
#if WINO_HAVE_AVX512_CODE
    if (__builtin_cpu_supports("avx512f")) {
        k.input = input_item_avx512;
        k.weight = weight_item_avx512;
        k.output = output_item_avx512;
    }
#endif
    return k;
}

/* ---- the stages, each parallel over its items ------------------------------------------ */

/* v[(point * nc + c) * ld + j] for tiles t0 .. t0 + nt - 1 (zeros up to ld), channels c0.. */
static void input_stage(const WinoKernels *k, const WinoPlan *p, const float *in, int t0, int nt,
                        int ld, int c0, int nc, float *v) {
    int groups = ld / LANES;
    long items = (long)groups * nc;
#pragma omp parallel for schedule(static)
    for (long it = 0; it < items; it++) {
        int g = (int)(it / nc), c = (int)(it % nc);
        k->input(p, in, t0 + g * LANES, nt - g * LANES, c0 + c, v + (size_t)c * ld + g * LANES,
                 (size_t)nc * ld);
    }
}

/* u[(point * no + o) * nc + c] for effective output channels o0.., input channels c0.. */
static void weight_stage(const WinoKernels *k, const WinoPlan *p, const void *w, DType dt, int o0,
                         int no, int c0, int nc, float *u) {
    /* Forward: u[point][o][c] from rows o, lanes c. Backward: u[point][c][o] (the sgemm
     * reads it transposed) from rows c, lanes o, so that the lanes are contiguous weights in
     * both directions. */
    int rows = p->backward ? nc : no, lanes = p->backward ? no : nc;
    int row0 = p->backward ? c0 : o0, lane0 = p->backward ? o0 : c0;
    int groups = (lanes + LANES - 1) / LANES;
    long items = (long)rows * groups;
#pragma omp parallel for schedule(static)
    for (long it = 0; it < items; it++) {
        int r = (int)(it / groups), g = (int)(it % groups);
        int valid = lanes - g * LANES < LANES ? lanes - g * LANES : LANES;
        k->weight(p, w, dt, row0 + r, lane0 + g * LANES, valid, u + (size_t)r * lanes + g * LANES,
                  (size_t)no * nc);
    }
}

/* m[(point * m_rows + row0 + o) * ld + j] (+)= sum_c u[point][o][c] v[point][c][j] */
static int gemm_stage(const WinoPlan *p, const float *u, const float *v, int row0, int no, int nc,
                      int ld, float beta, float *m) {
    int failed = 0;
#pragma omp parallel for schedule(static) reduction(| : failed)
    for (int pt = 0; pt < POINTS; pt++) {
        dnnl_status_t st =
            dnnl_sgemm(p->backward ? 'T' : 'N', 'N', no, ld, nc, 1.0f, u + (size_t)pt * no * nc,
                       p->backward ? no : nc, v + (size_t)pt * nc * ld, ld, beta,
                       m + ((size_t)pt * p->m_rows + row0) * ld, ld);
        failed |= st != dnnl_success;
    }
    return failed ? -1 : 0;
}

/* Output channels o0 .. o0 + no - 1, held in M's rows 0 .. no - 1. */
static void output_stage(const WinoKernels *k, const WinoPlan *p, const float *m, int t0, int nt,
                         int ld, int o0, int no, const float *bias, float *out) {
    int groups = (nt + LANES - 1) / LANES;
    long items = (long)no * groups;
#pragma omp parallel for schedule(static)
    for (long it = 0; it < items; it++) {
        int o = (int)(it / groups), g = (int)(it % groups);
        k->output(p, m + (size_t)o * ld + g * LANES, (size_t)p->m_rows * ld, t0 + g * LANES,
                  nt - g * LANES < LANES ? nt - g * LANES : LANES, o0 + o,
                  bias ? bias[o0 + o] : 0.0f, out);
    }
}

static int winograd_run(const Conv2dShape *s, int backward, const float *in, const void *w,
                        DType dt, const float *bias, float *out, float *scratch,
                        size_t budget_bytes, Error *err) {
    if (!conv2d_winograd_applies(s))
        return error_set(err,
                         "conv2d winograd: only 3x3 stride-1 pad-1 convolutions (got %dx%d "
                         "stride %d)",
                         s->kernel_h, s->kernel_w, s->stride);
    if (dt != DTYPE_F32 && dt != DTYPE_F16 && dt != DTYPE_BF16)
        return error_set(err, "conv2d winograd: weights of dtype %s (want f32, f16 or bf16)",
                         dtype_display_name(dt));
    WinoKernels k = kernels_for_cpu();
    WinoPlan p = plan_of(s, backward, budget_bytes);
    float *m = scratch;
    float *v = m + (size_t)POINTS * p.m_rows * p.block_tiles;
    float *u = v + (size_t)POINTS * p.cin_chunk * p.block_tiles;
    for (int t0 = 0; t0 < p.tiles; t0 += p.block_tiles) {
        int nt = p.tiles - t0 < p.block_tiles ? p.tiles - t0 : p.block_tiles;
        int ld = round_up16(nt);
        for (int c0 = 0; c0 < p.cin; c0 += p.cin_chunk) {
            int nc = p.cin - c0 < p.cin_chunk ? p.cin - c0 : p.cin_chunk;
            input_stage(&k, &p, in, t0, nt, ld, c0, nc, v);
            for (int o0 = 0; o0 < p.cout; o0 += p.cout_chunk) {
                int no = p.cout - o0 < p.cout_chunk ? p.cout - o0 : p.cout_chunk;
                weight_stage(&k, &p, w, dt, o0, no, c0, nc, u);
                int row0 = p.m_rows == p.cout ? o0 : 0;
                if (gemm_stage(&p, u, v, row0, no, nc, ld, c0 ? 1.0f : 0.0f, m))
                    return error_set(err, "conv2d winograd: oneDNN sgemm failed");
                if (p.m_rows != p.cout) /* every input channel is in: finish this chunk */
                    output_stage(&k, &p, m, t0, nt, ld, o0, no, bias, out);
            }
        }
        if (p.m_rows == p.cout)
            output_stage(&k, &p, m, t0, nt, ld, 0, p.cout, bias, out);
    }
    return 0;
}

int conv2d_winograd_forward(const Conv2dShape *s, const float *x, const void *w, DType w_dtype,
                            const float *bias, float *y, float *scratch, size_t budget_bytes,
                            Error *err) {
    return winograd_run(s, 0, x, w, w_dtype, bias, y, scratch, budget_bytes, err);
}

int conv2d_winograd_backward_input(const Conv2dShape *s, const float *dy, const void *w,
                                   DType w_dtype, float *dx, float *scratch, size_t budget_bytes,
                                   Error *err) {
    return winograd_run(s, 1, dy, w, w_dtype, NULL, dx, scratch, budget_bytes, err);
}
