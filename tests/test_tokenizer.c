// labels: unit golden
/* The CLIP tokenizer against transformers' slow CLIPTokenizer (tests/fixtures/tokenizer/,
 * made by tools/reference/make_tokenizer_fixtures.py), plus padding, added tokens, tokenizer
 * folders, bad input and the fast BPE path against the reference loop. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "test_util.h"
#include "text/bpe.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_escaped(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p != 0x7F && *p != '"' && *p != '\\')
            putchar(*p);
        else
            printf("\\x%02x", *p);
    }
}

static void print_ids(const char *label, const int *ids, int n) {
    printf("    %s:", label);
    for (int i = 0; i < n && i < 40; i++)
        printf(" %d", ids[i]);
    printf(n > 40 ? " ...\n" : "\n");
}

/* Compares ids with a JSON array; returns true when equal. */
static bool ids_equal(const int *ids, int n, const cJSON *want) {
    if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != n)
        return false;
    int i = 0;
    for (const cJSON *v = want->child; v; v = v->next, i++)
        if (!cJSON_IsNumber(v) || v->valueint != ids[i])
            return false;
    return true;
}

static int json_ids(const cJSON *arr, int *out, int cap) {
    int n = 0;
    for (const cJSON *v = arr ? arr->child : NULL; v && n < cap; v = v->next)
        out[n++] = v->valueint;
    return n;
}

typedef struct Corpus {
    char *data;
    cJSON **records;
    int count;
    cJSON *header;
} Corpus;

static int load_corpus(Corpus *c) {
    Error err;
    size_t size;
    memset(c, 0, sizeof *c);
    if (file_read_all(test_fixture("tokenizer/corpus.jsonl"), &c->data, &size, &err) != 0) {
        printf("cannot read corpus: %s\n", err.message);
        return -1;
    }
    int lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += c->data[i] == '\n';
    c->records = calloc((size_t)lines + 1, sizeof *c->records);
    char *line = c->data;
    for (char *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        if (!j)
            return -1;
        if (!c->header)
            c->header = j;
        else
            c->records[c->count++] = j;
    }
    return 0;
}

static void free_corpus(Corpus *c) {
    for (int i = 0; i < c->count; i++)
        cJSON_Delete(c->records[i]);
    cJSON_Delete(c->header);
    free(c->records);
    free(c->data);
}

static void add_ti_tokens(Tokenizer *t, const cJSON *header) {
    Error err;
    int expect = tokenizer_vocab_size(t);
    const cJSON *list = cJSON_GetObjectItem(header, "ti_tokens");
    for (const cJSON *v = list ? list->child : NULL; v; v = v->next) {
        int id = -1;
        CHECK_OK(tokenizer_add_token(t, v->valuestring, &id, &err), &err);
        CHECKF(id == expect, "TI token %s got id %d, expected %d", v->valuestring, id, expect);
        expect++;
    }
}

