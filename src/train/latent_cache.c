/* kohya's latent .npz files (see latent_cache.h): a zip of NumPy .npy records, format 1.0
 * (magic, version, little-endian header length, a Python-dict header padded to 64 bytes). */
#define _POSIX_C_SOURCE 200809L
#include "train/latent_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "base/file_util.h"

#define NPY_MAX_DIMS    4
#define NPY_MAX_RECORDS 64

typedef struct NpyArray {
    char name[64]; /* record name without ".npy" */
    char descr[8]; /* "<f4", "<i8", ... */
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    unsigned char *data; /* raw little-endian elements */
    size_t nbytes;
    unsigned char *raw; /* the whole .npy record (kept to re-save unknown arrays) */
    size_t raw_size;
} NpyArray;

typedef struct Npz {
    NpyArray items[NPY_MAX_RECORDS];
    int count;
} Npz;

static void npz_free(Npz *z) {
    for (int i = 0; i < z->count; i++)
        free(z->items[i].raw);
    z->count = 0;
}

static const NpyArray *npz_find(const Npz *z, const char *name) {
    for (int i = 0; i < z->count; i++)
        if (!strcmp(z->items[i].name, name))
            return &z->items[i];
    return NULL;
}

static size_t descr_size(const char *d) {
    if (!strcmp(d, "<f4") || !strcmp(d, "<i4"))
        return 4;
    if (!strcmp(d, "<f8") || !strcmp(d, "<i8"))
        return 8;
    if (!strcmp(d, "<f2"))
        return 2;
    return 0;
}

/* Parses one .npy record (format 1.x / 2.x, C order, little-endian numeric). */
static int npy_parse(const char *file, NpyArray *a, Error *err) {
    const unsigned char *p = a->raw;
    size_t n = a->raw_size;
    if (n < 10 || memcmp(p, "\x93NUMPY", 6))
        return error_set(err, "%s: array '%s' is not a .npy record", file, a->name);
    size_t hl, off;
    if (p[6] == 1) {
        hl = (size_t)p[8] | (size_t)p[9] << 8;
        off = 10;
    } else if (n >= 12 && (p[6] == 2 || p[6] == 3)) {
        hl = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
        off = 12;
    } else {
        return error_set(err, "%s: array '%s': unknown .npy version %d", file, a->name, p[6]);
    }
    if (hl > n - off)
        return error_set(err, "%s: array '%s': header runs past the record", file, a->name);
    char header[1024];
    if (hl >= sizeof header)
        return error_set(err, "%s: array '%s': header too long", file, a->name);
    memcpy(header, p + off, hl);
    header[hl] = '\0';
    const char *d = strstr(header, "'descr':");
    const char *f = strstr(header, "'fortran_order':");
    const char *s = strstr(header, "'shape':");
    if (!d || !f || !s)
        return error_set(err, "%s: array '%s': header lacks descr/fortran_order/shape", file,
                         a->name);
    d = strchr(d + 8, '\'');
    if (!d || sscanf(d, "'%7[^']'", a->descr) != 1)
        return error_set(err, "%s: array '%s': unreadable descr", file, a->name);
    if (strncmp(f + 16 + strspn(f + 16, " "), "False", 5))
        return error_set(err, "%s: array '%s': Fortran order is not supported", file, a->name);
    s = strchr(s, '(');
    if (!s)
        return error_set(err, "%s: array '%s': unreadable shape", file, a->name);
    s++;
    a->ndim = 0;
    size_t count = 1;
    for (;;) {
        s += strspn(s, " ,");
        if (*s == ')')
            break;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || a->ndim == NPY_MAX_DIMS)
            return error_set(err, "%s: array '%s': unreadable shape", file, a->name);
        a->shape[a->ndim++] = v;
        if (v > 0 && count > SIZE_MAX / (size_t)v)
            return error_set(err, "%s: array '%s': shape too large", file, a->name);
        count *= (size_t)v;
        s = end;
    }
    size_t es = descr_size(a->descr);
    if (!es)
        return error_set(err, "%s: array '%s': element type %s is not supported", file, a->name,
                         a->descr);
    if (count > SIZE_MAX / es || count * es != n - off - hl)
        return error_set(err, "%s: array '%s': %zu bytes of data for shape of %zu elements", file,
                         a->name, n - off - hl, count);
    a->data = a->raw + off + hl;
    a->nbytes = count * es;
    return 0;
}

