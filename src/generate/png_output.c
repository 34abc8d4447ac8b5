/* See png_output.h. */
#include "generate/png_output.h"

#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"

/* UTF-8 -> Latin-1 when every code point is below 256; NULL otherwise (or out of memory). */
static char *latin1_of(const char *utf8) {
    size_t n = strlen(utf8);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)utf8;
    while (*s) {
        if (*s < 0x80) {
            *o++ = (char)*s++;
        } else if ((s[0] == 0xC2 || s[0] == 0xC3) && (s[1] & 0xC0) == 0x80) {
            *o++ = (char)(((s[0] & 0x1F) << 6) | (s[1] & 0x3F));
            s += 2;
        } else {
            free(out);
            return NULL;
        }
    }
    *o = '\0';
    return out;
}

typedef struct WriteState {
    AtomicFile af;
    png_structp png;
    png_infop info;
    png_textp texts;
    char **owned;
    int n_owned;
    png_bytep *rows;
} WriteState;

static int write_png(WriteState *st, const uint8_t *rgb, int width, int height,
                     const PngTextEntry *text, int n_text, Error *err) {
    st->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    st->info = st->png ? png_create_info_struct(st->png) : NULL;
    st->texts = calloc((size_t)(n_text ? n_text : 1), sizeof *st->texts);
    st->owned = calloc((size_t)(n_text ? n_text : 1), sizeof *st->owned);
    st->rows = malloc((size_t)height * sizeof *st->rows);
    if (!st->png || !st->info || !st->texts || !st->owned || !st->rows)
        return error_set(err, "%s: out of memory", st->af.final_path);
    if (setjmp(png_jmpbuf(st->png)))
        return error_set(err, "%s: libpng failed to write the image", st->af.final_path);
    png_init_io(st->png, st->af.fp);
    png_set_IHDR(st->png, st->info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int i = 0; i < n_text; i++) {
        png_text *t = &st->texts[i];
        t->key = (png_charp)text[i].key;
        char *latin1 = latin1_of(text[i].value);
        if (latin1) {
            st->owned[st->n_owned++] = latin1;
            t->compression = PNG_TEXT_COMPRESSION_NONE;
            t->text = latin1;
            t->text_length = strlen(latin1);
        } else {
            t->compression = PNG_ITXT_COMPRESSION_NONE;
            t->text = (png_charp)text[i].value;
            t->itxt_length = strlen(text[i].value);
            t->lang = (png_charp) "";
            t->lang_key = (png_charp) "";
        }
    }
    if (n_text > 0)
        png_set_text(st->png, st->info, st->texts, n_text);
    for (int y = 0; y < height; y++)
        st->rows[y] = (png_bytep)(rgb + (size_t)y * (size_t)width * 3);
    png_write_info(st->png, st->info);
    png_write_image(st->png, st->rows);
    png_write_end(st->png, st->info);
    return 0;
}

int png_output_write(const char *path, const uint8_t *rgb, int width, int height,
                     const PngTextEntry *text, int n_text, Error *err) {
    WriteState st;
    memset(&st, 0, sizeof st);
    if (atomic_file_open(&st.af, path, err) != 0)
        return -1;
    int rc = write_png(&st, rgb, width, height, text, n_text, err);
    png_destroy_write_struct(&st.png, &st.info);
    for (int i = 0; i < st.n_owned; i++)
        free(st.owned[i]);
    free(st.owned);
    free(st.texts);
    free(st.rows);
    if (rc != 0) {
        atomic_file_abort(&st.af);
        return -1;
    }
    return atomic_file_commit(&st.af, err);
}