/* Every corpus prompt through `t`, against record[key] (or record["sd1"] when absent). */
static void check_corpus(const char *name, const Tokenizer *t, const Corpus *c, const char *key,
                         const char *pad_key) {
    int mismatches = 0, hf_differs = 0, padded = 0;
    int *want = malloc(4096 * sizeof *want), pad_ids[227];
    for (int r = 0; r < c->count; r++) {
        const cJSON *rec = c->records[r];
        const char *prompt = cJSON_GetObjectItem(rec, "p")->valuestring;
        const cJSON *expected = cJSON_GetObjectItem(rec, key);
        if (!expected)
            expected = cJSON_GetObjectItem(rec, "sd1");
        int *ids = NULL, n = 0;
        Error err;
        char bytes[256];
        size_t size = strlen(prompt);
        const cJSON *hex = cJSON_GetObjectItem(rec, "p_hex"); /* prompts holding NUL bytes */
        if (hex) {
            size = strlen(hex->valuestring) / 2;
            for (size_t i = 0; i < size && i < sizeof bytes; i++)
                sscanf(hex->valuestring + 2 * i, "%2hhx", (unsigned char *)&bytes[i]);
            prompt = bytes;
        }
        if (tokenizer_encode_bytes(t, prompt, size, &ids, &n, &err) != 0) {
            CHECKF(false, "%s: encode failed: %s", name, err.message);
            continue;
        }
        if (!ids_equal(ids, n, expected)) {
            if (++mismatches <= 5) {
                printf("  %s mismatch, prompt \"", name);
                print_escaped(prompt);
                printf("\"\n");
                print_ids("got ", ids, n);
                print_ids("want", want, json_ids(expected, want, 4096));
            }
        }
        const cJSON *hf = cJSON_GetObjectItem(rec, "sd1_hf");
        if (hf && strcmp(key, "sd1") == 0 && !ids_equal(ids, n, hf))
            hf_differs++;
        free(ids);
        const cJSON *pad = pad_key ? cJSON_GetObjectItem(rec, "pad") : NULL;
        if (pad) {
            int L = cJSON_GetObjectItem(pad, "L")->valueint;
            CHECK_OK(tokenizer_encode_padded(t, prompt, L, pad_ids, &err), &err);
            CHECKF(ids_equal(pad_ids, L, cJSON_GetObjectItem(pad, pad_key)),
                   "%s: padded ids (L=%d) differ for \"%s\"", name, L, prompt);
            padded++;
        }
    }
    printf("%s: %d prompts, %d mismatches, %d padded checks", name, c->count, mismatches, padded);
    if (strcmp(key, "sd1") == 0)
        printf(", %d differ from full ftfy (mojibake repair)", hf_differs);
    printf("\n");
    CHECKF(mismatches == 0, "%s: %d of %d corpus prompts differ from CLIPTokenizer", name,
           mismatches, c->count);
    CHECK(c->count >= 2000);
    free(want);
}

static void test_corpus(void) {
    Corpus c;
    if (load_corpus(&c) != 0) {
        CHECKF(false, "corpus fixture missing or unreadable");
        return;
    }
    Error err;
    Tokenizer *sd1 = NULL, *sd2 = NULL, *plain = NULL, *dir1 = NULL, *dir2 = NULL;
    double t0 = now_seconds();
    CHECK_OK(tokenizer_create_builtin(TOKENIZER_SD1_PAD_ID, &sd1, &err), &err);
    printf("built-in tokenizer created in %.1f ms\n", (now_seconds() - t0) * 1e3);
    CHECK_OK(tokenizer_create_builtin(TOKENIZER_SD2_PAD_ID, &sd2, &err), &err);
    CHECK_OK(tokenizer_create_builtin(TOKENIZER_SD1_PAD_ID, &plain, &err), &err);
    t0 = now_seconds();
    CHECK_OK(tokenizer_load_dir(test_fixture("models/sd1-tiny/diffusers/tokenizer"), &dir1, &err),
             &err);
    printf("tokenizer folder loaded in %.1f ms\n", (now_seconds() - t0) * 1e3);
    CHECK_OK(tokenizer_load_dir(test_fixture("models/sd2-tiny/diffusers/tokenizer"), &dir2, &err),
             &err);
    if (!sd1 || !sd2 || !plain || !dir1 || !dir2)
        goto done;
    CHECK(tokenizer_pad_id(dir1) == 49407 && tokenizer_pad_id(dir2) == 0);
    CHECK(tokenizer_vocab_size(sd1) == 49408 && tokenizer_vocab_size(dir2) == 49408);
    add_ti_tokens(sd1, c.header);
    add_ti_tokens(sd2, c.header);
    add_ti_tokens(dir1, c.header);
    add_ti_tokens(dir2, c.header);
    check_corpus("sd1 (built-in, pad EOS, TI tokens)", sd1, &c, "sd1", "sd1");
    check_corpus("sd2 (built-in, pad \"!\", TI tokens)", sd2, &c, "sd2", "sd2");
    check_corpus("sd1 (built-in, no TI tokens)", plain, &c, "plain", NULL);
    check_corpus("sd1 (tokenizer folder, TI tokens)", dir1, &c, "sd1", "sd1");
    check_corpus("sd2 (tokenizer folder, TI tokens)", dir2, &c, "sd2", "sd2");
done:
    tokenizer_free(sd1);
    tokenizer_free(sd2);
    tokenizer_free(plain);
    tokenizer_free(dir1);
    tokenizer_free(dir2);
    free_corpus(&c);
}