static int npz_read(const char *path, Npz *z, Error *err) {
    memset(z, 0, sizeof *z);
    int zerr = 0;
    zip_t *zip = zip_open(path, ZIP_RDONLY, &zerr);
    if (!zip) {
        zip_error_t e;
        zip_error_init_with_code(&e, zerr);
        int rc =
            error_set(err, "%s: not a readable .npz (zip) file: %s", path, zip_error_strerror(&e));
        zip_error_fini(&e);
        return rc;
    }
    zip_int64_t n = zip_get_num_entries(zip, 0);
    int rc = 0;
    for (zip_int64_t i = 0; i < n && rc == 0; i++) {
        const char *name = zip_get_name(zip, (zip_uint64_t)i, 0);
        size_t len = name ? strlen(name) : 0;
        if (len < 5 || strcmp(name + len - 4, ".npy"))
            continue;
        if (z->count == NPY_MAX_RECORDS || len - 4 >= sizeof z->items[0].name) {
            rc = error_set(err, "%s: too many or too long array names", path);
            break;
        }
        NpyArray *a = &z->items[z->count];
        memset(a, 0, sizeof *a);
        memcpy(a->name, name, len - 4);
        zip_stat_t st;
        zip_stat_init(&st);
        if (zip_stat_index(zip, (zip_uint64_t)i, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) ||
            st.size > ((zip_uint64_t)1 << 34)) {
            rc = error_set(err, "%s: array '%s': cannot read its size", path, a->name);
            break;
        }
        a->raw = malloc(st.size ? st.size : 1);
        a->raw_size = st.size;
        zip_file_t *f = a->raw ? zip_fopen_index(zip, (zip_uint64_t)i, 0) : NULL;
        zip_int64_t got = f ? zip_fread(f, a->raw, st.size) : -1;
        if (f)
            zip_fclose(f);
        z->count++;
        if (got < 0 || (zip_uint64_t)got != st.size) {
            rc = error_set(err, "%s: array '%s': read failed (%s)", path, a->name,
                           zip_strerror(zip));
            break;
        }
        rc = npy_parse(path, a, err);
    }
    zip_discard(zip);
    if (rc != 0)
        npz_free(z);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

char *latent_cache_path(const char *image_path, int w, int h) {
    const char *slash = strrchr(image_path, '/');
    const char *dot = strrchr(image_path, '.');
    size_t stem = dot && dot > (slash ? slash + 1 : image_path) ? (size_t)(dot - image_path)
                                                                : strlen(image_path);
    size_t n = stem + 32;
    char *old = malloc(n);
    if (!old)
        return NULL;
    snprintf(old, n, "%.*s.npz", (int)stem, image_path);
    if (file_exists(old))
        return old;
    snprintf(old, n, "%.*s_%04dx%04d_sd.npz", (int)stem, image_path, w, h);
    return old;
}

int latent_cache_is_valid(const char *path, int bucket_w, int bucket_h, bool flip_aug,
                          bool alpha_mask, bool *valid, Error *err) {
    *valid = false;
    if (!file_exists(path))
        return 0;
    Npz z;
    if (npz_read(path, &z, err) != 0)
        return -1;
    const NpyArray *lat = npz_find(&z, "latents"), *flip = npz_find(&z, "latents_flipped");
    const NpyArray *mask = npz_find(&z, "alpha_mask");
    bool ok = lat && npz_find(&z, "original_size") && npz_find(&z, "crop_ltrb");
    ok = ok && lat->ndim == 3 && lat->shape[1] == bucket_h / 8 && lat->shape[2] == bucket_w / 8;
    if (ok && flip_aug)
        ok = flip && flip->ndim == 3 && flip->shape[1] == bucket_h / 8 &&
             flip->shape[2] == bucket_w / 8;
    if (ok && alpha_mask)
        ok = mask && mask->ndim == 2 && mask->shape[0] == bucket_h && mask->shape[1] == bucket_w;
    else if (ok)
        ok = mask == NULL;
    *valid = ok;
    npz_free(&z);
    return 0;
}

bool latent_cache_entry_fits(const LatentCacheEntry *e, int channels, int latent_h, int latent_w,
                             bool flip_aug, bool alpha_mask, int bucket_w, int bucket_h) {
    if (!e->latents || e->channels != channels || e->height != latent_h || e->width != latent_w)
        return false;
    if (flip_aug && !e->latents_flipped)
        return false;
    if (alpha_mask)
        return e->alpha_mask && e->mask_height == bucket_h && e->mask_width == bucket_w;
    return e->alpha_mask == NULL;
}

static int copy_floats(const char *path, const NpyArray *a, float **out, Error *err) {
    size_t n = a->nbytes / descr_size(a->descr);
    *out = malloc(sizeof(float) * (n ? n : 1));
    if (!*out)
        return error_set(err, "out of memory");
    if (!strcmp(a->descr, "<f4")) {
        memcpy(*out, a->data, n * 4);
    } else if (!strcmp(a->descr, "<f8")) {
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, a->data + i * 8, 8);
            (*out)[i] = (float)d;
        }
    } else {
        free(*out);
        *out = NULL;
        return error_set(err, "%s: array '%s' is %s, expected float32", path, a->name, a->descr);
    }
    return 0;
}

