// labels: unit
/* Memory-efficient attention (forward: out and the log-sum-exp; backward: dq, dk, dv) against
 * torch (tests/fixtures/nn/attn/attention.safetensors from
 * tools/reference/make_nn_attn_fixtures.py: explicit softmax and autograd in float64 on
 * float32 inputs). Cases: self-attention, cross-attention (q_len != kv_len), CLIP-style
 * causal, causal with q_len < kv_len and q_len > kv_len, head_dim 160, a non-default scale;
 * lengths that are no multiple of the tiles. Each case runs with the default tiles and with
 * small odd tiles (many tile boundaries), on 1, 2 and 3 threads (3 forces the backward's
 * split query ranges with private dK/dV), and with only some of dq/dk/dv requested. The
 * backward is also checked against central finite differences of the forward.
 * Error measure everywhere: max|ours - ref| / max|ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/attention.h"
#include "nn/attention_internal.h"
#include "nn/attention_kernels.h"
#include "test_util.h"

#define TOL 1e-5

static TensorSet g_fix;

static const float *fixture(const char *cname, const char *what, size_t numel) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", cname, what);
    const NamedTensor *t = tensor_set_find(&g_fix, name);
    bool ok = t && t->dtype == DTYPE_F32 && (size_t)tensor_numel(t) == numel;
    CHECKF(ok, "fixture tensor %s missing or not float32[%zu]", name, numel);
    return ok ? t->data : NULL;
}

static float next_uniform(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) * (1.0 / 8388608.0) - 1.0);
}

static float *nan_buffer(size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

typedef struct Case {
    char name[32];
    AttentionShape s;
    const float *q, *k, *v, *dout, *out, *lse, *dq, *dk, *dv;
} Case;

static double g_worst[5]; /* out, lse, dq, dk, dv over all runs */

static void compare(const Case *c, const char *how, const char *what, int slot, const float *a,
                    const float *ref, size_t n) {
    double e = test_max_rel_err(a, ref, n);
    if (e > g_worst[slot] || isnan(e))
        g_worst[slot] = e;
    CHECKF(e < TOL, "%s (%s) %s: error %.3e", c->name, how, what, e);
}

/* Runs one case with the given tiles (NULL: the public entry points) and checks everything. */
static void run_case(NnContext *ctx, const Case *c, const AttentionTiles *t, const char *how) {
    const AttentionShape *s = &c->s;
    const size_t nq = (size_t)s->batch * s->q_len * s->heads * s->head_dim;
    const size_t nk = (size_t)s->batch * s->kv_len * s->heads * s->head_dim;
    const size_t nl = (size_t)s->batch * s->heads * s->q_len;
    float *out = nan_buffer(nq), *lse = nan_buffer(nl);
    float *dq = nan_buffer(nq), *dk = nan_buffer(nk), *dv = nan_buffer(nk);
    Error err = {{0}};
    int rc = t ? attention_forward_tiled(ctx, s, t, c->q, c->k, c->v, out, lse, &err)
               : attention_forward(ctx, s, c->q, c->k, c->v, out, lse, &err);
    CHECK_OK(rc, &err);
    compare(c, how, "out", 0, out, c->out, nq);
    compare(c, how, "lse", 1, lse, c->lse, nl);
    /* Backward from torch's out/lse would hide a forward error; ours are checked above. */
    rc =
        t ? attention_backward_input_tiled(ctx, s, t, c->q, c->k, c->v, out, lse, c->dout, dq, dk,
                                           dv, &err)
          : attention_backward_input(ctx, s, c->q, c->k, c->v, out, lse, c->dout, dq, dk, dv, &err);
    CHECK_OK(rc, &err);
    compare(c, how, "dq", 2, dq, c->dq, nq);
    compare(c, how, "dk", 3, dk, c->dk, nk);
    compare(c, how, "dv", 4, dv, c->dv, nk);
    /* Only some gradients: cross-attention's dk/dv, or dq alone; the others stay untouched. */
    float *dq2 = nan_buffer(nq), *dk2 = nan_buffer(nk), *dv2 = nan_buffer(nk);
    rc = attention_backward_input_tiled(ctx, s, t ? t : &(AttentionTiles){64, 128}, c->q, c->k,
                                        c->v, out, lse, c->dout, NULL, dk2, dv2, &err);
    CHECK_OK(rc, &err);
    compare(c, how, "dk (no dq)", 3, dk2, c->dk, nk);
    compare(c, how, "dv (no dq)", 4, dv2, c->dv, nk);
    rc = attention_backward_input_tiled(ctx, s, t ? t : &(AttentionTiles){64, 128}, c->q, c->k,
                                        c->v, out, lse, c->dout, dq2, NULL, NULL, &err);
    CHECK_OK(rc, &err);
    compare(c, how, "dq (alone)", 2, dq2, c->dq, nq);
    free(out);
    free(lse);
    free(dq);
    free(dk);
    free(dv);
    free(dq2);
    free(dk2);
    free(dv2);
}

