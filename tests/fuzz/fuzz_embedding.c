/* libFuzzer target: any bytes given to the embedding readers (safetensors, torch zip, legacy
 * torch; kohya, A1111, diffusers layouts) must give an embedding or a one-line error naming
 * the file, never a crash or a leak. An embedding read must be consistent (finite values
 * inside its own block) and must survive the writers and a second read unchanged. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/embedding_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const Error *err) {
    if (strncmp(err->message, "fuzz.pt", 7) != 0 || strchr(err->message, '\n'))
        abort(); /* a failure names the file on one line */
}

/* Writes the embedding as A1111 .pt and reads it back: same vectors. */
static void round_trip(const Embedding *e) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz-embedding-%d.pt", (int)getpid());
    Error err;
    if (embedding_save_a1111_pt(e, path, DTYPE_F32, &err) != 0)
        abort();
    Embedding back;
    if (embedding_load(path, &back, &err) != 0)
        abort();
    unlink(path);
    if (back.num_vectors != e->num_vectors || back.dim != e->dim ||
        memcmp(back.data, e->data, (size_t)e->num_vectors * (size_t)e->dim * sizeof(float)) != 0)
        abort();
    embedding_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Embedding e;
    Error err;
    err.message[0] = '\0';
    if (embedding_load_buffer("fuzz.pt", data, size, &e, &err) == 0) {
        if (e.num_vectors < 1 || e.dim < 1 || e.num_vectors > EMBEDDING_MAX_VECTORS ||
            e.dim > EMBEDDING_MAX_DIM || !e.data || !e.key)
            abort();
        for (size_t i = 0; i < (size_t)e.num_vectors * (size_t)e.dim; i++)
            if (!isfinite(e.data[i]))
                abort();
        (void)embedding_check_for_model(&e, "fuzz.pt", 768, &err);
        if ((size_t)e.num_vectors * (size_t)e.dim <= 65536)
            round_trip(&e);
        embedding_free(&e);
    } else {
        check_error(&err);
    }
    return 0;
}
