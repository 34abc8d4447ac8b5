/* Writing torch zip checkpoints the way torch.save does (its miniz writer): every record
 * STORED, its data 64-byte aligned by an "FB" padding extra field, sizes in a data
 * descriptor after non-empty records, a zip64 end record always. Same bytes as torch.save
 * for the same pickle, with `.data/serialization_id` as forty '0's. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/file_util.h"
#include "formats/torch_file.h"

#define ALIGNMENT 64
#define U32_LIMIT 0xFFFFFFFFull

typedef struct ZipEntry {
    char *name;
    uint32_t crc;
    uint64_t size, offset;
} ZipEntry;

typedef struct ZipOut {
    FILE *fp;
    uint64_t pos;
    ZipEntry *entries;
    size_t count;
    bool failed;
} ZipOut;

static void out_bytes(ZipOut *z, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, z->fp) != n)
        z->failed = true;
    z->pos += n;
}

static void out_le(ZipOut *z, uint64_t v, int n) {
    unsigned char b[8];
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    out_bytes(z, b, (size_t)n);
}

static int add_record(ZipOut *z, const char *name, const void *data, uint64_t size) {
    ZipEntry *grown = realloc(z->entries, (z->count + 1) * sizeof *grown);
    if (!grown)
        return -1;
    z->entries = grown;
    ZipEntry *e = &z->entries[z->count];
    if ((e->name = strdup(name)) == NULL)
        return -1;
    z->count++;
    e->offset = z->pos;
    e->size = size;
    uLong crc = crc32(0L, Z_NULL, 0);
    const unsigned char *p = data;
    for (uint64_t done = 0; done < size;) { /* zlib's crc32 takes 32-bit lengths */
        uInt chunk = size - done > (1u << 30) ? (1u << 30) : (uInt)(size - done);
        crc = crc32(crc, p + done, chunk);
        done += chunk;
    }
    e->crc = (uint32_t)crc;
    size_t name_len = strlen(name);
    bool large = e->offset >= U32_LIMIT || size >= U32_LIMIT;
    /* zip64 local extra (sizes live in the descriptor) for large records */
    size_t zip64_extra = large ? 20 : 0;
    uint64_t unpadded = e->offset + 30 + name_len + zip64_extra + 4;
    size_t pad = (size_t)((ALIGNMENT - unpadded % ALIGNMENT) % ALIGNMENT);
    out_le(z, 0x04034b50, 4);
    out_le(z, large ? 45 : 0, 2);         /* version needed */
    out_le(z, size ? 0x0808 : 0x0800, 2); /* UTF-8 names, data descriptor when not empty */
    out_le(z, 0, 2);                      /* STORED */
    out_le(z, 0, 4);                      /* time, date */
    out_le(z, 0, 4);                      /* crc (in the descriptor) */
    out_le(z, 0, 8);                      /* sizes (in the descriptor) */
    out_le(z, name_len, 2);
    out_le(z, zip64_extra + 4 + pad, 2);
    out_bytes(z, name, name_len);
    if (large) {
        out_le(z, 0x0001, 2);
        out_le(z, 16, 2);
        out_le(z, 0, 8);
        out_le(z, 0, 8);
    }
    out_bytes(z, "FB", 2);
    out_le(z, pad, 2);
    for (size_t i = 0; i < pad; i++)
        out_bytes(z, "Z", 1);
    out_bytes(z, data, (size_t)size);
    if (size) {
        out_le(z, 0x08074b50, 4);
        out_le(z, e->crc, 4);
        out_le(z, size, large ? 8 : 4);
        out_le(z, size, large ? 8 : 4);
    }
    return 0;
}