static int load_cases(Case *cases, int max) {
    const char *meta = tensor_set_get_meta(&g_fix, "cases");
    CHECKF(meta != NULL, "attention.safetensors has no \"cases\" metadata");
    if (!meta)
        return 0;
    int n = 0, used = 0;
    while (n < max) {
        Case *c = &cases[n];
        AttentionShape *s = &c->s;
        if (sscanf(meta, " %31s %d %d %d %d %d %d %f ;%n", c->name, &s->batch, &s->heads, &s->q_len,
                   &s->kv_len, &s->head_dim, &s->causal, &s->scale, &used) < 8)
            break;
        const size_t nq = (size_t)s->batch * s->q_len * s->heads * s->head_dim;
        const size_t nk = (size_t)s->batch * s->kv_len * s->heads * s->head_dim;
        const size_t nl = (size_t)s->batch * s->heads * s->q_len;
        c->q = fixture(c->name, "q", nq);
        c->k = fixture(c->name, "k", nk);
        c->v = fixture(c->name, "v", nk);
        c->dout = fixture(c->name, "dout", nq);
        c->out = fixture(c->name, "out", nq);
        c->lse = fixture(c->name, "lse", nl);
        c->dq = fixture(c->name, "dq", nq);
        c->dk = fixture(c->name, "dk", nk);
        c->dv = fixture(c->name, "dv", nk);
        if (c->q && c->k && c->v && c->dout && c->out && c->lse && c->dq && c->dk && c->dv)
            n++;
        if (!used)
            break;
        meta += used;
        used = 0;
    }
    return n;
}

static void test_against_torch(void) {
    Case cases[16];
    int n = load_cases(cases, 16);
    CHECKF(n == 6, "expected 6 attention cases in the fixture, found %d", n);
    const AttentionTiles small[] = {{16, 24}, {7, 5}, {1, 3}, {256, 512}};
    for (int threads = 1; threads <= 3; threads++) {
        NnContext *ctx = NULL;
        Error err = {{0}};
        CHECK_OK(nn_context_create(threads, &ctx, &err), &err);
        if (!ctx)
            continue;
        for (int i = 0; i < n; i++) {
            char how[64];
            snprintf(how, sizeof how, "%d threads, default tiles", threads);
            run_case(ctx, &cases[i], NULL, how);
            for (size_t j = 0; j < sizeof small / sizeof *small; j++) {
                if (threads != 2 && j >= 2)
                    continue; /* the extreme tiles once: they are slow on a loaded machine */
                snprintf(how, sizeof how, "%d threads, tiles %dx%d", threads, small[j].q_tile,
                         small[j].kv_tile);
                run_case(ctx, &cases[i], &small[j], how);
            }
        }
        nn_context_free(ctx);
    }
    printf("worst errors vs torch: out %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e\n", g_worst[0],
           g_worst[1], g_worst[2], g_worst[3], g_worst[4]);
}

/* loss = sum(out * g) in double. */
static double attention_loss(NnContext *ctx, const AttentionShape *s, const AttentionTiles *t,
                             const float *q, const float *k, const float *v, const float *g,
                             float *out) {
    Error err;
    if (attention_forward_tiled(ctx, s, t, q, k, v, out, NULL, &err))
        return NAN;
    double sum = 0;
    size_t n = (size_t)s->batch * s->q_len * s->heads * s->head_dim;
    for (size_t i = 0; i < n; i++)
        sum += (double)out[i] * g[i];
    return sum;
}

