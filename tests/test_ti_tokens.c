// labels: unit
/* kohya's TI token set-up against kohya's own steps run with transformers on the tiny fixture
 * models (tools/reference/make_embedding_fixtures.py -> embeddings/ti_tokens.*): token names,
 * ids, vocabulary size, init-word ids, the initialised rows read from the stored
 * token embedding (copies: max|ours - ref| / max|ref| must be exactly 0), the caption
 * rewrite and the ids of rewritten captions, which strings are refused (tokenizer.add_tokens'
 * count), init words without tokens, and --weights (continue an embedding; count and width
 * mismatches). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/safetensors.h"
#include "models/model_files.h"
#include "test_util.h"
#include "text/embedding_file.h"
#include "text/ti_tokens.h"
#include "text/tokenizer.h"

static cJSON *spec;
static TensorSet rows_ref;

static const char *fixture2(const char *a, const char *b) {
    static char path[1024];
    snprintf(path, sizeof path, "%s%s", test_fixture(a), b);
    return path;
}

static Tokenizer *model_tokenizer(const char *model) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/diffusers/tokenizer", model);
    Tokenizer *t = NULL;
    Error err = {{0}};
    CHECK_OK(tokenizer_load_dir(test_fixture(rel), &t, &err), &err);
    return t;
}

/* The text encoder's stored token-embedding weight (the model stays open: free with
 * model_files_close). */
static const NamedTensor *model_token_embedding(const char *model, ModelFiles *mf) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/diffusers", model);
    ModelOpenOptions opts = {0};
    Error err = {{0}};
    if (model_files_open(test_fixture(rel), &opts, mf, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return NULL;
    }
    const NamedTensor *t = tensor_set_find(&mf->components[COMPONENT_TEXT_ENCODER],
                                           "text_model.embeddings.token_embedding.weight");
    CHECK(t != NULL && t->ndim == 2);
    return t;
}

static bool ids_equal(const int *ids, int n, const cJSON *arr) {
    if (cJSON_GetArraySize(arr) != n)
        return false;
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(arr, i)->valueint != ids[i])
            return false;
    return true;
}

