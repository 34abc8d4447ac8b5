/* libFuzzer target: arbitrary bytes through the tokenizer (SD1 and SD2 pad rules, with TI
 * tokens that overlap, so the added-token trie is exercised). Must never crash. */
#include <stdint.h>
#include <stdlib.h>

#include "text/tokenizer.h"

static Tokenizer *make(int pad_id) {
    Error err;
    Tokenizer *t = NULL;
    if (tokenizer_create_builtin(pad_id, &t, &err) != 0)
        abort();
    const char *ti[] = {"mychar", "mychar1", "mychar10", "MyStyle", "har1x", "<|end"};
    for (size_t i = 0; i < sizeof ti / sizeof ti[0]; i++)
        if (tokenizer_add_token(t, ti[i], NULL, &err) != 0)
            abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Tokenizer *sd1, *sd2;
    if (!sd1)
        sd1 = make(TOKENIZER_SD1_PAD_ID), sd2 = make(TOKENIZER_SD2_PAD_ID);
    Error err;
    int *ids = NULL, count = 0;
    if (tokenizer_encode_bytes(size & 1 ? sd2 : sd1, (const char *)data, size, &ids, &count,
                               &err) == 0) {
        for (int i = 0; i < count; i++)
            if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(sd1))
                abort();
    }
    free(ids);
    return 0;
}