static int read_numbers(const char *path, const NpyArray *a, int count, double *out, Error *err) {
    if (!a || a->ndim != 1 || a->shape[0] != count)
        return error_set(err, "%s: array '%s' missing or not of %d values", path, a ? a->name : "?",
                         count);
    for (int i = 0; i < count; i++) {
        if (!strcmp(a->descr, "<i8")) {
            int64_t v;
            memcpy(&v, a->data + i * 8, 8);
            out[i] = (double)v;
        } else if (!strcmp(a->descr, "<f8")) {
            memcpy(&out[i], a->data + i * 8, 8);
        } else if (!strcmp(a->descr, "<i4")) {
            int32_t v;
            memcpy(&v, a->data + i * 4, 4);
            out[i] = v;
        } else {
            return error_set(err, "%s: array '%s' has element type %s", path, a->name, a->descr);
        }
    }
    return 0;
}

int latent_cache_read(const char *path, LatentCacheEntry *out, Error *err) {
    memset(out, 0, sizeof *out);
    Npz z;
    if (npz_read(path, &z, err) != 0)
        return -1;
    int rc = 0;
    const NpyArray *lat = npz_find(&z, "latents");
    if (!lat || lat->ndim != 3) {
        rc =
            error_set(err, "%s: no 3-D 'latents' array (an old or foreign cache: delete it)", path);
        goto done;
    }
    out->channels = (int)lat->shape[0];
    out->height = (int)lat->shape[1];
    out->width = (int)lat->shape[2];
    if ((rc = copy_floats(path, lat, &out->latents, err)) != 0)
        goto done;
    const NpyArray *flip = npz_find(&z, "latents_flipped");
    if (flip) {
        if (flip->ndim != 3 || memcmp(flip->shape, lat->shape, sizeof(int64_t) * 3)) {
            rc = error_set(err, "%s: 'latents_flipped' has another shape than 'latents'", path);
            goto done;
        }
        if ((rc = copy_floats(path, flip, &out->latents_flipped, err)) != 0)
            goto done;
    }
    double size[2];
    if ((rc = read_numbers(path, npz_find(&z, "original_size"), 2, size, err)) != 0 ||
        (rc = read_numbers(path, npz_find(&z, "crop_ltrb"), 4, out->crop_ltrb, err)) != 0)
        goto done;
    out->original_size[0] = (int64_t)size[0];
    out->original_size[1] = (int64_t)size[1];
    const NpyArray *mask = npz_find(&z, "alpha_mask");
    if (mask) {
        if (mask->ndim != 2) {
            rc = error_set(err, "%s: 'alpha_mask' is not 2-D", path);
            goto done;
        }
        out->mask_height = (int)mask->shape[0];
        out->mask_width = (int)mask->shape[1];
        rc = copy_floats(path, mask, &out->alpha_mask, err);
    }
done:
    npz_free(&z);
    if (rc != 0)
        latent_cache_entry_free(out);
    return rc;
}

