/* Memory-efficient scaled dot-product attention (FlashAttention-2's algorithm on the CPU).
 *
 * Forward, per (batch, head, query tile): walk the key/value tiles keeping, for each query
 * row, the running maximum m and running sum l of exp(s - m) over the scores seen so far; the
 * output accumulator is rescaled by exp(m_old - m_new) whenever the maximum grows. At the end
 * out = acc / l and lse = m + log l. Only a [q_tile x kv_tile] score block exists at a time.
 *
 * Backward, per (batch, head) (optionally split over query ranges): with D = rowsum(dO * O),
 * for every (query tile, key tile) pair recompute P = exp(S * scale - lse), then
 *   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ += scale dS K,  dK += scale dS^T Q.
 * A (batch, head) task owns its dK/dV columns, so no two threads write the same element;
 * when there are fewer such tasks than needed to balance the threads, query ranges get
 * private dK/dV buffers that are summed afterwards.
 *
 * The block products are attention_kernels.c's single-threaded kernels on strided views
 * (heads are interleaved in the width, so a head's rows are head_dim floats every
 * heads * head_dim); K (and V for the backward) are first transposed per (batch, head), once
 * per call, so every product streams contiguous rows. OpenMP runs the tasks. */
#include "nn/attention.h"

#include "nn/attention_internal.h"
#include "nn/attention_kernels.h"
#include "nn/nn_context_internal.h"

#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_shape(const char *where, const AttentionShape *s, const AttentionTiles *t,
                       Error *err) {
    if (!s)
        return error_set(err, "%s: no shape given", where);
    if (s->batch <= 0 || s->heads <= 0 || s->q_len <= 0 || s->kv_len <= 0 || s->head_dim <= 0)
        return error_set(err,
                         "%s: bad shape batch=%d heads=%d q_len=%d kv_len=%d head_dim=%d (all "
                         "must be > 0)",
                         where, s->batch, s->heads, s->q_len, s->kv_len, s->head_dim);
    if (!isfinite(s->scale))
        return error_set(err, "%s: the scale is not a finite number", where);
    if (t && (t->q_tile <= 0 || t->kv_tile <= 0))
        return error_set(err, "%s: bad tiles %d x %d", where, t->q_tile, t->kv_tile);
    return 0;
}

AttentionTiles attention_default_tiles(const AttentionShape *s, int backward) {
    (void)s;
    AttentionTiles t = {backward ? 64 : 64, backward ? 128 : 256};
    return t;
}

