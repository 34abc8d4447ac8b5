/* kohya's TI token set-up: names, ids, init rows, --weights, caption rewrite (see header). */
#define _POSIX_C_SOURCE 200809L
#include "text/ti_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ti_tokens_free(TiTokens *t) {
    if (t->names)
        for (int i = 0; i < t->num_vectors; i++)
            free(t->names[i]);
    free(t->names);
    free(t->ids);
    free(t->token_string);
    free(t->replacement);
    free(t->init_ids);
    memset(t, 0, sizeof *t);
}

static int make_names(TiTokens *t, const char *s, int n, Error *err) {
    t->num_vectors = n;
    t->token_string = strdup(s);
    t->names = calloc((size_t)n, sizeof *t->names);
    t->ids = calloc((size_t)n, sizeof *t->ids);
    size_t total = 0;
    if (!t->token_string || !t->names || !t->ids)
        return error_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        /* f"{token_string}{i+1}" for the vectors after the first */
        size_t len = strlen(s) + 16;
        if (!(t->names[i] = malloc(len)))
            return error_set(err, "out of memory");
        if (i == 0)
            snprintf(t->names[i], len, "%s", s);
        else
            snprintf(t->names[i], len, "%s%d", s, i);
        total += strlen(t->names[i]) + 1;
    }
    if (!(t->replacement = malloc(total)))
        return error_set(err, "out of memory");
    t->replacement[0] = '\0';
    for (int i = 0; i < n; i++) { /* " ".join(token_strings) */
        if (i)
            strcat(t->replacement, " ");
        strcat(t->replacement, t->names[i]);
    }
    return 0;
}

int ti_tokens_add(Tokenizer *tok, const char *token_string, int num_vectors, const char *init_word,
                  TiTokens *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (!token_string || !token_string[0])
        return error_set(err, "--token_string is required (the word captions use for the new "
                              "embedding)");
    if (num_vectors < 1 || num_vectors > EMBEDDING_MAX_VECTORS)
        return error_set(err, "--num_vectors_per_token %d: must be 1..%d", num_vectors,
                         EMBEDDING_MAX_VECTORS);
    if (make_names(out, token_string, num_vectors, err) != 0)
        goto fail;
    /* kohya encodes the init word before adding the tokens, so a token string inside the init
     * word is still split by BPE there. */
    if (init_word) {
        if (tokenizer_encode(tok, init_word, &out->init_ids, &out->init_count, err) != 0) {
            error_prefix(err, "--init_word: ");
            goto fail;
        }
        if (out->init_count == 0) {
            error_set(err,
                      "--init_word \"%s\" gives no tokens, so there is nothing to initialise "
                      "the %d new vector%s from (kohya fails here with ZeroDivisionError): "
                      "give a word, or leave --init_word out",
                      init_word, num_vectors, num_vectors == 1 ? "" : "s");
            goto fail;
        }
        if (out->init_count > 1 && out->init_count != num_vectors)
            snprintf(out->init_note, sizeof out->init_note,
                     "--init_word \"%.80s\" is %d tokens for %d vectors: its tokens are %s "
                     "(as kohya does)",
                     init_word, out->init_count, num_vectors,
                     out->init_count < num_vectors ? "repeated in turn" : "truncated");
    }
    /* kohya: tokenizer.add_tokens(token_strings) must add all N, or training stops. Check
     * them all first so a refusal leaves the tokenizer unchanged. */
    for (int i = 0; i < num_vectors; i++)
        if (tokenizer_token_id(tok, out->names[i]) >= 0) {
            error_set(err,
                      "--token_string \"%s\": the tokenizer already has the token \"%s\" "
                      "(kohya: \"tokenizer has same word to token string. please use "
                      "another one\"): choose a string that is not a word piece of the CLIP "
                      "vocabulary, e.g. with a rare letter combination",
                      token_string, out->names[i]);
            goto fail;
        }
    for (int i = 0; i < num_vectors; i++)
        if (tokenizer_add_token(tok, out->names[i], &out->ids[i], err) != 0)
            goto fail;
    /* kohya asserts the ids are consecutive and end the vocabulary */
    for (int i = 1; i < num_vectors; i++)
        if (out->ids[i] != out->ids[0] + i) {
            error_set(err, "new token ids are not consecutive (%d after %d)", out->ids[i],
                      out->ids[i - 1]);
            goto fail;
        }
    if (out->ids[num_vectors - 1] != tokenizer_vocab_size(tok) - 1) {
        error_set(err, "new token ids do not end the vocabulary (%d, size %d)",
                  out->ids[num_vectors - 1], tokenizer_vocab_size(tok));
        goto fail;
    }
    return 0;
fail:
    ti_tokens_free(out);
    return -1;
}

