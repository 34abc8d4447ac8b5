/* Building a Tokenizer: from the embedded CLIP merges (as CLIP's simple_tokenizer and the
 * openai/clip-vit-large-patch14 vocab.json build it) or from a tokenizer folder (as
 * CLIPTokenizer.from_pretrained reads it). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "text/clip_vocab.h"
#include "text/text_normalize.h"
#include "text/tokenizer_internal.h"

/* CLIPTokenizer reads merges_file.read().strip().split("\n")[1 : 49152 - 256 - 2 + 1]. */
#define CLIP_MERGE_LINES (49152 - 256 - 2)
#define CLIP_VOCAB_SIZE  49408

static bool is_ascii_space(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Adds the merges of `text` with ranks 0.. (a line that is not two fields keeps its rank but
 * can never match, as its tuple never equals a pair). With `add_to_vocab`, each joined merge
 * also becomes the next vocabulary id, as CLIP builds its vocabulary. */
static int parse_merges(Tokenizer *t, const char *text, size_t size, const char *what,
                        bool add_to_vocab, int *next_id, int *merge_count, Error *err) {
    const char *p = text, *end = text + size;
    while (p < end && is_ascii_space(*p))
        p++;
    while (end > p && is_ascii_space(end[-1]))
        end--;
    const char *nl = memchr(p, '\n', (size_t)(end - p)); /* the first line is a header */
    p = nl ? nl + 1 : end;
    int rank = 0;
    for (; p < end && rank < CLIP_MERGE_LINES; rank++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *field[3];
        size_t field_len[3];
        int fields = 0;
        for (const char *q = p; q < eol;) {
            while (q < eol && is_ascii_space(*q))
                q++;
            if (q == eol)
                break;
            const char *f = q;
            while (q < eol && !is_ascii_space(*q))
                q++;
            if (fields < 3)
                field[fields] = f, field_len[fields] = (size_t)(q - f);
            fields++;
        }
        if (fields == 2) {
            if (bpe_add_merge(t->bpe, field[0], field_len[0], field[1], field_len[1], rank, err) !=
                0)
                return error_prefix(err, "%s: line %d: ", what, rank + 2);
            if (add_to_vocab) {
                char joined[512];
                if (field_len[0] + field_len[1] > sizeof joined)
                    return error_set(err, "%s: line %d: merge too long", what, rank + 2);
                memcpy(joined, field[0], field_len[0]);
                memcpy(joined + field_len[0], field[1], field_len[1]);
                if (tokenizer_set_vocab(t, joined, field_len[0] + field_len[1], (*next_id)++,
                                        err) != 0)
                    return -1;
            }
        } else if (add_to_vocab) {
            return error_set(err, "%s: line %d: expected two symbols", what, rank + 2);
        }
        p = eol < end ? eol + 1 : end;
    }
    *merge_count = rank;
    return 0;
}

static bool is_printable_byte(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* bytes_to_unicode's character for byte b, UTF-8 encoded into s; returns its length. */
static size_t byte_symbol(int b, char *s) {
    uint32_t cp = (uint32_t)b;
    if (!is_printable_byte(b)) {
        cp = 256;
        for (int x = 0; x < b; x++)
            cp += !is_printable_byte(x);
    }
    return text_utf8_encode(cp, (unsigned char *)s);
}

static int register_special(Tokenizer *t, const char *s, int *id, Error *err) {
    return tokenizer_register_added(t, s, strlen(s), -1, false, false, id, err);
}

int tokenizer_create_builtin(int pad_id, Tokenizer **out, Error *err) {
    *out = NULL;
    if (pad_id < 0 || pad_id >= CLIP_VOCAB_SIZE)
        return error_set(err, "pad id %d is outside the CLIP vocabulary (0..%d)", pad_id,
                         CLIP_VOCAB_SIZE - 1);
    char *text = NULL;
    size_t size = 0;
    if (clip_vocab_merges_text(&text, &size, err) != 0)
        return -1;
    Tokenizer *t = tokenizer_alloc();
    if (!t) {
        free(text);
        return error_set(err, "out of memory creating the tokenizer");
    }
    int next_id = 0, merges = 0;
    /* the byte symbols in bytes_to_unicode's order: printable bytes, then the others */
    for (int pass = 0; pass < 2; pass++) {
        for (int printable = 1; printable >= 0; printable--) {
            for (int b = 0; b < 256; b++) {
                if (is_printable_byte(b) != (printable == 1))
                    continue;
                char s[8];
                size_t len = byte_symbol(b, s);
                if (pass == 1)
                    memcpy(s + len, "</w>", 4), len += 4;
                if (tokenizer_set_vocab(t, s, len, next_id++, err) != 0)
                    goto fail;
            }
        }
    }
    if (parse_merges(t, text, size, "built-in CLIP merges", true, &next_id, &merges, err) != 0)
        goto fail;
    if (merges != CLIP_MERGE_LINES) {
        error_set(err, "built-in CLIP merges: %d merges, expected %d; rebuild sdti", merges,
                  CLIP_MERGE_LINES);
        goto fail;
    }
    if (tokenizer_set_vocab(t, "<|startoftext|>", 15, next_id++, err) != 0 ||
        tokenizer_set_vocab(t, "<|endoftext|>", 13, next_id++, err) != 0 ||
        bpe_finish(t->bpe, err) != 0)
        goto fail;
    const char *pad = tokenizer_id_to_token(t, pad_id);
    if (register_special(t, "<|startoftext|>", &t->bos_id, err) != 0 ||
        register_special(t, "<|endoftext|>", &t->eos_id, err) != 0 ||
        register_special(t, "<|endoftext|>", &t->unk_id, err) != 0 ||
        register_special(t, pad, &t->pad_id, err) != 0)
        goto fail;
    free(text);
    *out = t;
    return 0;
fail:
    free(text);
    tokenizer_free(t);
    return -1;
}

/* ---- tokenizer folders ----------------------------------------------------------------------- */

static cJSON *read_json(const char *dir, const char *name, bool required, Error *err,
                        bool *failed) {
    char *path = path_join(dir, name), *data = NULL;
    size_t size = 0;
    cJSON *json = NULL;
    *failed = false;
    if (!path) {
        *failed = true;
        error_set(err, "out of memory");
        return NULL;
    }
    if (!required && !file_exists(path)) {
        free(path);
        return NULL;
    }
    if (file_read_all(path, &data, &size, err) != 0) {
        *failed = true;
    } else if (!(json = cJSON_ParseWithLength(data, size))) {
        *failed = true;
        error_set(err, "%s: not valid JSON", path);
    }
    free(data);
    free(path);
    return json;
}

/* A special token entry: a string, an AddedToken object {"content": ...}, or null (none).
 * Leaves *value unchanged when the key is absent. */
static int special_token_value(const cJSON *obj, const char *key, const char *file, char *value,
                               size_t cap, bool *present, Error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return 0;
    if (cJSON_IsObject(item))
        item = cJSON_GetObjectItemCaseSensitive(item, "content");
    if (cJSON_IsNull(item)) {
        *present = false;
        return 0;
    }
    if (!cJSON_IsString(item) || strlen(item->valuestring) >= cap || !item->valuestring[0])
        return error_set(err, "%s: \"%s\" is not a usable token string", file, key);
    strcpy(value, item->valuestring);
    *present = true;
    return 0;
}

static int load_vocab_json(Tokenizer *t, const char *dir, Error *err) {
    bool failed;
    cJSON *vocab = read_json(dir, "vocab.json", true, err, &failed);
    if (failed)
        return -1;
    int rc = 0;
    if (!cJSON_IsObject(vocab))
        rc = error_set(err, "%s/vocab.json: expected an object {token: id}", dir);
    for (const cJSON *item = vocab ? vocab->child : NULL; item && rc == 0; item = item->next) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (v < 0 || v >= (1 << 24) || v != (double)(int)v)
            rc = error_set(err, "%s/vocab.json: key \"%.80s\": id is not an integer in 0..16777215",
                           dir, item->string);
        else
            rc = tokenizer_set_vocab(t, item->string, strlen(item->string), (int)v, err);
    }
    cJSON_Delete(vocab);
    return rc;
}

static int load_added_tokens(Tokenizer *t, const char *dir, const cJSON *config, Error *err) {
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(config, "added_tokens_decoder");
    for (const cJSON *item = decoder ? decoder->child : NULL; item; item = item->next) {
        char *endp;
        long id = strtol(item->string, &endp, 10);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (*endp || id < 0 || id >= (1 << 24) || !cJSON_IsString(content) ||
            !content->valuestring[0])
            return error_set(
                err,
                "%s/tokenizer_config.json: added_tokens_decoder \"%.40s\": expected an id "
                "and a non-empty \"content\"",
                dir, item->string);
        bool lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "lstrip"));
        bool rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "rstrip"));
        if (tokenizer_register_added(t, content->valuestring, strlen(content->valuestring), (int)id,
                                     lstrip, rstrip, NULL, err) != 0)
            return error_prefix(err, "%s/tokenizer_config.json: ", dir);
    }
    bool failed;
    cJSON *legacy = read_json(dir, "added_tokens.json", false, err, &failed);
    if (failed)
        return -1;
    int rc = 0;
    for (const cJSON *item = legacy ? legacy->child : NULL; item && rc == 0; item = item->next) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (v < 0 || v >= (1 << 24) || !item->string[0])
            rc = error_set(err,
                           "%s/added_tokens.json: \"%.40s\": expected a token and an integer id",
                           dir, item->string);
        else
            rc = tokenizer_register_added(t, item->string, strlen(item->string), (int)v, false,
                                          false, NULL, err);
    }
    cJSON_Delete(legacy);
    return rc;
}

