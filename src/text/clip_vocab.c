/* Inflates the gzip'd CLIP merges file that CMake turned into clip_vocab_gz_data[]. */
#include "text/clip_vocab.h"

#include <stdlib.h>
#include <zlib.h>

extern const unsigned char clip_vocab_gz_data[];
extern const size_t clip_vocab_gz_size;

int clip_vocab_merges_text(char **text, size_t *size, Error *err) {
    size_t cap = 2u << 20, len = 0; /* the text is about 1.7 MB */
    char *buf = malloc(cap + 1);
    if (!buf)
        return error_set(err, "out of memory inflating the built-in CLIP merges");
    z_stream zs = {0};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return error_set(err, "built-in CLIP merges: zlib initialisation failed");
    }
    zs.next_in = (Bytef *)clip_vocab_gz_data;
    zs.avail_in = (uInt)clip_vocab_gz_size;
    int zrc = Z_OK;
    while (zrc == Z_OK) {
        if (len == cap) {
            char *grown = realloc(buf, cap * 2 + 1);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        zs.next_out = (Bytef *)buf + len;
        zs.avail_out = (uInt)(cap - len);
        zrc = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
    }
    inflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return error_set(err, "built-in CLIP merges: inflating failed (zlib %d); rebuild sdti",
                         zrc);
    }
    buf[len] = 0;
    *text = buf;
    *size = len;
    return 0;
}
