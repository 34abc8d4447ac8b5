// labels: unit golden
/* The CLIP text encoder against transformers 4.57 run the way kohya-ss sd-scripts runs it
 * (tools/reference/make_text_encoder_fixtures.py): both tiny pipelines, every clip_skip the
 * 2-layer models allow (0 = None, 1, 2, 3), max_token_length 75/150/225 (kohya's chunking of
 * the ids and joining of the hidden states), two TI rows at ids 49408/49409; hidden states,
 * the gradient of every used embedding row, and clip_grad_norm_'s total norm. The SD2 model is
 * also loaded from its LDM file, whose extra resblock must be dropped.
 * Error measure: max|ours - ref| / max|ref| over a whole tensor, 1e-4 allowed (fp32).
 * The backward is also checked against central finite differences on small random models. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "models/clip_text.h"
#include "models/clip_text_chunks.h"
#include "models/model_files.h"
#include "text/tokenizer.h"
#include "test_util.h"

#define TOL 1e-4
/* fp16 weights (ldm-fp16.ckpt) against the fp32 reference: rounding of every weight */
#define TOL_HALF 1e-2

static double tol = TOL;

/* A fixture tensor as float32 / int32 (malloc'd), with its element count. */
static float *get_f32(const TensorSet *set, const char *name, size_t *n) {
    const NamedTensor *t = tensor_set_find(set, name);
    CHECKF(t != NULL, "fixture tensor %s missing", name);
    if (!t)
        return NULL;
    *n = (size_t)tensor_numel(t);
    float *out = malloc(*n * sizeof *out + 1);
    Error err = {{0}};
    CHECK_OK(tensor_to_f32(t, out, &err), &err);
    return out;
}

static int32_t *get_ids(const TensorSet *set, const char *name, size_t *n, const NamedTensor **t) {
    *t = tensor_set_find(set, name);
    CHECKF(*t != NULL && (*t)->dtype == DTYPE_I64, "fixture tensor %s missing or not int64", name);
    if (!*t || (*t)->dtype != DTYPE_I64)
        return NULL;
    *n = (size_t)tensor_numel(*t);
    int32_t *out = malloc(*n * sizeof *out + 1);
    const int64_t *src = (*t)->data;
    for (size_t i = 0; i < *n; i++)
        out[i] = (int32_t)src[i];
    return out;
}

static double worst_hidden, worst_grad, worst_norm;