int tokenizer_load_dir(const char *dir, Tokenizer **out, Error *err) {
    *out = NULL;
    Tokenizer *t = tokenizer_alloc();
    char *merges_path = path_join(dir, "merges.txt"), *merges = NULL;
    cJSON *config = NULL, *special_map = NULL;
    size_t merges_size = 0;
    int next_id = 0, merge_count = 0;
    bool failed;
    if (!t || !merges_path) {
        error_set(err, "out of memory loading %s", dir);
        goto fail;
    }
    if (load_vocab_json(t, dir, err) != 0)
        goto fail;
    if (file_read_all(merges_path, &merges, &merges_size, err) != 0 ||
        parse_merges(t, merges, merges_size, merges_path, false, &next_id, &merge_count, err) !=
            0 ||
        bpe_finish(t->bpe, err) != 0)
        goto fail;
    config = read_json(dir, "tokenizer_config.json", false, err, &failed);
    if (failed)
        goto fail;
    special_map = read_json(dir, "special_tokens_map.json", false, err, &failed);
    if (failed)
        goto fail;
    if (load_added_tokens(t, dir, config, err) != 0)
        goto fail;

    /* CLIPTokenizer's defaults, then tokenizer_config.json, then special_tokens_map.json */
    static const char *const keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    char values[4][256] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    bool present[4] = {true, true, true, true};
    int *ids[4] = {&t->bos_id, &t->eos_id, &t->unk_id, &t->pad_id};
    for (int k = 0; k < 4; k++) {
        if (special_token_value(config, keys[k], "tokenizer_config.json", values[k],
                                sizeof values[k], &present[k], err) != 0 ||
            special_token_value(special_map, keys[k], "special_tokens_map.json", values[k],
                                sizeof values[k], &present[k], err) != 0) {
            error_prefix(err, "%s/", dir);
            goto fail;
        }
        if (present[k] && register_special(t, values[k], ids[k], err) != 0)
            goto fail;
    }
    if (t->bos_id < 0 || t->eos_id < 0) {
        error_set(err, "%s: the tokenizer has no bos_token or eos_token", dir);
        goto fail;
    }
    if (t->unk_id < 0)
        t->unk_id = t->eos_id;
    free(merges_path);
    free(merges);
    cJSON_Delete(config);
    cJSON_Delete(special_map);
    *out = t;
    return 0;
fail:
    free(merges_path);
    free(merges);
    cJSON_Delete(config);
    cJSON_Delete(special_map);
    tokenizer_free(t);
    return -1;
}
