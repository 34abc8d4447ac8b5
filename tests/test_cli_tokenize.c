// labels: cli golden
/* `sdti tokenize` and `sdti forward --component text-encoder` against the fixtures of
 * tools/reference/make_text_encoder_fixtures.py (transformers 4.57 run as kohya runs it):
 * for both tiny pipelines, every prompt (one over 150 tokens, one using a 2-vector TI
 * embedding loaded by file name, an empty one) and max_token_length 75/150/225, the --pad ids
 * are kohya's chunked input_ids and --encode's hidden_states are kohya's (clip_skip 1-3 at
 * 150 tokens, 1 otherwise);
 * `sdti forward` on the fixture files themselves (TI rows given as extra_rows); the unpadded
 * and --verbose forms; and the errors. Error measure: max|ours - ref| / max|ref|, 1e-4. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "test_util.h"

#define TOL 1e-4

static const char *bin(void) {
    const char *b = getenv("SDTI_BIN");
    return b ? b : "./sdti";
}

/* 'text' for the shell. */
static void quote(const char *s, char *out, size_t size) {
    size_t k = 0;
    out[k++] = '\'';
    for (; *s && k + 6 < size; s++) {
        if (*s == '\'') {
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            out[k++] = *s;
        }
    }
    out[k++] = '\'';
    out[k] = 0;
}

/* Every integer on lines that start with a digit (stderr notes are mixed in). */
static int parse_ids(const char *text, long *ids, int cap) {
    int n = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (*p >= '0' && *p <= '9') {
            char line[8192];
            if (len >= sizeof line)
                len = sizeof line - 1;
            memcpy(line, p, len);
            line[len] = 0;
            char *q = line, *end;
            for (long v = strtol(q, &end, 10); end != q && n < cap; v = strtol(q, &end, 10)) {
                ids[n++] = v;
                q = end;
            }
        }
        p += len + (eol ? 1 : 0);
    }
    return n;
}

static int read_prompts(char prompts[][4096], int cap) {
    FILE *f = fopen(test_fixture("text_encoder/prompts.txt"), "r");
    CHECK(f != NULL);
    int n = 0;
    char line[4000];
    while (f && n < cap && fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        /* the short form: the user's prompt with the embedding loaded by file name */
        snprintf(prompts[n++], 4096, "%s", tab ? tab + 1 : line);
    }
    if (f)
        fclose(f);
    return n;
}

static void compare_hidden(const char *path, const TensorSet *fx, int k, int p, const char *label) {
    TensorSet got;
    tensor_set_init(&got);
    Error err = {{0}};
    CHECK_OK(safetensors_open(path, &got, &err), &err);
    const NamedTensor *h = tensor_set_find(&got, "hidden_states");
    char name[32];
    snprintf(name, sizeof name, "hidden_skip%d", k);
    const NamedTensor *r = tensor_set_find(fx, name);
    CHECKF(h && r && h->dtype == DTYPE_F32 && r->dtype == DTYPE_F32, "%s: %s missing", label, name);
    if (h && r && h->dtype == DTYPE_F32 && r->dtype == DTYPE_F32) {
        /* one prompt (p >= 0) of the fixture's batch, or all of it */
        size_t per = (size_t)(r->shape[1] * r->shape[2]);
        size_t n = p >= 0 ? per : (size_t)tensor_numel(r);
        CHECKF((size_t)tensor_numel(h) == n && h->shape[1] == r->shape[1],
               "%s: hidden_states has %lld elements, reference %zu", label,
               (long long)tensor_numel(h), n);
        if ((size_t)tensor_numel(h) == n) {
            const float *ref = (const float *)r->data + (p >= 0 ? (size_t)p * per : 0);
            double e = test_max_rel_err(h->data, ref, n);
            CHECKF(e < TOL, "%s clip_skip %d: hidden states error %.3g", label, k, e);
        }
    }
    tensor_set_free(&got);
}