/* 64-byte aligned float scratch: n floats per thread, `threads` threads. */
static float *scratch_alloc(size_t per_thread, int threads) {
    per_thread = (per_thread + 15) & ~(size_t)15;
    size_t bytes = per_thread * (size_t)threads * sizeof(float);
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* Last key index + 1 that query rows [i0, i0 + nq) may see. */
static int visible_keys(const AttentionShape *s, int i0, int nq) {
    if (!s->causal)
        return s->kv_len;
    int end = i0 + nq;
    return end < s->kv_len ? end : s->kv_len;
}

/* Sets scores of keys j0 + j later than query i0 + i to -inf (top-left aligned causal mask,
 * as torch's is_causal). */
static void mask_causal(float *S, int ldS, int i0, int nq, int j0, int nk) {
    for (int i = 0; i < nq; i++) {
        int first_hidden = i0 + i + 1 - j0; /* columns >= this are in the future */
        if (first_hidden < 0)
            first_hidden = 0;
        for (int j = first_hidden; j < nk; j++)
            S[(size_t)i * ldS + j] = -INFINITY;
    }
}

/* Keys (or values) transposed tile by tile: for each (batch, head) and key tile of `tile` rows,
 * a [d x tile] block (rows of the last tile padded to `tile`), so a score product reads its B
 * operand from one contiguous block. (One [d x L] matrix per head would put B's rows L floats
 * apart: at L = 4096 that is 16 KiB, and the 40 rows of a head_dim 40 product would fight
 * over one L1 set.) Called inside a parallel region; ends with a barrier. */
static size_t tiled_size(const AttentionShape *s, int tile) {
    size_t tiles = (size_t)(s->kv_len + tile - 1) / tile;
    return (size_t)s->batch * s->heads * s->head_dim * tiles * tile;
}

/* One head's rows [L x d] (row stride ld) into tile-transposed blocks (see above). */
static void transpose_head(const float *head, int L, int d, ptrdiff_t ld, int tile, float *out) {
    for (int j0 = 0; j0 < L; j0 += tile) {
        const int n = L - j0 < tile ? L - j0 : tile;
        attn_transpose(head + (size_t)j0 * ld, n, d, ld, out + (size_t)j0 * d, tile);
    }
}

/* The per-call re-layouts, all in one parallel loop over (batch, head) so that they cost one
 * barrier (on a loaded machine a barrier can wait a whole scheduler slice):
 *   kt: K tile-transposed (always); vt: V tile-transposed (NULL: not needed);
 *   vg: V gathered per head, [B][H][L][d] (NULL: not needed), so P V streams contiguous
 *       rows instead of d floats out of every H * d.
 * Called inside a parallel region; ends with a barrier. */
static void prepare_heads(const AttentionShape *s, int tile, const float *k, float *kt,
                          const float *v, float *vt, float *vg) {
    const int H = s->heads, d = s->head_dim, L = s->kv_len;
    const ptrdiff_t ld = (ptrdiff_t)H * d;
    const size_t per_head = (size_t)d * (size_t)((L + tile - 1) / tile) * tile;
#pragma omp for schedule(static)
    for (int bh = 0; bh < s->batch * H; bh++) {
        const size_t off = (size_t)(bh / H) * L * ld + (size_t)(bh % H) * d;
        transpose_head(k + off, L, d, ld, tile, kt + (size_t)bh * per_head);
        if (vt)
            transpose_head(v + off, L, d, ld, tile, vt + (size_t)bh * per_head);
        if (vg)
            for (int j = 0; j < L; j++)
                memcpy(vg + ((size_t)bh * L + j) * d, v + off + (size_t)j * ld,
                       (size_t)d * sizeof *vg);
    }
}

/* The start of key tile j0's transposed block for (b, h) in prepare_heads' layout. */
static const float *tile_block(const AttentionShape *s, int tile, const float *all, int b, int h,
                               int j0) {
    const size_t tiles = (size_t)(s->kv_len + tile - 1) / tile;
    return all + ((size_t)b * s->heads + h) * s->head_dim * tiles * tile + (size_t)j0 * s->head_dim;
}

int attention_forward_tiled(NnContext *ctx, const AttentionShape *s, const AttentionTiles *t,
                            const float *q, const float *k, const float *v, float *out, float *lse,
                            Error *err) {
    if (check_shape("attention_forward", s, t, err))
        return -1;
    if (!q || !k || !v || !out)
        return error_set(err, "attention_forward: q, k, v and out are required");
    const int B = s->batch, H = s->heads, Lq = s->q_len, Lk = s->kv_len, d = s->head_dim;
    const int ld = H * d;
    const int Bq = t->q_tile < Lq ? t->q_tile : Lq;
    const int Bk = t->kv_tile < Lk ? t->kv_tile : Lk;
    const int nqt = (Lq + Bq - 1) / Bq;
    const int threads = ctx ? ctx->threads : 1;
    /* S [Bq x Bk], acc [Bq x d], m and l [Bq] */
    const size_t per_thread = (size_t)Bq * Bk + (size_t)Bq * d + 2 * (size_t)Bq;
    const size_t stride = (per_thread + 15) & ~(size_t)15;
    float *scratch = scratch_alloc(per_thread, threads);
    /* K transposed per (batch, head): [B][H][d][Lk], so score tiles read contiguous keys. */
    float *kt_all = malloc((tiled_size(s, Bk) + (size_t)B * H * Lk * d) * sizeof *kt_all);
    float *v_all = kt_all ? kt_all + tiled_size(s, Bk) : NULL;
    if (!scratch || !kt_all) {
        free(scratch);
        free(kt_all);
        return error_set(err,
                         "attention_forward: out of memory for scratch (%d x %zu floats) "
                         "and the transposed keys (%zu floats)",
                         threads, per_thread, tiled_size(s, Bk));
    }
    const long long tasks = (long long)B * H * nqt;
    const float scale = s->scale;

#pragma omp parallel num_threads(threads)
    {
        prepare_heads(s, Bk, k, kt_all, v, NULL, v_all);
        float *S = scratch + stride * (size_t)omp_get_thread_num();
        float *acc = S + (size_t)Bq * Bk;
        float *m = acc + (size_t)Bq * d;
        float *l = m + Bq;
#pragma omp for schedule(dynamic, 1)
        for (long long task = 0; task < tasks; task++) {
            const int qt = (int)(task % nqt);
            const int h = (int)((task / nqt) % H);
            const int b = (int)(task / ((long long)nqt * H));
            const int i0 = qt * Bq;
            const int nq = Lq - i0 < Bq ? Lq - i0 : Bq;
            const float *qb = q + ((size_t)b * Lq + i0) * ld + (size_t)h * d;
            const float *vb = v_all + ((size_t)b * H + h) * Lk * d;
            const int kend = visible_keys(s, i0, nq);
            for (int i = 0; i < nq; i++) {
                m[i] = -INFINITY;
                l[i] = 0.0f;
            }
            memset(acc, 0, (size_t)nq * d * sizeof *acc);
            for (int j0 = 0; j0 < kend; j0 += Bk) {
                const int nk = kend - j0 < Bk ? kend - j0 : Bk;
                attn_gemm(nq, nk, d, scale, qb, ld, 1, tile_block(s, Bk, kt_all, b, h, j0), Bk,
                          0.0f, S, Bk);
                if (s->causal && j0 + nk - 1 > i0)
                    mask_causal(S, Bk, i0, nq, j0, nk);
                for (int i = 0; i < nq; i++) {
                    float *row = S + (size_t)i * Bk;
                    float mx = attn_row_max(row, nk);
                    if (mx < m[i])
                        mx = m[i];
                    if (mx == -INFINITY) { /* every key so far hidden: nothing to add */
                        memset(row, 0, (size_t)nk * sizeof *row);
                        continue;
                    }
                    float sum = attn_exp_sub_sum(row, nk, mx);
                    if (m[i] == -INFINITY) { /* first keys of this row: acc and l are zero */
                        l[i] = sum;
                    } else {
                        float corr = expf(m[i] - mx);
                        if (corr != 1.0f)
                            attn_scale(acc + (size_t)i * d, acc + (size_t)i * d, d, corr);
                        l[i] = l[i] * corr + sum;
                    }
                    m[i] = mx;
                }
                attn_gemm(nq, d, nk, 1.0f, S, Bk, 1, vb + (size_t)j0 * d, d, 1.0f, acc, d);
            }
            float *ob = out + ((size_t)b * Lq + i0) * ld + (size_t)h * d;
            for (int i = 0; i < nq; i++)
                attn_scale(ob + (size_t)i * ld, acc + (size_t)i * d, d, 1.0f / l[i]);
            if (lse) {
                float *lr = lse + ((size_t)b * H + h) * Lq + i0;
                for (int i = 0; i < nq; i++)
                    lr[i] = m[i] + logf(l[i]);
            }
        }
    }
    free(kt_all);
    free(scratch);
    return 0;
}

int attention_forward(NnContext *ctx, const AttentionShape *s, const float *q, const float *k,
                      const float *v, float *out, float *lse, Error *err) {
    if (check_shape("attention_forward", s, NULL, err))
        return -1;
    AttentionTiles t = attention_default_tiles(s, 0);
    return attention_forward_tiled(ctx, s, &t, q, k, v, out, lse, err);
}

/* Query ranges per (batch, head) in the backward: 1 when the (batch, head) tasks already
 * spread evenly over the threads, otherwise enough to balance them (each range then needs
 * private dK/dV buffers). */
static int backward_splits(const AttentionShape *s, int threads, int nqt) {
    int bh = s->batch * s->heads;
    if (threads <= 1 || (bh % threads == 0) || bh >= 8 * threads)
        return 1;
    int split = threads;
    return split < nqt ? split : nqt;
}

int attention_backward_input_tiled(NnContext *ctx, const AttentionShape *s, const AttentionTiles *t,
                                   const float *q, const float *k, const float *v, const float *out,
                                   const float *lse, const float *dout, float *dq, float *dk,
                                   float *dv, Error *err) {
    if (check_shape("attention_backward_input", s, t, err))
        return -1;
    if (!q || !k || !v || !out || !lse || !dout)
        return error_set(err, "attention_backward_input: q, k, v, out, lse and dout are required");
    if (!dq && !dk && !dv)
        return 0;
    const int B = s->batch, H = s->heads, Lq = s->q_len, Lk = s->kv_len, d = s->head_dim;
    const int ld = H * d;
    const int Bq = t->q_tile < Lq ? t->q_tile : Lq;
    const int Bk = t->kv_tile < Lk ? t->kv_tile : Lk;
    const int nqt = (Lq + Bq - 1) / Bq;
    const int threads = ctx ? ctx->threads : 1;
    const int splits = backward_splits(s, threads, nqt);
    const float scale = s->scale;
    const int need_dp = dq || dk; /* dP and dS are needed for dq and dk only */

    /* P and dP [Bq x Bk]; dK and dV of the key tile [Bk x d]; D [Lq]. */
    const size_t per_thread = 2 * (size_t)Bq * Bk + 2 * (size_t)Bk * d + (size_t)Lq;
    const size_t stride = (per_thread + 15) & ~(size_t)15;
    float *scratch = scratch_alloc(per_thread, threads);
    /* Private dK/dV per (batch, head, split) when split; [Lk x d] each, dense. */
    const int nbuf = (dk ? 1 : 0) + (dv ? 1 : 0);
    const size_t priv_one = (size_t)Lk * d;
    const long long tasks = (long long)B * H * splits;
    float *priv = NULL;
    if (splits > 1 && nbuf) {
        priv = malloc(priv_one * (size_t)tasks * nbuf * sizeof *priv);
        if (!priv) {
            free(scratch);
            return error_set(err, "attention_backward_input: out of memory for %zu floats",
                             priv_one * (size_t)tasks * nbuf);
        }
    }
    /* K and V transposed per (batch, head) [B][H][d][Lk] (V only when dP is needed). */
    const size_t nt = tiled_size(s, Bk);
    float *kt_all = malloc(nt * (need_dp ? 2 : 1) * sizeof *kt_all);
    float *vt_all = kt_all && need_dp ? kt_all + nt : NULL;
    if (!scratch || !kt_all) {
        free(priv);
        free(scratch);
        free(kt_all);
        return error_set(err, "attention_backward_input: out of memory for scratch");
    }

#pragma omp parallel num_threads(threads)
    {
        prepare_heads(s, Bk, k, kt_all, v, vt_all, NULL);
        float *P = scratch + stride * (size_t)omp_get_thread_num();
        float *dP = P + (size_t)Bq * Bk;
        float *dkj = dP + (size_t)Bq * Bk;
        float *dvj = dkj + (size_t)Bk * d;
        float *D = dvj + (size_t)Bk * d;
#pragma omp for schedule(dynamic, 1)
        for (long long task = 0; task < tasks; task++) {
            const int sp = (int)(task % splits);
            const int h = (int)((task / splits) % H);
            const int b = (int)(task / ((long long)splits * H));
            const int qt_begin = (int)((long long)nqt * sp / splits);
            const int qt_end = (int)((long long)nqt * (sp + 1) / splits);
            const int r_begin = qt_begin * Bq, r_end = qt_end * Bq < Lq ? qt_end * Bq : Lq;
            const size_t head_off = (size_t)h * d;
            const float *kb = k + (size_t)b * Lk * ld + head_off;
            const float *lr = lse + ((size_t)b * H + h) * Lq;
            for (int r = r_begin; r < r_end; r++) {
                const size_t row = ((size_t)b * Lq + r) * ld + head_off;
                D[r] = attn_dot(dout + row, out + row, d);
                if (dq)
                    memset(dq + row, 0, (size_t)d * sizeof *dq);
            }
            float *mine = priv ? priv + priv_one * (size_t)task * nbuf : NULL;
            /* Key tiles outside, so the tile's K, V (transposed) and its dK, dV stay in cache
             * while the query tiles stream past (FlashAttention-2's backward order). */
            for (int j0 = 0; j0 < Lk; j0 += Bk) {
                const int nk = Lk - j0 < Bk ? Lk - j0 : Bk;
                if (dk)
                    memset(dkj, 0, (size_t)nk * d * sizeof *dkj);
                if (dv)
                    memset(dvj, 0, (size_t)nk * d * sizeof *dvj);
                for (int qt = qt_begin; qt < qt_end; qt++) {
                    const int i0 = qt * Bq;
                    const int nq = Lq - i0 < Bq ? Lq - i0 : Bq;
                    if (s->causal && i0 + nq - 1 < j0)
                        continue; /* every key of the tile is in these queries' future */
                    const size_t row0 = ((size_t)b * Lq + i0) * ld + head_off;
                    const float *qb = q + row0, *dob = dout + row0;
                    attn_gemm(nq, nk, d, scale, qb, ld, 1, tile_block(s, Bk, kt_all, b, h, j0), Bk,
                              0.0f, P, Bk);
                    if (s->causal && j0 + nk - 1 > i0)
                        mask_causal(P, Bk, i0, nq, j0, nk);
                    for (int i = 0; i < nq; i++)
                        attn_exp_sub(P + (size_t)i * Bk, nk, lr[i0 + i]);
                    if (dv) /* dV_j += P^T dO_i */
                        attn_gemm(nk, d, nq, 1.0f, P, 1, Bk, dob, ld, 1.0f, dvj, d);
                    if (!need_dp)
                        continue;
                    attn_gemm(nq, nk, d, 1.0f, dob, ld, 1, tile_block(s, Bk, vt_all, b, h, j0), Bk,
                              0.0f, dP, Bk);
                    for (int i = 0; i < nq; i++)
                        attn_softmax_grad(P + (size_t)i * Bk, dP + (size_t)i * Bk, nk, D[i0 + i]);
                    if (dq) /* dQ_i += scale dS K_j */
                        attn_gemm(nq, d, nk, scale, dP, Bk, 1, kb + (size_t)j0 * ld, ld, 1.0f,
                                  dq + row0, ld);
                    if (dk) /* dK_j += scale dS^T Q_i */
                        attn_gemm(nk, d, nq, scale, dP, 1, Bk, qb, ld, 1.0f, dkj, d);
                }
                /* Store the key tile's gradients: into the outputs, or the private buffers. */
                for (int j = 0; j < nk; j++) {
                    const size_t orow = ((size_t)b * Lk + j0 + j) * ld + head_off;
                    if (dk)
                        memcpy(mine ? mine + (size_t)(j0 + j) * d : dk + orow, dkj + (size_t)j * d,
                               (size_t)d * sizeof *dkj);
                    if (dv)
                        memcpy(mine ? mine + priv_one * (nbuf - 1) + (size_t)(j0 + j) * d
                                    : dv + orow,
                               dvj + (size_t)j * d, (size_t)d * sizeof *dvj);
                }
            }
        }
        if (priv) {
            /* Sum the private buffers into the outputs, rows split over the threads. */
#pragma omp for schedule(static)
            for (long long r = 0; r < (long long)B * Lk; r++) {
                const int b = (int)(r / Lk), j = (int)(r % Lk);
                for (int h = 0; h < H; h++) {
                    for (int which = 0; which < nbuf; which++) {
                        float *dst = (which == 0 && dk ? dk : dv) + (size_t)r * ld + (size_t)h * d;
                        const int slot = (which == 0 && dk) ? 0 : nbuf - 1;
                        memset(dst, 0, (size_t)d * sizeof *dst);
                        for (int sp = 0; sp < splits; sp++) {
                            const long long task = ((long long)b * H + h) * splits + sp;
                            const float *src =
                                priv + priv_one * ((size_t)task * nbuf + slot) + (size_t)j * d;
                            for (int c = 0; c < d; c++)
                                dst[c] += src[c];
                        }
                    }
                }
            }
        }
    }
    free(kt_all);
    free(priv);
    free(scratch);
    return 0;
}

int attention_backward_input(NnContext *ctx, const AttentionShape *s, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             const float *dout, float *dq, float *dk, float *dv, Error *err) {
    if (check_shape("attention_backward_input", s, NULL, err))
        return -1;
    AttentionTiles t = attention_default_tiles(s, 1);
    return attention_backward_input_tiled(ctx, s, &t, q, k, v, out, lse, dout, dq, dk, dv, err);
}
