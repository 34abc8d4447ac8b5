/* libFuzzer target: A1111 prompt weighting and BREAK (prompt_weights.h) on any text:
 * prompt_attention_parse must give runs of text with weights or a one-line error, and
 * prompt_tokens_build (the built-in CLIP tokenizer with a 3-vector TI token) ids inside the
 * vocabulary, one weight each, at most max_tokens of them; never a crash, leak or UB. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "generate/prompt_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Tokenizer *tok;
static TiTokens ti;

static void setup(void) {
    Error err;
    if (tokenizer_create_builtin(TOKENIZER_SD1_PAD_ID, &tok, &err) != 0 ||
        ti_tokens_add(tok, "mychar", 3, "cat", &ti, &err) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    log_set_level(LOG_ERROR); /* truncation warnings */
    if (!tok)
        setup();
    if (size < 1)
        return 0;
    int max_tokens = 75 * (1 + data[0] % 3); /* --max_embeddings_multiples 1..3 */
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    WeightedText *runs = NULL;
    int count = 0;
    Error err;
    err.message[0] = '\0';
    if (prompt_attention_parse(text, &runs, &count, &err) == 0) {
        if (count < 0 || (count > 0 && !runs))
            abort();
        for (int i = 0; i < count; i++)
            if (!runs[i].text)
                abort();
        weighted_text_free(runs, count);
    } else if (err.message[0] == '\0' || strchr(err.message, '\n') || runs) {
        abort();
    }

    PromptTokens pt;
    memset(&pt, 0, sizeof pt);
    err.message[0] = '\0';
    if (prompt_tokens_build(tok, &ti, 1, text, max_tokens, &pt, &err) == 0) {
        if (pt.count < 0 || pt.count > max_tokens || (pt.count > 0 && (!pt.ids || !pt.weights)))
            abort();
        for (int i = 0; i < pt.count; i++)
            if (pt.ids[i] < 0 || pt.ids[i] >= tokenizer_vocab_size(tok))
                abort();
        prompt_tokens_free(&pt);
    } else if (err.message[0] == '\0' || strchr(err.message, '\n')) {
        abort();
    }
    free(text);
    return 0;
}
