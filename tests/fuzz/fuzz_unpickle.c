/* libFuzzer target: any bytes given to the unpickler must give a tree or a one-line error,
 * never a crash or a leak; inputs starting like a zip or a legacy checkpoint also go through
 * the torch file reader, whose tensors must lie inside the blocks it owns. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"
#include "formats/torch_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const Error *err) {
    if (err->message[0] == '\0' || strchr(err->message, '\n'))
        abort(); /* a failure must come with a one-line message */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    PickleDoc doc;
    pickle_doc_init(&doc);
    Error err;
    err.message[0] = '\0';
    size_t used = 0;
    if (pickle_parse("fuzz-input", data, size, &doc, &used, &err) == 0) {
        if (!doc.root || used > size)
            abort();
    } else {
        check_error(&err);
    }
    pickle_doc_free(&doc);

    TensorSet set;
    tensor_set_init(&set);
    err.message[0] = '\0';
    if (torch_file_load_buffer("fuzz-input", data, size, &set, &doc, &err) == 0) {
        for (size_t i = 0; i < set.count; i++) {
            const NamedTensor *t = &set.items[i];
            if (t->nbytes != (size_t)tensor_numel(t) * dtype_size(t->dtype))
                abort();
            volatile uint8_t sink = 0; /* touch every byte: ASan checks they are ours */
            for (size_t b = 0; b < t->nbytes; b++)
                sink ^= ((const uint8_t *)t->data)[b];
            (void)sink;
        }
        pickle_doc_free(&doc);
    } else {
        check_error(&err);
    }
    tensor_set_free(&set);
    return 0;
}