static void finish_zip(ZipOut *z) {
    uint64_t cd_start = z->pos;
    for (size_t i = 0; i < z->count; i++) {
        const ZipEntry *e = &z->entries[i];
        size_t name_len = strlen(e->name);
        bool big_size = e->size >= U32_LIMIT, big_off = e->offset >= U32_LIMIT;
        size_t extra = (big_size ? 16 : 0) + (big_off ? 8 : 0);
        out_le(z, 0x02014b50, 4);
        out_le(z, 0, 2); /* made by */
        out_le(z, extra ? 45 : 0, 2);
        out_le(z, e->size ? 0x0808 : 0x0800, 2);
        out_le(z, 0, 2);
        out_le(z, 0, 4);
        out_le(z, e->crc, 4);
        out_le(z, big_size ? U32_LIMIT : e->size, 4);
        out_le(z, big_size ? U32_LIMIT : e->size, 4);
        out_le(z, name_len, 2);
        out_le(z, extra ? extra + 4 : 0, 2);
        out_le(z, 0, 2); /* comment */
        out_le(z, 0, 2); /* disk */
        out_le(z, 0, 2); /* internal attributes */
        out_le(z, 0, 4); /* external attributes */
        out_le(z, big_off ? U32_LIMIT : e->offset, 4);
        out_bytes(z, e->name, name_len);
        if (extra) {
            out_le(z, 0x0001, 2);
            out_le(z, extra, 2);
            if (big_size) {
                out_le(z, e->size, 8);
                out_le(z, e->size, 8);
            }
            if (big_off)
                out_le(z, e->offset, 8);
        }
    }
    uint64_t cd_size = z->pos - cd_start, eocd64 = z->pos;
    out_le(z, 0x06064b50, 4);
    out_le(z, 44, 8);
    out_le(z, 0x031e, 2);
    out_le(z, 0x002d, 2);
    out_le(z, 0, 4);
    out_le(z, 0, 4);
    out_le(z, z->count, 8);
    out_le(z, z->count, 8);
    out_le(z, cd_size, 8);
    out_le(z, cd_start, 8);
    out_le(z, 0x07064b50, 4);
    out_le(z, 0, 4);
    out_le(z, eocd64, 8);
    out_le(z, 1, 4);
    out_le(z, 0x06054b50, 4);
    out_le(z, 0, 4);
    out_le(z, z->count < 0xFFFF ? z->count : 0xFFFF, 2);
    out_le(z, z->count < 0xFFFF ? z->count : 0xFFFF, 2);
    out_le(z, cd_size < U32_LIMIT ? cd_size : U32_LIMIT, 4);
    out_le(z, cd_start < U32_LIMIT ? cd_start : U32_LIMIT, 4);
    out_le(z, 0, 2);
}

static int add_named(ZipOut *z, const char *prefix, const char *suffix, const void *data,
                     uint64_t size) {
    if (z->failed)
        return -1;
    char name[400];
    snprintf(name, sizeof name, "%s/%s", prefix, suffix);
    return add_record(z, name, data, size);
}

/* torch names the archive folder after the file: "dir/emb.pt" -> "emb". */
static void archive_name(const char *path, char *out, size_t size) {
    const char *base = path_basename(path);
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n == 0)
        snprintf(out, size, "archive");
    else
        snprintf(out, size, "%.*s", (int)(n < size - 1 ? n : size - 1), base);
}

static int save_zip(const char *path, const PickleValue *root, const TensorSet *tensors,
                    bool minimal, Error *err) {
    unsigned char *pkl = NULL;
    size_t pkl_size = 0, storage_count = 0;
    PickleWrittenStorage *storages = NULL;
    if (pickle_write(root, tensors, &pkl, &pkl_size, &storages, &storage_count, err) != 0)
        return error_prefix(err, "%s: ", path);
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0) {
        free(pkl);
        free(storages);
        return -1;
    }
    char prefix[256];
    archive_name(path, prefix, sizeof prefix);
    ZipOut z = {af.fp, 0, NULL, 0, false};
    int rc = 0;
    rc |= add_named(&z, prefix, "data.pkl", pkl, pkl_size);
    if (!minimal) {
        rc |= add_named(&z, prefix, ".format_version", "1", 1);
        rc |= add_named(&z, prefix, ".storage_alignment", "64", 2);
        rc |= add_named(&z, prefix, "byteorder", "little", 6);
    }
    for (size_t i = 0; rc == 0 && i < storage_count; i++) {
        char key[40];
        snprintf(key, sizeof key, "data/%zu", i);
        rc |= add_named(&z, prefix, key, storages[i].tensor->data, storages[i].tensor->nbytes);
    }
    rc |= add_named(&z, prefix, "version", "3\n", 2);
    if (!minimal)
        rc |= add_named(&z, prefix, ".data/serialization_id",
                        "0000000000000000000000000000000000000000", 40);
    if (rc == 0)
        finish_zip(&z);
    for (size_t i = 0; i < z.count; i++)
        free(z.entries[i].name);
    free(z.entries);
    free(pkl);
    free(storages);
    if (rc != 0 || z.failed) {
        atomic_file_abort(&af);
        return error_set(err, "%s: cannot write the file (%s)", path,
                         rc ? "out of memory" : "disk full or I/O error");
    }
    return atomic_file_commit(&af, err);
}

int torch_file_save(const char *path, const PickleValue *root, const TensorSet *tensors,
                    Error *err) {
    return save_zip(path, root, tensors, false, err);
}

int torch_file_save_minimal(const char *path, const PickleValue *root, const TensorSet *tensors,
                            Error *err) {
    return save_zip(path, root, tensors, true, err);
}