static void test_case(const cJSON *c) {
    const char *model = cJSON_GetObjectItem(c, "model")->valuestring;
    const char *s = cJSON_GetObjectItem(c, "token_string")->valuestring;
    int n = cJSON_GetObjectItem(c, "num_vectors")->valueint;
    const char *init = cJSON_GetObjectItem(c, "init_word")->valuestring;
    Tokenizer *tok = model_tokenizer(model);
    if (!tok)
        return;
    TiTokens t;
    Error err = {{0}};
    if (ti_tokens_add(tok, s, n, init, &t, &err) != 0) {
        CHECKF(false, "%s %s: %s", model, s, err.message);
        tokenizer_free(tok);
        return;
    }
    const cJSON *names = cJSON_GetObjectItem(c, "token_strings");
    for (int i = 0; i < n; i++)
        CHECKF(strcmp(t.names[i], cJSON_GetArrayItem(names, i)->valuestring) == 0,
               "%s: name %d '%s'", s, i, t.names[i]);
    CHECKF(ids_equal(t.ids, n, cJSON_GetObjectItem(c, "token_ids")), "%s: ids %d..", s, t.ids[0]);
    CHECKF(tokenizer_vocab_size(tok) == cJSON_GetObjectItem(c, "vocab_size")->valueint,
           "%s: vocab size %d", s, tokenizer_vocab_size(tok));
    CHECKF(ids_equal(t.init_ids, t.init_count, cJSON_GetObjectItem(c, "init_ids")), "%s: init ids",
           s);
    CHECKF(strcmp(t.replacement, cJSON_GetObjectItem(c, "replace_to")->valuestring) == 0,
           "%s: replacement '%s'", s, t.replacement);
    /* kohya's note: only when the init word has several tokens but not N */
    bool noted = t.init_note[0] != '\0';
    CHECKF(noted == (t.init_count > 1 && t.init_count != n), "%s: note '%s'", s, t.init_note);
    if (noted)
        CHECK(strstr(t.init_note, t.init_count < n ? "repeated" : "truncated") != NULL);

    /* init rows vs kohya's rows */
    ModelFiles mf;
    const NamedTensor *te = model_token_embedding(model, &mf);
    if (te) {
        int dim = (int)te->shape[1];
        CHECK(t.ids[0] == te->shape[0]); /* the new rows follow the matrix */
        float *rows = calloc((size_t)n * (size_t)dim, sizeof *rows);
        CHECK_OK(ti_tokens_init_rows(&t, te, rows, &err), &err);
        const NamedTensor *ref =
            tensor_set_find(&rows_ref, cJSON_GetObjectItem(c, "rows")->valuestring);
        CHECK(ref && ref->shape[0] == n && ref->shape[1] == dim);
        if (ref && ref->shape[0] == n && ref->shape[1] == dim) {
            const float *r = ref->data;
            double diff = 0, mx = 0;
            for (size_t i = 0; i < (size_t)n * (size_t)dim; i++) {
                diff = fmax(diff, fabs((double)rows[i] - r[i]));
                mx = fmax(mx, fabs((double)r[i]));
            }
            CHECKF(diff / mx == 0, "%s: init rows differ from kohya's, max rel error %g", s,
                   diff / mx);
            /* what kohya saves: weight[token_ids] */
            Embedding saved;
            CHECK_OK(ti_tokens_extract(&t, rows, dim, &saved, &err), &err);
            CHECK(saved.num_vectors == n && saved.dim == dim && strcmp(saved.name, s) == 0 &&
                  memcmp(saved.data, ref->data, (size_t)n * (size_t)dim * sizeof(float)) == 0);
            embedding_free(&saved);
        }
        free(rows);
        model_files_close(&mf);
    }

    /* captions */
    const cJSON *cap;
    cJSON_ArrayForEach(cap, cJSON_GetObjectItem(c, "captions")) {
        const char *in = cJSON_GetObjectItem(cap, "caption")->valuestring;
        const char *want = cJSON_GetObjectItem(cap, "rewritten")->valuestring;
        char *got = ti_tokens_rewrite_caption(&t, in);
        CHECKF(got && strcmp(got, want) == 0, "%s: '%s' -> '%s', kohya '%s'", s, in,
               got ? got : "(null)", want);
        int *ids = NULL, count = 0;
        if (got && tokenizer_encode(tok, got, &ids, &count, &err) == 0) {
            CHECKF(ids_equal(ids, count, cJSON_GetObjectItem(cap, "ids")), "%s: ids of '%s'", s,
                   got);
            free(ids);
        } else {
            CHECKF(false, "%s: %s", s, err.message);
        }
        free(got);
    }
    ti_tokens_free(&t);
    tokenizer_free(tok);
}

static void test_refusals(void) {
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(spec, "refusals")) {
        Tokenizer *tok = model_tokenizer("sd1-tiny");
        if (!tok)
            return;
        int before = tokenizer_vocab_size(tok);
        TiTokens t;
        Error err = {{0}};
        int rc = ti_tokens_add(tok, r->string, 1, NULL, &t, &err);
        bool hf_added = r->valueint == 1;
        if (hf_added) {
            CHECKF(rc == 0, "'%s': HF adds it, we refused: %s", r->string, err.message);
            if (rc == 0)
                ti_tokens_free(&t);
        } else {
            CHECK_FAILS_WITH(rc, &err, "tokenizer has same word to token string");
            CHECK(tokenizer_vocab_size(tok) == before);
        }
        tokenizer_free(tok);
    }
    /* one of the later names taken: nothing is added */
    Tokenizer *tok = model_tokenizer("sd1-tiny");
    if (!tok)
        return;
    int id;
    Error err = {{0}};
    CHECK_OK(tokenizer_add_token(tok, "mychar2", &id, &err), &err);
    int before = tokenizer_vocab_size(tok);
    TiTokens t;
    CHECK_FAILS_WITH(ti_tokens_add(tok, "mychar", 4, "girl", &t, &err), &err, "\"mychar2\"");
    CHECK(tokenizer_vocab_size(tok) == before && tokenizer_token_id(tok, "mychar") < 0);
    /* an init word without tokens */
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(spec, "empty_init_ids")) {
        CHECK(cJSON_GetArraySize(w) == 0);
        CHECK_FAILS_WITH(ti_tokens_add(tok, "newtok", 2, w->string, &t, &err), &err,
                         "gives no tokens");
        CHECK(tokenizer_token_id(tok, "newtok") < 0);
    }
    CHECK_FAILS_WITH(ti_tokens_add(tok, "", 1, NULL, &t, &err), &err, "--token_string");
    CHECK_FAILS_WITH(ti_tokens_add(tok, "abcq", 0, NULL, &t, &err), &err,
                     "--num_vectors_per_token 0");
    /* without --init_word the rows are left to the caller */
    CHECK_OK(ti_tokens_add(tok, "zqx", 2, NULL, &t, &err), &err);
    float rows[4] = {1, 2, 3, 4};
    NamedTensor fake = {"fake", DTYPE_F32, 2, {2, 2}, rows, sizeof rows};
    CHECK_OK(ti_tokens_init_rows(&t, &fake, rows, &err), &err);
    CHECK(rows[0] == 1 && rows[3] == 4);
    ti_tokens_free(&t);
    /* an init word whose ids are outside the matrix */
    CHECK_OK(ti_tokens_add(tok, "zqy", 1, "girl", &t, &err), &err);
    CHECK_FAILS_WITH(ti_tokens_init_rows(&t, &fake, rows, &err), &err, "is not a row");
    ti_tokens_free(&t);
    tokenizer_free(tok);
}