static void test_padding_and_specials(Tokenizer *t) {
    Error err;
    int ids[227];
    CHECK_OK(tokenizer_encode_padded(t, "", 77, ids, &err), &err);
    CHECK(ids[0] == 49406 && ids[1] == 49407 && ids[2] == 49407 && ids[76] == 49407);
    /* 300 "cat" tokens: truncated to 75 + BOS/EOS, 150 + BOS/EOS */
    char long_prompt[1300] = "";
    for (int i = 0; i < 300; i++)
        strcat(long_prompt, "cat ");
    int *raw = NULL, n = 0;
    CHECK_OK(tokenizer_encode(t, long_prompt, &raw, &n, &err), &err);
    CHECK(n == 300);
    CHECK_OK(tokenizer_encode_padded(t, long_prompt, 77, ids, &err), &err);
    CHECK(ids[0] == 49406 && ids[1] == raw[0] && ids[75] == raw[74] && ids[76] == 49407);
    CHECK_OK(tokenizer_encode_padded(t, long_prompt, 152, ids, &err), &err);
    CHECK(ids[150] == raw[149] && ids[151] == 49407);
    free(raw);
    CHECK_FAILS_WITH(tokenizer_encode_padded(t, "cat", 1, ids, &err), &err, "max_length 1");
    CHECK(tokenizer_token_id(t, "<|startoftext|>") == 49406);
    CHECK(tokenizer_token_id(t, "no such token") == -1);
    CHECK(strcmp(tokenizer_id_to_token(t, 49407), "<|endoftext|>") == 0);
    CHECK(strcmp(tokenizer_id_to_token(t, 0), "!") == 0);
    CHECK(tokenizer_id_to_token(t, -1) == NULL && tokenizer_id_to_token(t, 1 << 20) == NULL);
}

static void test_added_tokens(Tokenizer *t) {
    Error err;
    int id = -1, base = tokenizer_vocab_size(t);
    CHECK_OK(tokenizer_add_token(t, "mychar", &id, &err), &err);
    CHECK(id == base && tokenizer_vocab_size(t) == base + 1);
    CHECK_FAILS_WITH(tokenizer_add_token(t, "mychar", &id, &err), &err,
                     "same word to token string");
    CHECK_FAILS_WITH(tokenizer_add_token(t, "cat</w>", &id, &err), &err, "already a token");
    CHECK_FAILS_WITH(tokenizer_add_token(t, "<|endoftext|>", &id, &err), &err, "already a token");
    CHECK_FAILS_WITH(tokenizer_add_token(t, "", &id, &err), &err, "empty");
    CHECK(tokenizer_vocab_size(t) == base + 1);
    CHECK(tokenizer_token_id(t, "mychar") == base);
    int *ids = NULL, n = 0;
    CHECK_OK(tokenizer_encode(t, "a mychar,mychar", &ids, &n, &err), &err);
    CHECK(n == 4 && ids[1] == base && ids[3] == base);
    free(ids);
}

static void test_bad_input(Tokenizer *t) {
    Error err;
    int *ids = NULL, n = 0, padded[77];
    CHECK_FAILS_WITH(tokenizer_encode(t, "abc\xff", &ids, &n, &err), &err, "byte 3");
    CHECK_FAILS_WITH(tokenizer_encode(t, "\xC0\xAF", &ids, &n, &err), &err, "byte 0");
    CHECK_FAILS_WITH(tokenizer_encode(t, "ok \xED\xA0\x80", &ids, &n, &err), &err, "byte 3");
    CHECK_FAILS_WITH(tokenizer_encode(t, "\xE2\x82", &ids, &n, &err), &err, "invalid UTF-8");
    CHECK_FAILS_WITH(tokenizer_encode(t, "\xF4\x90\x80\x80", &ids, &n, &err), &err, "byte 0");
    CHECK_FAILS_WITH(tokenizer_encode_padded(t, "caf\xE9", 77, padded, &err), &err, "byte 3");
    /* NUL bytes: ftfy removes them */
    CHECK_OK(tokenizer_encode_bytes(t, "a\0b", 3, &ids, &n, &err), &err);
    free(ids);
}