static void check_model(const char *model_dir, const char *name, const char *tmp) {
    char prompts[8][4096];
    int np = read_prompts(prompts, 8);
    CHECK(np == 4);
    char emb[1024], model[1024];
    snprintf(emb, sizeof emb, "%s", test_fixture("text_encoder/sdtitok.safetensors"));
    snprintf(model, sizeof model, "%s", test_fixture(model_dir));
    for (int L = 75; L <= 225; L += 75) {
        char fxpath[256];
        snprintf(fxpath, sizeof fxpath, "text_encoder/%s-%d.safetensors", name, L);
        TensorSet fx;
        tensor_set_init(&fx);
        Error err = {{0}};
        CHECK_OK(safetensors_open(test_fixture(fxpath), &fx, &err), &err);
        const NamedTensor *ids = tensor_set_find(&fx, "input_ids");
        if (!ids) {
            tensor_set_free(&fx);
            continue;
        }
        int chunks = (int)ids->shape[1];
        for (int p = 0; p < np; p++) {
            char q[8300], cmd[12000], out[1100];
            quote(prompts[p], q, sizeof q);
            snprintf(out, sizeof out, "%s/%s-%d-%d.safetensors", tmp, name, L, p);
            /* clip_skip 2 and 3 at one length (the library test covers every combination) */
            for (int k = 1; k <= (L == 150 ? 3 : 1); k++) {
                snprintf(cmd, sizeof cmd,
                         "%s tokenize --model %s --max_token_length %d --pad --embeddings %s "
                         "--encode %s --clip_skip %d --threads 1 %s",
                         bin(), model, L, emb, out, k, q);
                char *text = NULL;
                int rc = test_run(cmd, &text);
                CHECKF(rc == 0, "%s: exit %d: %s", cmd, rc, text ? text : "");
                if (k == 1) {
                    long got[3 * 77 + 1];
                    int n = parse_ids(text ? text : "", got, 3 * 77 + 1);
                    const int64_t *ref = (const int64_t *)ids->data + (size_t)p * chunks * 77;
                    int same = n == chunks * 77;
                    for (int i = 0; same && i < n; i++)
                        same = got[i] == ref[i];
                    CHECKF(same, "%s L=%d prompt %d: --pad ids differ from kohya's (%d ids)", name,
                           L, p, n);
                }
                free(text);
                char label[128];
                snprintf(label, sizeof label, "tokenize --encode %s L=%d prompt %d", name, L, p);
                if (rc == 0)
                    compare_hidden(out, &fx, k, p, label);
            }
        }
        /* sdti forward on the fixture itself (input_ids [B, n, 77] and extra_rows) */
        for (int k = 1; k <= 3; k++) {
            char cmd[4096], out[1100], label[128];
            snprintf(out, sizeof out, "%s/forward-%s-%d.safetensors", tmp, name, L);
            snprintf(cmd, sizeof cmd,
                     "%s forward --model %s --component text-encoder --inputs %s --out %s "
                     "--clip_skip %d --max_token_length %d --threads 1",
                     bin(), model, test_fixture(fxpath), out, k, L);
            char *text = NULL;
            int rc = test_run(cmd, &text);
            CHECKF(rc == 0, "%s: exit %d: %s", cmd, rc, text ? text : "");
            free(text);
            snprintf(label, sizeof label, "forward %s L=%d", name, L);
            if (rc == 0)
                compare_hidden(out, &fx, k, -1, label);
        }
        tensor_set_free(&fx);
    }
}

static void check_plain_forms(const char *tmp) {
    char cmd[4096];
    char *text = NULL;
    /* unpadded ids: BOS ... EOS only, and the same as the start of the padded row */
    char model[1024];
    snprintf(model, sizeof model, "%s", test_fixture("models/sd1-tiny/diffusers"));
    snprintf(cmd, sizeof cmd, "%s tokenize --model %s 'a photo of a cat'", bin(), model);
    CHECK(test_run(cmd, &text) == 0);
    long plain[80], padded[80];
    int n = parse_ids(text ? text : "", plain, 80);
    free(text);
    snprintf(cmd, sizeof cmd, "%s tokenize --model %s --pad 'a photo of a cat'", bin(), model);
    CHECK(test_run(cmd, &text) == 0);
    int np = parse_ids(text ? text : "", padded, 80);
    free(text);
    CHECK(n >= 3 && plain[0] == 49406 && plain[n - 1] == 49407);
    CHECK(np == 77 && n < np && memcmp(plain, padded, (size_t)n * sizeof *plain) == 0);
    CHECK(np == 77 && padded[76] == 49407); /* SD1 pads with EOS */
    /* the built-in tokenizer (no --model) gives the same ids */
    snprintf(cmd, sizeof cmd, "%s tokenize 'a photo of a cat'", bin());
    CHECK(test_run(cmd, &text) == 0);
    long builtin[80];
    int nb = parse_ids(text ? text : "", builtin, 80);
    free(text);
    CHECK(nb == n && memcmp(builtin, plain, (size_t)n * sizeof *plain) == 0);
    /* --verbose: one token per line with its piece */
    snprintf(cmd, sizeof cmd, "%s tokenize --verbose 'a photo'", bin());
    CHECK(test_run(cmd, &text) == 0);
    CHECKF(text && strstr(text, "49406\t<|startoftext|>\n") == text &&
               strstr(text, "\tphoto</w>\n") && strstr(text, "49407\t<|endoftext|>\n"),
           "--verbose output: %s", text ? text : "");
    free(text);
    /* errors */
    snprintf(cmd, sizeof cmd, "%s tokenize \"$(printf 'a \\377 b')\"", bin());
    CHECK(test_run(cmd, &text) == 1);
    CHECKF(text && strstr(text, "UTF-8"), "non-UTF-8 prompt: %s", text ? text : "");
    free(text);
    snprintf(cmd, sizeof cmd, "%s tokenize --max_token_length 100 cat", bin());
    CHECK(test_run(cmd, &text) == 1);
    CHECKF(text && strstr(text, "75, 150 or 225"), "%s", text ? text : "");
    free(text);
    snprintf(cmd, sizeof cmd, "%s tokenize --encode %s/x.safetensors cat", bin(), tmp);
    CHECK(test_run(cmd, &text) == 1);
    CHECKF(text && strstr(text, "--encode needs --model"), "%s", text ? text : "");
    free(text);
    /* the same embedding twice: its token exists the second time */
    char emb[1024];
    snprintf(emb, sizeof emb, "%s", test_fixture("text_encoder/sdtitok.safetensors"));
    snprintf(cmd, sizeof cmd, "%s tokenize --embeddings %s %s cat", bin(), emb, emb);
    CHECK(test_run(cmd, &text) == 1);
    CHECKF(text && strstr(text, "rename the file"), "%s", text ? text : "");
    free(text);
    snprintf(cmd, sizeof cmd, "%s tokenize --model %s --encode %s/x.safetensors --clip_skip 4 cat",
             bin(), model, tmp);
    CHECK(test_run(cmd, &text) == 1);
    CHECKF(text && strstr(text, "clip_skip 4"), "%s", text ? text : "");
    free(text);
}