static void check_case(NnContext *ctx, const ClipText *m, const char *fixture, const char *label) {
    TensorSet fx;
    tensor_set_init(&fx);
    Error err = {{0}};
    CHECK_OK(safetensors_open(test_fixture(fixture), &fx, &err), &err);
    size_t n_ids, n_extra, n_gout, n_gids;
    const NamedTensor *ids_t, *gid_t;
    int32_t *ids = get_ids(&fx, "input_ids", &n_ids, &ids_t);
    float *extra = get_f32(&fx, "extra_rows", &n_extra);
    float *gout = get_f32(&fx, "grad_output", &n_gout);
    int32_t *gids = get_ids(&fx, "grad_ids", &n_gids, &gid_t);
    if (!ids || !extra || !gout || !gids)
        goto done;
    int batch = (int)ids_t->shape[0], chunks = (int)ids_t->shape[1];
    int width = m->cfg.hidden_size;
    size_t out_n = (size_t)batch * (size_t)clip_chunked_length(chunks) * (size_t)width;
    CHECK(out_n == n_gout);
    float *hidden = malloc(out_n * sizeof *hidden);
    for (int k = 0; k <= 3; k++) {
        char name[64];
        int kref = k < 1 ? 1 : k;
        ClipTextRun run;
        CHECK_OK(clip_text_run_init(&run, m, batch * chunks, CLIP_CHUNK_TOKENS, k, true, &err),
                 &err);
        CHECK_OK(clip_text_forward_chunked(ctx, m, &run, batch, chunks, ids, extra,
                                           (int)(n_extra / (size_t)width), hidden, &err),
                 &err);
        size_t n;
        snprintf(name, sizeof name, "hidden_skip%d", kref);
        float *ref = get_f32(&fx, name, &n);
        if (ref && n == out_n) {
            double e = test_max_rel_err(hidden, ref, n);
            worst_hidden = e > worst_hidden ? e : worst_hidden;
            CHECKF(e < tol, "%s clip_skip %d: hidden states error %.3g", label, k, e);
        }
        free(ref);

        ClipRowGrads g;
        CHECK_OK(clip_text_backward_chunked(ctx, m, &run, batch, chunks, gout, &g, &err), &err);
        CHECKF((size_t)g.count == n_gids, "%s clip_skip %d: %d rows used, reference %zu", label, k,
               g.count, n_gids);
        snprintf(name, sizeof name, "grad_rows_skip%d", kref);
        ref = get_f32(&fx, name, &n);
        if (ref && (size_t)g.count == n_gids && n == n_gids * (size_t)width) {
            CHECKF(memcmp(g.ids, gids, n_gids * sizeof *gids) == 0, "%s: used ids differ", label);
            double e = test_max_rel_err(g.rows, ref, n);
            worst_grad = e > worst_grad ? e : worst_grad;
            CHECKF(e < tol, "%s clip_skip %d: row gradient error %.3g", label, k, e);
            /* the TI rows on their own, so a small error there is not hidden by larger rows */
            for (int32_t id = 49408; id < 49410; id++) {
                const float *row = clip_row_grads_find(&g, id);
                size_t at = 0;
                while (at < n_gids && gids[at] != id)
                    at++;
                if (at < n_gids) {
                    CHECK(row != NULL);
                    double er =
                        row ? test_max_rel_err(row, ref + at * (size_t)width, (size_t)width) : 1;
                    CHECKF(er < tol, "%s clip_skip %d: TI row %d gradient error %.3g", label, k, id,
                           er);
                }
            }
        }
        free(ref);
        snprintf(name, sizeof name, "grad_norm_skip%d", kref);
        ref = get_f32(&fx, name, &n);
        if (ref) {
            double e = fabs(clip_row_grads_norm(&g) - ref[0]) / ref[0];
            worst_norm = e > worst_norm ? e : worst_norm;
            CHECKF(e < tol, "%s clip_skip %d: gradient norm %.7g, torch %.7g", label, k,
                   clip_row_grads_norm(&g), (double)ref[0]);
        }
        free(ref);
        clip_row_grads_free(&g);
        clip_text_run_free(&run);
    }
    free(hidden);
done:
    free(ids);
    free(extra);
    free(gout);
    free(gids);
    tensor_set_free(&fx);
}

/* kohya's id chunking, from our tokenizer's padded rows, against the fixture's input_ids. */
static void check_chunk_ids(const char *model, const char *tokdir, int pad_id) {
    Error err = {{0}};
    Tokenizer *tok = NULL;
    CHECK_OK(tokenizer_load_dir(test_fixture(tokdir), &tok, &err), &err);
    if (!tok)
        return;
    int id;
    CHECK_OK(tokenizer_add_token(tok, "sdtitok", &id, &err), &err);
    CHECK_OK(tokenizer_add_token(tok, "sdtitok1", &id, &err), &err);
    CHECK(tokenizer_pad_id(tok) == pad_id);
    FILE *f = fopen(test_fixture("text_encoder/prompts.txt"), "r");
    CHECK(f != NULL);
    char lines[8][2048];
    int count = 0;
    while (f && count < 8 && fgets(lines[count], sizeof lines[count], f)) {
        char *tab = strchr(lines[count], '\t');
        if (tab)
            *tab = 0;
        count++;
    }
    if (f)
        fclose(f);
    for (int L = 75; L <= 225; L += 75) {
        char path[128];
        snprintf(path, sizeof path, "text_encoder/%s-%d.safetensors", model, L);
        TensorSet fx;
        tensor_set_init(&fx);
        CHECK_OK(safetensors_open(test_fixture(path), &fx, &err), &err);
        size_t n;
        const NamedTensor *t;
        int32_t *ref = get_ids(&fx, "input_ids", &n, &t);
        int chunks;
        CHECK_OK(clip_chunk_count(L, &chunks, &err), &err);
        int len = clip_chunked_length(chunks);
        if (ref && n == (size_t)count * (size_t)chunks * CLIP_CHUNK_TOKENS) {
            for (int p = 0; p < count; p++) {
                int32_t padded[256], got[3 * CLIP_CHUNK_TOKENS];
                int tmp[256];
                CHECK_OK(tokenizer_encode_padded(tok, lines[p], len, tmp, &err), &err);
                for (int i = 0; i < len; i++)
                    padded[i] = tmp[i];
                clip_chunk_ids(padded, chunks, tokenizer_eos_id(tok), tokenizer_pad_id(tok), got);
                CHECKF(memcmp(got, ref + (size_t)p * (size_t)chunks * CLIP_CHUNK_TOKENS,
                              sizeof(int32_t) * (size_t)chunks * CLIP_CHUNK_TOKENS) == 0,
                       "%s L=%d prompt %d: chunked ids differ from kohya's", model, L, p);
            }
        } else {
            CHECKF(0, "%s L=%d: %zu ids for %d prompts", model, L, n, count);
        }
        free(ref);
        tensor_set_free(&fx);
    }
    tokenizer_free(tok);
}