static void test_load_dir_errors(void) {
    Error err;
    Tokenizer *t = NULL;
    const char *dir = test_tmp_dir("test_tokenizer");
    CHECK_FAILS_WITH(tokenizer_load_dir(dir, &t, &err), &err, "vocab.json");
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    test_write_file(path, "{\"a\": 0,", 8);
    CHECK_FAILS_WITH(tokenizer_load_dir(dir, &t, &err), &err, "not valid JSON");
    test_write_file(path, "{\"a\": 0, \"b\": \"x\"}", 18);
    CHECK_FAILS_WITH(tokenizer_load_dir(dir, &t, &err), &err, "key \"b\"");
    test_write_file(path, "{\"a\": 0, \"b\": 1}", 16);
    CHECK_FAILS_WITH(tokenizer_load_dir(dir, &t, &err), &err, "merges.txt");
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    test_write_file(path, "#version: 0.2\na b\n", 18);
    CHECK_OK(tokenizer_load_dir(dir, &t, &err), &err); /* specials become new added tokens */
    if (t) {
        CHECK(tokenizer_bos_id(t) == 2 && tokenizer_eos_id(t) == 3 && tokenizer_pad_id(t) == 3);
        int *ids = NULL, n = 0;
        CHECK_OK(tokenizer_encode(t, "ab ab", &ids, &n, &err), &err);
        /* "a" + "b</w>" (no merge rule for that pair); "b</w>" is unknown: unk, the added
         * <|endoftext|> (CLIPTokenizer itself returns None there) */
        CHECK(n == 4 && ids[0] == 0 && ids[1] == 3 && ids[2] == 0 && ids[3] == 3);
        free(ids);
    }
    tokenizer_free(t);
}

/* The priority-queue BPE must agree with the plain reference loop. */
static void test_bpe_paths(const Tokenizer *t) {
    CHECK(bpe_uses_fast_path(t->bpe));
    unsigned rng = 12345;
    const char *alphabet = "abcdefghijklmnopqrstuvwxyzeeeaaiioo'-1\xC3\xA9";
    int *a = NULL, *b = NULL;
    size_t na = 0, ca = 0, nb = 0, cb = 0;
    int bad = 0;
    Error err;
    for (int trial = 0; trial < 3000; trial++) {
        unsigned char word[64];
        size_t len = 1 + (rng = rng * 1103515245u + 12345u) % 40;
        for (size_t i = 0; i < len; i++)
            word[i] = (unsigned char)alphabet[(rng = rng * 1103515245u + 12345u) % 39];
        na = nb = 0;
        CHECK_OK(bpe_encode_word(t->bpe, word, len, false, &a, &na, &ca, &err), &err);
        CHECK_OK(bpe_encode_word(t->bpe, word, len, true, &b, &nb, &cb, &err), &err);
        bad += na != nb || memcmp(a, b, na * sizeof *a) != 0;
    }
    CHECKF(bad == 0, "%d words differ between the fast and the reference BPE", bad);
    free(a);
    free(b);
}

static void test_speed(const Tokenizer *t) {
    char prompt[4096] = "";
    for (int i = 0; prompt[0] == 0 || strlen(prompt) < 1400; i++)
        strcat(prompt,
               i % 3 ? "masterpiece, (intricate:1.2) details, " : "a photo of a cat in the snow, ");
    int *ids = NULL, n = 0;
    Error err;
    double t0 = now_seconds();
    int runs = 200;
    for (int r = 0; r < runs; r++) {
        free(ids);
        CHECK_OK(tokenizer_encode(t, prompt, &ids, &n, &err), &err);
    }
    double per = (now_seconds() - t0) / runs;
    printf("encoding a %d-token prompt: %.3f ms\n", n, per * 1e3);
    CHECK(n >= 300);
    CHECKF(per < 0.02, "encoding took %.3f ms", per * 1e3); /* generous: sanitizer builds */
    free(ids);
}

int main(void) {
    test_corpus();
    Error err;
    Tokenizer *t = NULL;
    CHECK_OK(tokenizer_create_builtin(TOKENIZER_SD1_PAD_ID, &t, &err), &err);
    if (t) {
        test_padding_and_specials(t);
        test_bad_input(t);
        test_bpe_paths(t);
        test_speed(t);
        test_added_tokens(t);
    }
    tokenizer_free(t);
    CHECK_FAILS_WITH(tokenizer_create_builtin(49408, &t, &err), &err, "pad id 49408");
    test_load_dir_errors();
    return test_finish();
}
