/* libFuzzer target: any bytes given to safetensors_parse must give a valid set or an error,
 * never a crash, a leak or a tensor pointing outside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "formats/tensor_set.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    TensorSet set;
    tensor_set_init(&set);
    Error err;
    err.message[0] = '\0';
    if (safetensors_parse("fuzz-input", data, size, &set, &err) == 0) {
        for (size_t i = 0; i < set.count; i++) {
            const NamedTensor *t = &set.items[i];
            if (t->nbytes == 0)
                continue;
            /* Every tensor must lie inside the input (ASan would not see it otherwise,
             * nothing is read here). */
            const uint8_t *p = t->data;
            if (p < data || p + t->nbytes > data + size ||
                t->nbytes != (size_t)tensor_numel(t) * dtype_size(t->dtype))
                abort();
        }
        for (size_t i = 0; i < set.meta_count; i++)
            if (!set.meta[i].key || !set.meta[i].value)
                abort();
    } else if (err.message[0] == '\0' || strchr(err.message, '\n')) {
        abort(); /* a failure must come with a one-line message */
    }
    tensor_set_free(&set);
    return 0;
}