static void test_finite_differences(NnContext *ctx, int causal) {
    AttentionShape s = {.batch = 2,
                        .heads = 2,
                        .q_len = 9,
                        .kv_len = causal ? 9 : 11,
                        .head_dim = 6,
                        .scale = 0.5f,
                        .causal = causal};
    const AttentionTiles t = {4, 3};
    const size_t nq = (size_t)s.batch * s.q_len * s.heads * s.head_dim;
    const size_t nk = (size_t)s.batch * s.kv_len * s.heads * s.head_dim;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *g = malloc(nq * 4);
    float *out = malloc(nq * 4), *lse = malloc((size_t)s.batch * s.heads * s.q_len * 4);
    float *grad[3] = {malloc(nq * 4), malloc(nk * 4), malloc(nk * 4)};
    float *num = malloc((nq > nk ? nq : nk) * 4);
    unsigned long long st = 1234 + (unsigned)causal;
    for (size_t i = 0; i < nq; i++) {
        q[i] = 2.0f * next_uniform(&st);
        g[i] = next_uniform(&st);
    }
    for (size_t i = 0; i < nk; i++) {
        k[i] = 2.0f * next_uniform(&st);
        v[i] = next_uniform(&st);
    }
    Error err = {{0}};
    CHECK_OK(attention_forward_tiled(ctx, &s, &t, q, k, v, out, lse, &err), &err);
    CHECK_OK(attention_backward_input_tiled(ctx, &s, &t, q, k, v, out, lse, g, grad[0], grad[1],
                                            grad[2], &err),
             &err);
    float *inputs[3] = {q, k, v};
    const size_t sizes[3] = {nq, nk, nk};
    const char *names[3] = {"dq", "dk", "dv"};
    const float eps = 1e-2f;
    for (int which = 0; which < 3; which++) {
        float *x = inputs[which];
        for (size_t i = 0; i < sizes[which]; i++) {
            float keep = x[i];
            x[i] = keep + eps;
            double lp = attention_loss(ctx, &s, &t, q, k, v, g, out);
            x[i] = keep - eps;
            double lm = attention_loss(ctx, &s, &t, q, k, v, g, out);
            x[i] = keep;
            num[i] = (float)((lp - lm) / (2.0 * eps));
        }
        double e = test_max_rel_err(grad[which], num, sizes[which]);
        printf("%s %s vs finite differences: %.2e\n", causal ? "causal" : "non-causal",
               names[which], e);
        CHECKF(e < 2e-3, "%s %s vs finite differences: error %.3e",
               causal ? "causal" : "non-causal", names[which], e);
    }
    free(q);
    free(k);
    free(v);
    free(g);
    free(out);
    free(lse);
    for (int i = 0; i < 3; i++)
        free(grad[i]);
    free(num);
}

typedef void (*GemmFn)(int, int, int, float, const float *, ptrdiff_t, ptrdiff_t, const float *,
                       ptrdiff_t, float, float *, ptrdiff_t);

/* The tile product (run-time dispatched, AVX-512 here, and the portable one) against a double
 * sum, A as stored and transposed, widths that exercise every column blocking (1, 2, 3
 * vectors, masked tails, more than 80), rows not a multiple of the row block, beta 0 and 1,
 * k short and long (several k slices). */
static void test_gemm_kernel(GemmFn gemm, const char *name, const int K) {
    enum { MMAX = 15, KMAX = 300, NMAX = 83, LDA = 310, LDB = 90, LDC = 95 };
    static float a[LDA * LDA], b[KMAX * LDB], c[MMAX * LDC], c0[MMAX * LDC];
    unsigned long long st = 99;
    for (size_t i = 0; i < sizeof a / sizeof *a; i++)
        a[i] = next_uniform(&st);
    for (size_t i = 0; i < sizeof b / sizeof *b; i++)
        b[i] = next_uniform(&st);
    for (size_t i = 0; i < sizeof c0 / sizeof *c0; i++)
        c0[i] = next_uniform(&st);
    double worst = 0;
    /* m: every remainder of the 8-, 6- and 4-row blocks (with the short k only, for time) */
    for (int M = K > 9 ? MMAX : 1; M <= MMAX; M++)
        for (int trans = 0; trans < 2; trans++)
            for (int beta = 0; beta < 2; beta++)
                for (int n = 1; n <= NMAX; n += (n < 50 ? 1 : 11)) {
                    const ptrdiff_t a_row = trans ? 1 : LDA, a_col = trans ? LDA : 1;
                    memcpy(c, c0, sizeof c);
                    gemm(M, n, K, 0.7f, a, a_row, a_col, b, LDB, (float)beta, c, LDC);
                    for (int i = 0; i < MMAX; i++)
                        for (int j = 0; j < LDC; j++) {
                            double ref = c0[i * LDC + j];
                            if (i < M && j < n) {
                                double sum = 0;
                                for (int p = 0; p < K; p++)
                                    sum += (double)a[i * a_row + p * a_col] * b[p * LDB + j];
                                ref = 0.7 * sum + beta * (double)c0[i * LDC + j];
                            }
                            double e = fabs(c[i * LDC + j] - ref);
                            worst = e > worst || isnan(e) ? e : worst;
                        }
                }
    printf("%s, k = %d, vs double: max abs error %.2e (values ~1)\n", name, K, worst);
    CHECKF(worst < 1e-5 * (K > 9 ? 4 : 1),
           "%s, k = %d: max error %.3e (C past m x n must stay untouched)", name, K, worst);
}