/* A half-precision checkpoint (ldm-fp16.ckpt: the same weights cast with .half()): the rows
 * are widened from fp16, so they are kohya's fp32 rows rounded to fp16. */
static void test_fp16_matrix(void) {
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(spec, "cases"), 0);
    Tokenizer *tok = model_tokenizer("sd1-tiny");
    if (!tok || !c)
        return;
    TiTokens t;
    Error err = {{0}};
    ModelFiles mf;
    ModelOpenOptions opts = {0};
    CHECK_OK(ti_tokens_add(tok, cJSON_GetObjectItem(c, "token_string")->valuestring,
                           cJSON_GetObjectItem(c, "num_vectors")->valueint,
                           cJSON_GetObjectItem(c, "init_word")->valuestring, &t, &err),
             &err);
    if (model_files_open(test_fixture("models/sd1-tiny/ldm-fp16.ckpt"), &opts, &mf, &err) != 0) {
        CHECKF(false, "%s", err.message);
    } else {
        const NamedTensor *te = tensor_set_find(&mf.components[COMPONENT_TEXT_ENCODER],
                                                "text_model.embeddings.token_embedding.weight");
        const NamedTensor *ref = tensor_set_find(&rows_ref, "case0");
        CHECK(te && te->dtype == DTYPE_F16 && ref);
        if (te && ref) {
            size_t n = (size_t)tensor_numel(ref);
            float *rows = calloc(n, sizeof *rows);
            CHECK_OK(ti_tokens_init_rows(&t, te, rows, &err), &err);
            const float *r = ref->data;
            for (size_t i = 0; i < n; i++)
                CHECKF(rows[i] == f16_to_f32(f32_to_f16(r[i])), "fp16 row value %zu", i);
            free(rows);
        }
        model_files_close(&mf);
    }
    ti_tokens_free(&t);
    tokenizer_free(tok);
}

/* --weights: kohya's load_weights overwrites the new rows with the file's. */
static void test_weights(void) {
    Tokenizer *tok = model_tokenizer("sd1-tiny");
    if (!tok)
        return;
    TiTokens t;
    Error err = {{0}};
    CHECK_OK(ti_tokens_add(tok, "mychar", 3, "girl", &t, &err), &err);
    const int dim = 8; /* the tiny models' width */
    float rows[4 * 8] = {0};
    Embedding w;
    const char *path = fixture2("embeddings/", "kohya-sd1.safetensors");
    CHECK_OK(embedding_load(path, &w, &err), &err);
    CHECK_OK(ti_tokens_load_weights(&t, &w, path, dim, rows, &err), &err);
    CHECK(memcmp(rows, w.data, (size_t)w.num_vectors * dim * sizeof(float)) == 0);
    embedding_free(&w);
    /* four vectors into three */
    path = fixture2("embeddings/", "a1111-sd1.pt");
    CHECK_OK(embedding_load(path, &w, &err), &err);
    CHECK_FAILS_WITH(ti_tokens_load_weights(&t, &w, path, dim, rows, &err), &err,
                     "holds 4 vectors but --num_vectors_per_token is 3");
    embedding_free(&w);
    ti_tokens_free(&t);
    /* an SD1.x-wide vector into the 8-wide model; an all-zero embedding */
    CHECK_OK(ti_tokens_add(tok, "zzsolo", 1, "dog", &t, &err), &err);
    path = fixture2("embeddings/", "concept-768.bin");
    CHECK_OK(embedding_load(path, &w, &err), &err);
    CHECK_FAILS_WITH(ti_tokens_load_weights(&t, &w, path, dim, rows, &err), &err,
                     "768 wide); the model's text encoder is 8 wide");
    embedding_free(&w);
    ti_tokens_free(&t);
    CHECK_OK(ti_tokens_add(tok, "zeroed", 2, NULL, &t, &err), &err);
    path = fixture2("embeddings/", "a1111-zero.pt");
    CHECK_OK(embedding_load(path, &w, &err), &err);
    CHECK_FAILS_WITH(ti_tokens_load_weights(&t, &w, path, dim, rows, &err), &err, "all zeros");
    embedding_free(&w);
    ti_tokens_free(&t);
    tokenizer_free(tok);
}