void latent_cache_entry_free(LatentCacheEntry *e) {
    free(e->latents);
    free(e->latents_flipped);
    free(e->alpha_mask);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------------------------------------
 * Writing */

/* A .npy record as numpy 1.x/2.x writes it: version 1.0, header padded with spaces to a
 * multiple of 64 bytes including the 10-byte preamble, ending in '\n'. */
static unsigned char *npy_make(const char *descr, int ndim, const int64_t *shape, const void *data,
                               size_t nbytes, size_t *size) {
    char header[256], dims[128] = "";
    size_t dl = 0;
    for (int i = 0; i < ndim; i++)
        dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%lld,%s", (long long)shape[i],
                               i + 1 < ndim ? " " : "");
    if (ndim > 1)
        dims[dl - 1] = '\0'; /* (4, 8, 8) but (2,) */
    int hl = snprintf(header, sizeof header,
                      "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    size_t total = 10 + (size_t)hl + 1;
    size_t padded = (total + 63) / 64 * 64;
    unsigned char *rec = malloc(padded + nbytes);
    if (!rec)
        return NULL;
    memcpy(rec, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    rec[8] = (unsigned char)(hlen & 0xff);
    rec[9] = (unsigned char)(hlen >> 8);
    memcpy(rec + 10, header, (size_t)hl);
    memset(rec + 10 + hl, ' ', padded - 10 - (size_t)hl - 1);
    rec[padded - 1] = '\n';
    if (nbytes)
        memcpy(rec + padded, data, nbytes);
    *size = padded + nbytes;
    return rec;
}

typedef struct Record {
    const char *name;
    unsigned char *data;
    size_t size;
    bool owned;
} Record;

int latent_cache_write(const char *path, const LatentCacheEntry *e, Error *err) {
    Record recs[NPY_MAX_RECORDS + 5];
    int nrec = 0, rc = 0;
    int64_t lshape[3] = {e->channels, e->height, e->width};
    size_t lbytes = sizeof(float) * (size_t)e->channels * e->height * e->width;
    int64_t two = 2, four = 4;
    int64_t mshape[2] = {e->mask_height, e->mask_width};
    struct {
        const char *name, *descr;
        int ndim;
        const int64_t *shape;
        const void *data;
        size_t nbytes;
    } mine[] = {
        {"latents", "<f4", 3, lshape, e->latents, lbytes},
        {"original_size", "<i8", 1, &two, e->original_size, 16},
        {"crop_ltrb", "<f8", 1, &four, e->crop_ltrb, 32},
        {"latents_flipped", "<f4", 3, lshape, e->latents_flipped, lbytes},
        {"alpha_mask", "<f4", 2, mshape, e->alpha_mask,
         sizeof(float) * (size_t)e->mask_height * e->mask_width},
    };
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++) {
        if (!mine[i].data)
            continue;
        Record *r = &recs[nrec++];
        r->name = mine[i].name;
        r->owned = true;
        r->data = npy_make(mine[i].descr, mine[i].ndim, mine[i].shape, mine[i].data, mine[i].nbytes,
                           &r->size);
        if (!r->data) {
            nrec--;
            rc = error_set(err, "out of memory");
            goto done;
        }
    }
    /* Keep the other arrays of an existing file, as kohya does. */
    Npz old = {0};
    if (file_exists(path) && npz_read(path, &old, err) == 0) {
        for (int i = 0; i < old.count; i++) {
            bool replaced = false;
            for (int k = 0; k < nrec; k++)
                replaced |= !strcmp(recs[k].name, old.items[i].name);
            if (!replaced)
                recs[nrec++] =
                    (Record){old.items[i].name, old.items[i].raw, old.items[i].raw_size, false};
        }
    }
    int zerr = 0;
    zip_t *zip = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!zip) {
        rc = error_set(err, "%s: cannot create the latent cache file", path);
        npz_free(&old);
        goto done;
    }
    for (int k = 0; k < nrec && rc == 0; k++) {
        char name[80];
        snprintf(name, sizeof name, "%s.npy", recs[k].name);
        zip_source_t *src = zip_source_buffer(zip, recs[k].data, recs[k].size, 0);
        zip_int64_t idx = src ? zip_file_add(zip, name, src, ZIP_FL_ENC_UTF_8) : -1;
        if (idx < 0) {
            if (src)
                zip_source_free(src);
            rc = error_set(err, "%s: adding %s: %s", path, name, zip_strerror(zip));
        } else {
            zip_set_file_compression(zip, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
        }
    }
    /* zip_close writes a temporary file beside `path` and renames it over the old one. */
    if (rc == 0 && zip_close(zip) != 0) {
        rc = error_set(err, "%s: writing the latent cache failed: %s", path, zip_strerror(zip));
        zip_discard(zip);
    } else if (rc != 0) {
        zip_discard(zip);
    }
    npz_free(&old);
done:
    for (int k = 0; k < nrec; k++)
        if (recs[k].owned)
            free(recs[k].data);
    return rc;
}