/* sdti forward with unchunked padded rows [B, 152] (SD1, whose chunks carry the row's ids
 * unchanged, so the row can be rebuilt from kohya's chunks): chunked by sdti as kohya does. */
static void check_forward_padded_rows(const char *tmp) {
    TensorSet fx, in;
    tensor_set_init(&fx);
    tensor_set_init(&in);
    Error err = {{0}};
    CHECK_OK(safetensors_open(test_fixture("text_encoder/sd1-tiny-150.safetensors"), &fx, &err),
             &err);
    const NamedTensor *ids = tensor_set_find(&fx, "input_ids");
    const NamedTensor *extra = tensor_set_find(&fx, "extra_rows");
    if (ids && extra && ids->shape[1] == 2) {
        int batch = (int)ids->shape[0];
        int64_t rows[8][152];
        const int64_t *c = ids->data;
        for (int b = 0; b < batch && b < 8; b++) {
            const int64_t *ch = c + (size_t)b * 2 * 77;
            rows[b][0] = ch[0];
            memcpy(&rows[b][1], ch + 1, 75 * sizeof(int64_t));
            memcpy(&rows[b][76], ch + 77 + 1, 75 * sizeof(int64_t));
            rows[b][151] = ch[77 + 76];
        }
        int64_t shape[2] = {batch, 152};
        char in_path[1100], out_path[1100], cmd[4096];
        snprintf(in_path, sizeof in_path, "%s/padded-rows.safetensors", tmp);
        snprintf(out_path, sizeof out_path, "%s/padded-rows-out.safetensors", tmp);
        CHECK_OK(tensor_set_add(&in, "input_ids", DTYPE_I64, 2, shape, rows, &err), &err);
        CHECK_OK(tensor_set_add(&in, "extra_rows", extra->dtype, extra->ndim, extra->shape,
                                extra->data, &err),
                 &err);
        CHECK_OK(safetensors_write(in_path, &in, &err), &err);
        char model[1024];
        snprintf(model, sizeof model, "%s", test_fixture("models/sd1-tiny/diffusers"));
        snprintf(cmd, sizeof cmd,
                 "%s forward --model %s --component text-encoder --inputs %s --out %s "
                 "--clip_skip 2 --threads 1",
                 bin(), model, in_path, out_path);
        char *text = NULL;
        int rc = test_run(cmd, &text);
        CHECKF(rc == 0, "%s: exit %d: %s", cmd, rc, text ? text : "");
        free(text);
        if (rc == 0)
            compare_hidden(out_path, &fx, 2, -1, "forward padded rows [B, 152]");
        /* a row length that is no chunk count */
        int64_t bad_shape[2] = {1, 100};
        TensorSet bad;
        tensor_set_init(&bad);
        CHECK_OK(tensor_set_add(&bad, "input_ids", DTYPE_I64, 2, bad_shape, rows, &err), &err);
        CHECK_OK(safetensors_write(in_path, &bad, &err), &err);
        tensor_set_free(&bad);
        rc = test_run(cmd, &text);
        CHECK(rc == 1);
        CHECKF(text && strstr(text, "[batch, 77]"), "bad input_ids shape: %s", text ? text : "");
        free(text);
    } else {
        CHECKF(0, "sd1-tiny-150 fixture: input_ids / extra_rows missing");
    }
    tensor_set_free(&in);
    tensor_set_free(&fx);
}

int main(void) {
    const char *tmp = test_tmp_dir("cli_tokenize");
    check_plain_forms(tmp);
    check_forward_padded_rows(tmp);
    check_model("models/sd1-tiny/diffusers", "sd1-tiny", tmp);
    check_model("models/sd2-tiny/diffusers", "sd2-tiny", tmp);
    return test_finish();
}