typedef float (*ExpFn)(float *, int, float);

/* exp(x - sub) and the sum over a range with underflow, -inf (masked scores) and a tail. */
static void test_exp_kernel(ExpFn fn, const char *name) {
    enum { N = 1203 };
    static float x[N];
    for (int i = 0; i < N; i++)
        x[i] = -110.0f + 120.0f * (float)i / (N - 1);
    x[5] = -INFINITY;
    double ref_sum = 0, worst = 0;
    float sum = fn(x, N, 3.0f);
    for (int i = 0; i < N; i++) {
        float xi = i == 5 ? -INFINITY : -110.0f + 120.0f * (float)i / (N - 1);
        double ref = exp((double)(xi - 3.0f)); /* the kernel subtracts in float too */
        ref_sum += ref;
        /* relative error; near float's smallest normal, flushing to exact 0 is allowed too */
        double e = ref > 1e-37 || x[i] != 0.0f ? fabs(x[i] - ref) / ref : 0.0;
        worst = e > worst || isnan(e) ? e : worst;
    }
    double sum_err = fabs(sum - ref_sum) / ref_sum;
    printf("%s: max relative error %.2e, sum %.2e\n", name, worst, sum_err);
    CHECKF(worst < 1e-6 && sum_err < 1e-6, "%s: error %.3e, sum error %.3e", name, worst, sum_err);
    CHECKF(x[5] == 0.0f, "%s: exp(-inf) gave %g", name, x[5]);
}

static void test_bad_arguments(NnContext *ctx) {
    Error err = {{0}};
    float x[8] = {0};
    AttentionShape bad = {
        .batch = 1, .heads = 1, .q_len = 0, .kv_len = 2, .head_dim = 2, .scale = 1.0f};
    CHECK_FAILS_WITH(attention_forward(ctx, &bad, x, x, x, x, x, &err), &err, "bad shape");
    CHECK_FAILS_WITH(attention_backward_input(ctx, &bad, x, x, x, x, x, x, x, x, x, &err), &err,
                     "bad shape");
    AttentionShape ok = {
        .batch = 1, .heads = 1, .q_len = 2, .kv_len = 2, .head_dim = 2, .scale = NAN};
    CHECK_FAILS_WITH(attention_forward(ctx, &ok, x, x, x, x, x, &err), &err, "scale");
    ok.scale = 1.0f;
    CHECK_FAILS_WITH(attention_forward(ctx, &ok, x, NULL, x, x, x, &err), &err, "required");
    CHECK_FAILS_WITH(attention_backward_input(ctx, &ok, x, x, x, x, NULL, x, x, x, x, &err), &err,
                     "required");
}

int main(void) {
    Error err = {{0}};
    tensor_set_init(&g_fix);
    CHECK_OK(safetensors_open(test_fixture("nn/attn/attention.safetensors"), &g_fix, &err), &err);
    for (int k = 9; k <= 300; k += 291) { /* 300: several k slices */
        test_gemm_kernel(attn_gemm, "attn_gemm (dispatched)", k);
        test_gemm_kernel(attn_gemm_portable, "attn_gemm_portable", k);
    }
    test_exp_kernel(attn_exp_sub_sum, "attn_exp_sub_sum (dispatched)");
    test_exp_kernel(attn_exp_sub_sum_portable, "attn_exp_sub_sum_portable");
    test_against_torch();
    NnContext *ctx = NULL;
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (ctx) {
        test_finite_differences(ctx, 0);
        test_finite_differences(ctx, 1);
        test_bad_arguments(ctx);
    }
    nn_context_free(ctx);
    tensor_set_free(&g_fix);
    return test_finish();
}
