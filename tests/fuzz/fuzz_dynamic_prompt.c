/* libFuzzer target: kohya's dynamic prompts ({a|b}, {2$$a|b}, {1-3$$ and $$a|b}, {e$$a|b})
 * through dynamic_prompt_expand with a seeded Python random stream: any text gives prompts
 * (at most 10000) or a one-line error, never a crash, a
 * leak or UB. The first byte picks the repeat count, the next four the seed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "generate/dynamic_prompt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5)
        return 0;
    int repeat = 1 + data[0] % 4;
    int64_t seed =
        (int64_t)data[1] | (int64_t)data[2] << 8 | (int64_t)data[3] << 16 | (int64_t)data[4] << 24;
    char *text = malloc(size - 4);
    if (!text)
        return 0;
    memcpy(text, data + 5, size - 5);
    text[size - 5] = '\0';
    PyRandom py;
    py_random_seed(&py, seed);
    char **out = NULL;
    int count = 0;
    Error err;
    err.message[0] = '\0';
    if (dynamic_prompt_expand(text, repeat, &py, &out, &count, &err) == 0) {
        if (count < 0 || (count > 0 && !out) || count > 10000)
            abort(); /* none when an enumerated count exceeds its variants, as in kohya */
        for (int i = 0; i < count; i++)
            if (!out[i])
                abort();
        dynamic_prompt_free(out, count);
    } else if (err.message[0] == '\0' || strchr(err.message, '\n') || out) {
        abort();
    }
    free(text);
    return 0;
}