static void check_model(NnContext *ctx, const char *model_rel, const char *name, double t) {
    tol = t;
    ModelFiles mf;
    Error err = {{0}};
    ModelOpenOptions opts = {0};
    CHECK_OK(model_files_open(test_fixture(model_rel), &opts, &mf, &err), &err);
    ClipText m;
    CHECK_OK(clip_text_bind(&m, &mf.components[COMPONENT_TEXT_ENCODER], &mf.config.clip, DTYPE_F32,
                            &err),
             &err);
    for (int L = 75; L <= 225; L += 75) {
        char fixture[128], label[160];
        snprintf(fixture, sizeof fixture, "text_encoder/%s-%d.safetensors", name, L);
        snprintf(label, sizeof label, "%s L=%d", model_rel, L);
        check_case(ctx, &m, fixture, label);
    }
    /* errors: a clip_skip past the embeddings, an id nobody serves */
    ClipTextRun run;
    CHECK_FAILS_WITH(clip_text_run_init(&run, &m, 1, 77, 4, false, &err), &err, "clip_skip 4");
    CHECK_OK(clip_text_run_init(&run, &m, 1, 77, 0, false, &err), &err);
    int32_t ids[77];
    for (int i = 0; i < 77; i++)
        ids[i] = i == 5 ? 49408 : 49407;
    float hidden[77 * 8];
    CHECK_FAILS_WITH(clip_text_forward(ctx, &m, &run, ids, NULL, 0, hidden, &err), &err,
                     "token id 49408");
    clip_text_run_free(&run);
    clip_text_free(&m);
    model_files_close(&mf);
}

/* Central differences of loss = sum(hidden * g) with respect to embedding rows (vocabulary
 * and extra rows) of a small random model, against the backward. */
static void check_finite_differences(NnContext *ctx, ClipActivation act, int clip_skip) {
    ClipConfig c = {.vocab_size = 6,
                    .hidden_size = 8,
                    .num_layers = 2,
                    .num_heads = 2,
                    .intermediate_size = 12,
                    .max_positions = 7,
                    .activation = act,
                    .layer_norm_eps = 1e-5f};
    ClipText m;
    Error err = {{0}};
    CHECK_OK(clip_text_random(&m, &c, 77 + (uint64_t)act, &err), &err);
    /* larger embeddings than the default so the layers see varied inputs */
    float *tok = (float *)m.token_embedding.data;
    for (int i = 0; i < c.vocab_size * c.hidden_size; i++)
        tok[i] *= 20.0f;
    enum { B = 2, T = 6, W = 8, NX = 2 };
    int32_t ids[B * T] = {0, 3, 6, 2, 7, 5, 1, 6, 6, 4, 0, 2};
    float extra[NX * W], g[B * T * W], hidden[B * T * W];
    uint64_t s = 12345;
    for (int i = 0; i < NX * W; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        extra[i] = (float)((double)(s >> 40) / 16777216.0 * 2.0 - 1.0);
    }
    for (int i = 0; i < B * T * W; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g[i] = (float)((double)(s >> 40) / 16777216.0 * 2.0 - 1.0);
    }
    ClipTextRun run;
    CHECK_OK(clip_text_run_init(&run, &m, B, T, clip_skip, true, &err), &err);
    CHECK_OK(clip_text_forward(ctx, &m, &run, ids, extra, NX, hidden, &err), &err);
    ClipRowGrads rg;
    CHECK_OK(clip_text_backward_input(ctx, &m, &run, g, &rg, &err), &err);
    CHECK(rg.count == 8); /* ids 0..7 all used */
    double max_err = 0.0, max_ref = 0.0;
    const float h = 1e-2f;
    for (int id = 0; id < c.vocab_size + NX; id++) {
        float *row = id < c.vocab_size ? tok + id * W : extra + (id - c.vocab_size) * W;
        const float *an = clip_row_grads_find(&rg, id);
        for (int j = 0; j < W && an; j++) {
            double loss[2];
            float keep = row[j];
            for (int sgn = 0; sgn < 2; sgn++) {
                row[j] = keep + (sgn ? -h : h);
                CHECK_OK(clip_text_forward(ctx, &m, &run, ids, extra, NX, hidden, &err), &err);
                double l = 0.0;
                for (int i = 0; i < B * T * W; i++)
                    l += (double)hidden[i] * (double)g[i];
                loss[sgn] = l;
            }
            row[j] = keep;
            double fd = (loss[0] - loss[1]) / (2.0 * h);
            double d = fabs(fd - an[j]);
            max_err = d > max_err ? d : max_err;
            max_ref = fabs(fd) > max_ref ? fabs(fd) : max_ref;
        }
    }
    /* fp32 forward, step 1e-2: differences good to ~1e-3 relative */
    double e = max_err / max_ref;
    printf("finite differences (%s, clip_skip %d): max |fd - backward| / max |fd| = %.3g\n",
           act == CLIP_ACT_GELU ? "gelu" : "quick_gelu", clip_skip, e);
    CHECKF(max_ref > 1e-3 && e < 5e-3, "finite differences: relative error %.3g", e);
    clip_row_grads_free(&rg);
    clip_text_run_free(&run);
    clip_text_free(&m);
}

