/* `sdti inspect FILE` for textual-inversion embeddings: layout, vectors, width, dtype and the
 * training metadata the file carries. */
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli/inspect_embedding.h"
#include "text/embedding_file.h"

static const char *family(int dim) {
    return dim == 768 ? " (SD1.x, CLIP ViT-L)" : dim == 1024 ? " (SD2.x, OpenCLIP ViT-H)" : "";
}

static void print_embedding(const char *path, const Embedding *e) {
    printf("path:          %s\n", path);
    printf("format:        %s", embedding_format_name(e->format));
    if (e->format == EMBEDDING_A1111_PT || e->format == EMBEDDING_KOHYA_PT ||
        e->format == EMBEDDING_DIFFUSERS_BIN)
        printf(", %s torch file", e->torch_zip ? "zip" : "legacy");
    printf("\n");
    printf("token:         %s (the file name: A1111 and kohya use the embedding by it)\n", e->name);
    printf("tensor key:    %s%s\n", e->format == EMBEDDING_A1111_PT ? "string_to_param." : "",
           e->key);
    printf("vectors:       %d%s\n", e->num_vectors,
           e->one_dim ? " (stored as one [dim] vector)" : "");
    printf("width:         %d%s\n", e->dim, family(e->dim));
    printf("dtype:         %s\n", dtype_display_name(e->dtype));
    printf("vector norms: ");
    for (int v = 0; v < e->num_vectors && v < 16; v++) {
        double s = 0;
        for (int i = 0; i < e->dim; i++) {
            double x = e->data[(size_t)v * (size_t)e->dim + (size_t)i];
            s += x * x;
        }
        printf(" %.4g%s", sqrt(s), s == 0 ? " (all zeros: untrained)" : "");
    }
    printf("%s\n", e->num_vectors > 16 ? " ..." : "");
    if (e->format == EMBEDDING_A1111_PT) {
        if (e->has_step)
            printf("step:          %lld\n", (long long)e->step);
        else
            printf("step:          none\n");
        printf("name:          %s\n", e->stored_name ? e->stored_name : "none");
        printf("sd_checkpoint: %s%s%s%s\n", e->sd_checkpoint ? e->sd_checkpoint : "none",
               e->sd_checkpoint_name ? " (" : "",
               e->sd_checkpoint_name ? e->sd_checkpoint_name : "",
               e->sd_checkpoint_name ? ")" : "");
    }
    for (size_t i = 0; i < e->meta_count; i++)
        printf("%-14s %s = %.200s\n", i == 0 ? "metadata:" : "", e->meta[i].key, e->meta[i].value);
}

bool inspect_embedding(const char *path, Error *err, int *exit_code) {
    struct stat st;
    err->message[0] = '\0';
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > EMBEDDING_MAX_FILE)
        return false;
    Embedding e;
    if (embedding_load(path, &e, err) != 0)
        return false;
    print_embedding(path, &e);
    embedding_free(&e);
    *exit_code = 0;
    return true;
}