int ti_tokens_init_rows(const TiTokens *t, const NamedTensor *te, float *new_rows, Error *err) {
    if (t->init_count == 0)
        return 0;
    if (te->ndim != 2 || te->shape[1] < 1)
        return error_set(err, "%s: a token-embedding matrix [vocab, dim] was expected", te->name);
    size_t dim = (size_t)te->shape[1], row_bytes = dim * dtype_size(te->dtype);
    /* token_embeds[token_id] = token_embeds[init_token_ids[i % len(init_token_ids)]] */
    for (int i = 0; i < t->num_vectors; i++) {
        int id = t->init_ids[i % t->init_count];
        if (id < 0 || id >= te->shape[0])
            return error_set(err,
                             "--init_word token id %d is not a row of the model's %lld-token "
                             "embedding (an added token?)",
                             id, (long long)te->shape[0]);
        if (dtype_convert_to_f32(te->dtype, (const char *)te->data + (size_t)id * row_bytes,
                                 new_rows + (size_t)i * dim, dim) != 0)
            return error_set(err, "%s: %s is not a float dtype", te->name,
                             dtype_display_name(te->dtype));
    }
    return 0;
}

int ti_tokens_load_weights(const TiTokens *t, const Embedding *w, const char *path, int dim,
                           float *new_rows, Error *err) {
    if (w->num_vectors != t->num_vectors)
        return error_set(err,
                         "--weights %s holds %d vector%s but --num_vectors_per_token is %d "
                         "(kohya: \"num_vectors_per_token is mismatch for weights\"): pass "
                         "--num_vectors_per_token %d to continue this embedding",
                         path, w->num_vectors, w->num_vectors == 1 ? "" : "s", t->num_vectors,
                         w->num_vectors);
    if (embedding_check_for_model(w, path, dim, err) != 0) {
        error_prefix(err, "--weights: ");
        return -1;
    }
    memcpy(new_rows, w->data, (size_t)t->num_vectors * (size_t)dim * sizeof(float));
    return 0;
}

int ti_tokens_extract(const TiTokens *t, const float *new_rows, int dim, Embedding *out,
                      Error *err) {
    embedding_init(out);
    if (dim < 1)
        return error_set(err, "width %d", dim);
    size_t n = (size_t)t->num_vectors * (size_t)dim;
    out->name = strdup(t->token_string);
    out->key = strdup("emb_params");
    out->data = malloc(n * sizeof(float));
    if (!out->name || !out->key || !out->data) {
        embedding_free(out);
        return error_set(err, "out of memory");
    }
    out->format = EMBEDDING_KOHYA_SAFETENSORS;
    out->num_vectors = t->num_vectors;
    out->dim = dim;
    out->dtype = DTYPE_F32;
    memcpy(out->data, new_rows, n * sizeof(float));
    return 0;
}

int ti_tokens_add_embedding(Tokenizer *tok, const Embedding *e, TiTokens *out, Error *err) {
    if (ti_tokens_add(tok, e->name, e->num_vectors, NULL, out, err) != 0) {
        if (strstr(err->message, "already has the token"))
            return error_set(err,
                             "embedding \"%s\": the tokenizer already has a token of that "
                             "name (kohya: \"tokenizer has same word to token string "
                             "(filename). please rename the file\"): rename the file",
                             e->name);
        return -1;
    }
    return 0;
}

int ti_tokens_expand_ids(const TiTokens *t, const int *ids, int count, int **out, int *out_count,
                         Error *err) {
    size_t n = 0;
    for (int i = 0; i < count; i++)
        n += ids[i] == t->ids[0] ? (size_t)t->num_vectors : 1;
    int *o = malloc((n ? n : 1) * sizeof *o);
    if (!o)
        return error_set(err, "out of memory");
    size_t k = 0;
    for (int i = 0; i < count; i++) {
        if (ids[i] == t->ids[0])
            for (int v = 0; v < t->num_vectors; v++)
                o[k++] = t->ids[v];
        else
            o[k++] = ids[i];
    }
    *out = o;
    *out_count = (int)n;
    return 0;
}

char *ti_tokens_rewrite_caption(const TiTokens *t, const char *caption) {
    if (t->num_vectors == 1)
        return strdup(caption);
    /* str.replace: non-overlapping, left to right */
    size_t slen = strlen(t->token_string), rlen = strlen(t->replacement), count = 0;
    for (const char *p = strstr(caption, t->token_string); p; p = strstr(p + slen, t->token_string))
        count++;
    size_t size = strlen(caption) + count * (rlen - slen) + 1;
    char *out = malloc(size), *o = out;
    if (!out)
        return NULL;
    const char *p = caption;
    for (const char *hit; (hit = strstr(p, t->token_string)) != NULL; p = hit + slen) {
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, t->replacement, rlen);
        o += rlen;
    }
    strcpy(o, p);
    return out;
}