/* Embeddings in prompts: kohya's gen_img_diffusers token set-up and replace_token. */
static void test_prompt_embeddings(void) {
    const cJSON *pe = cJSON_GetObjectItem(spec, "prompt_embeddings");
    Tokenizer *tok = model_tokenizer("sd1-tiny");
    if (!tok || !pe)
        return;
    Error err = {{0}};
    TiTokens sets[8];
    int n_sets = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(pe, "files")) {
        Embedding e;
        const char *file = cJSON_GetObjectItem(f, "file")->valuestring;
        if (n_sets == 8 || embedding_load(fixture2("embeddings/", file), &e, &err) != 0) {
            CHECKF(false, "%s: %s", file, err.message);
            continue;
        }
        if (ti_tokens_add_embedding(tok, &e, &sets[n_sets], &err) == 0) {
            const cJSON *names = cJSON_GetObjectItem(f, "token_strings");
            for (int i = 0; i < sets[n_sets].num_vectors; i++)
                CHECK(strcmp(sets[n_sets].names[i], cJSON_GetArrayItem(names, i)->valuestring) ==
                      0);
            CHECK(ids_equal(sets[n_sets].ids, sets[n_sets].num_vectors,
                            cJSON_GetObjectItem(f, "token_ids")));
            n_sets++;
        } else {
            CHECKF(false, "%s: %s", file, err.message);
        }
        /* the same file twice: refused, kohya's "please rename the file" */
        TiTokens again;
        CHECK_FAILS_WITH(ti_tokens_add_embedding(tok, &e, &again, &err), &err, "rename the file");
        embedding_free(&e);
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(pe, "prompts")) {
        int *ids = NULL, count = 0;
        const char *prompt = cJSON_GetObjectItem(p, "prompt")->valuestring;
        CHECK_OK(tokenizer_encode(tok, prompt, &ids, &count, &err), &err);
        CHECKF(ids_equal(ids, count, cJSON_GetObjectItem(p, "ids")), "ids of '%s'", prompt);
        for (int s = 0; s < n_sets; s++) {
            int *next = NULL, next_count = 0;
            CHECK_OK(ti_tokens_expand_ids(&sets[s], ids, count, &next, &next_count, &err), &err);
            free(ids);
            ids = next;
            count = next_count;
        }
        CHECKF(ids_equal(ids, count, cJSON_GetObjectItem(p, "expanded")), "expanded ids of '%s'",
               prompt);
        free(ids);
    }
    for (int s = 0; s < n_sets; s++)
        ti_tokens_free(&sets[s]);
    tokenizer_free(tok);
}

int main(void) {
    size_t size;
    char *text = NULL;
    Error err = {{0}};
    CHECK_OK(file_read_all(fixture2("embeddings/", "ti_tokens.json"), &text, &size, &err), &err);
    spec = text ? cJSON_Parse(text) : NULL;
    free(text);
    tensor_set_init(&rows_ref);
    CHECK_OK(safetensors_open(fixture2("embeddings/", "ti_tokens.safetensors"), &rows_ref, &err),
             &err);
    CHECK(spec != NULL);
    if (spec) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(spec, "cases")) test_case(c);
        test_refusals();
        test_fp16_matrix();
        test_prompt_embeddings();
        test_weights();
    }
    cJSON_Delete(spec);
    tensor_set_free(&rows_ref);
    return test_finish();
}