static void check_chunk_join(void) {
    /* join then backward of the join is the identity on the kept positions and zero on the
     * dropped ones (each chunk's first and last position except the batch's ends) */
    enum { B = 2, N = 3, W = 2 };
    int tl = clip_chunked_length(N);
    CHECK(tl == 227);
    float *h = malloc(sizeof(float) * B * N * 77 * W), *o = malloc(sizeof(float) * B * tl * W),
          *back = malloc(sizeof(float) * B * N * 77 * W);
    for (int i = 0; i < B * N * 77 * W; i++)
        h[i] = (float)i;
    clip_chunks_join_forward(B, N, W, h, o);
    clip_chunks_join_backward(B, N, W, o, back);
    int dropped = 0, bad = 0;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < N; c++)
            for (int t = 0; t < 77; t++) {
                size_t at = (((size_t)b * N + c) * 77 + t) * W;
                bool kept = (t >= 1 && t <= 75) || (c == 0 && t == 0) || (c == N - 1 && t == 76);
                for (int j = 0; j < W; j++)
                    bad += back[at + j] != (kept ? h[at + j] : 0.0f);
                dropped += !kept;
            }
    CHECK(bad == 0);
    CHECK(dropped == B * (2 * N - 2));
    free(h);
    free(o);
    free(back);
    Error err = {{0}};
    int n;
    CHECK_FAILS_WITH(clip_chunk_count(100, &n, &err), &err, "75, 150 or 225");
}

int main(void) {
    NnContext *ctx = NULL;
    Error err = {{0}};
    CHECK_OK(nn_context_create(1, &ctx, &err), &err);
    check_chunk_join();
    check_chunk_ids("sd1-tiny", "models/sd1-tiny/diffusers/tokenizer", TOKENIZER_SD1_PAD_ID);
    check_chunk_ids("sd2-tiny", "models/sd2-tiny/diffusers/tokenizer", TOKENIZER_SD2_PAD_ID);
    check_model(ctx, "models/sd1-tiny/diffusers", "sd1-tiny", TOL);
    check_model(ctx, "models/sd2-tiny/diffusers", "sd2-tiny", TOL);
    check_model(ctx, "models/sd2-tiny/ldm.safetensors", "sd2-tiny", TOL);
    check_model(ctx, "models/sd1-tiny/ldm.safetensors", "sd1-tiny", TOL);
    printf("max relative error: hidden %.3g, row gradients %.3g, gradient norm %.3g\n",
           worst_hidden, worst_grad, worst_norm);
    /* half-precision weights: rows of the token embedding widened one by one, layer weights
     * widened before each use */
    worst_hidden = worst_grad = worst_norm = 0;
    check_model(ctx, "models/sd1-tiny/ldm-fp16.ckpt", "sd1-tiny", TOL_HALF);
    check_model(ctx, "models/sd2-tiny/ldm-fp16.ckpt", "sd2-tiny", TOL_HALF);
    printf("fp16 weights: max relative error: hidden %.3g, row gradients %.3g, gradient norm "
           "%.3g\n",
           worst_hidden, worst_grad, worst_norm);
    for (int k = 1; k <= 3; k++) {
        check_finite_differences(ctx, CLIP_ACT_QUICK_GELU, k);
        check_finite_differences(ctx, CLIP_ACT_GELU, k);
    }
    nn_context_free(ctx);
    return test_finish();
}
