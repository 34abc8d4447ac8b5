// labels: unit
/* Embedding files against files written by kohya's, A1111's and diffusers' own saving code
 * (tools/reference/make_embedding_fixtures.py): every fixture reads back with the layout, key,
 * shape, dtype, A1111 fields and metadata the Python libraries read (expected.json) and with
 * exactly their values (expected.safetensors: max|ours - ref| / max|ref| must be 0, the
 * values are copies, widened from fp16/bf16); our writers give the tools' bytes for the same
 * embedding; every layout round-trips through every writer; kohya's modelspec metadata
 * builder gives kohya's keys and values; bad inputs (truncated at every length, wrong keys,
 * wrong width, NaN/Inf, zero vectors, SDXL) fail with an error naming the file and the
 * reason; `sdti convert` / `sdti inspect` work end to end. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "formats/pickle.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"
#include "test_util.h"
#include "text/embedding_file.h"

#define DIR "embeddings/"

static const char *tmp_dir;
static cJSON *expected;
static TensorSet expected_values;

static const char *fixture(const char *rel) {
    static char path[1024];
    snprintf(path, sizeof path, "%s", test_fixture(DIR));
    strncat(path, rel, sizeof path - strlen(path) - 1);
    return path;
}

static char *tmp_path(const char *name) {
    return path_join(tmp_dir, name);
}

static char *read_all(const char *path, size_t *size) {
    char *data = NULL;
    Error err = {{0}};
    if (file_read_all(path, &data, size, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return NULL;
    }
    return data;
}

static bool same_bytes(const char *a, const char *b) {
    size_t na, nb;
    char *da = read_all(a, &na), *db = read_all(b, &nb);
    bool same = da && db && na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

/* The records of a small STORED zip (torch's): names and data, from the central directory. */
typedef struct ZipRecords {
    int count;
    char names[16][128];
    const unsigned char *data[16];
    uint32_t size[16];
} ZipRecords;

static uint32_t le(const unsigned char *p, int n) {
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool zip_records(const unsigned char *z, size_t size, ZipRecords *r) {
    memset(r, 0, sizeof *r);
    if (size < 22 || le(z + size - 22, 4) != 0x06054b50)
        return false;
    uint32_t count = le(z + size - 22 + 10, 2), cd = le(z + size - 22 + 16, 4);
    for (uint32_t i = 0; i < count && i < 16; i++) {
        if (cd + 46 > size || le(z + cd, 4) != 0x02014b50)
            return false;
        uint32_t n = le(z + cd + 28, 2), m = le(z + cd + 30, 2), k = le(z + cd + 32, 2);
        uint32_t len = le(z + cd + 20, 4), off = le(z + cd + 42, 4);
        snprintf(r->names[i], sizeof r->names[i], "%.*s", (int)n, (const char *)z + cd + 46);
        uint32_t ln = le(z + off + 26, 2), lm = le(z + off + 28, 2);
        r->data[i] = z + off + 30 + ln + lm;
        r->size[i] = len;
        if (off + 30 + ln + lm + len > size)
            return false;
        r->count++;
        cd += 46 + n + m + k;
    }
    return true;
}

static const ZipRecords *find_record(const ZipRecords *r, const char *name, int *at) {
    for (int i = 0; i < r->count; i++)
        if (strcmp(r->names[i], name) == 0) {
            *at = i;
            return r;
        }
    return NULL;
}

/* Our .pt for A1111: exactly the records torch <= 2.0 wrote, each byte-identical to the
 * record of that name in the file torch 2.15 wrote (same pickle, same storage bytes). */
static bool same_minimal_records(const char *ours, const char *tool) {
    size_t na, nb;
    char *a = read_all(ours, &na), *b = read_all(tool, &nb);
    ZipRecords ra, rb;
    bool ok = a && b && zip_records((unsigned char *)a, na, &ra) &&
              zip_records((unsigned char *)b, nb, &rb) && ra.count == 3;
    const char *suffixes[3] = {"/data.pkl", "/data/0", "/version"};
    for (int i = 0; ok && i < 3; i++) {
        int ia, ib;
        const char *sl = strchr(ra.names[i], '/');
        ok = sl && strcmp(sl, suffixes[i]) == 0 && find_record(&rb, ra.names[i], &ib) &&
             find_record(&ra, ra.names[i], &ia) && ra.size[ia] == rb.size[ib] &&
             memcmp(ra.data[ia], rb.data[ib], ra.size[ia]) == 0;
        CHECKF(ok, "%s: record %s differs from %s's", ours, ra.names[i], tool);
    }
    free(a);
    free(b);
    return ok;
}

/* max|a - b| / max|b| over n values (0 when both are all zero). */
static double rel_error(const float *a, const float *b, size_t n) {
    double diff = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        ref = fmax(ref, fabs((double)b[i]));
    }
    return ref > 0 ? diff / ref : diff;
}

/* The vectors Python read from fixture `rel`. */
static const NamedTensor *reference(const char *rel) {
    return tensor_set_find(&expected_values, rel);
}

static void check_values(const char *what, const Embedding *e, const char *rel) {
    const NamedTensor *ref = reference(rel);
    CHECKF(ref != NULL, "%s: no reference values", rel);
    if (!ref)
        return;
    CHECKF(ref->shape[0] == e->num_vectors && ref->shape[1] == e->dim,
           "%s: %d x %d, reference %lld x %lld", what, e->num_vectors, e->dim,
           (long long)ref->shape[0], (long long)ref->shape[1]);
    if (ref->shape[0] != e->num_vectors || ref->shape[1] != e->dim)
        return;
    double rel_err = rel_error(e->data, ref->data, (size_t)e->num_vectors * (size_t)e->dim);
    CHECKF(rel_err == 0, "%s: values differ from torch's, max rel error %g", what, rel_err);
}

typedef struct Case {
    const char *file;
    EmbeddingFormat format;
    bool zip;
} Case;

/* How sdti classifies each fixture (the layout its writer used). */
static const Case LOADABLE[] = {
    {"kohya-sd1.safetensors", EMBEDDING_KOHYA_SAFETENSORS, false},
    {"kohya-sd2-bf16.safetensors", EMBEDDING_KOHYA_SAFETENSORS, false},
    {"kohya-sd1-fp16.pt", EMBEDDING_KOHYA_PT, true},
    {"a1111-sd1.pt", EMBEDDING_A1111_PT, true},
    {"a1111-sd1-legacy.pt", EMBEDDING_A1111_PT, false},
    {"a1111-paramdict.pt", EMBEDDING_A1111_PT, true},
    {"a1111-zero.pt", EMBEDDING_A1111_PT, true},
    {"single-star.safetensors", EMBEDDING_DIFFUSERS_SAFETENSORS, false},
    {"diffusers/learned_embeds.safetensors", EMBEDDING_DIFFUSERS_SAFETENSORS, false},
    {"diffusers/learned_embeds.bin", EMBEDDING_DIFFUSERS_BIN, true},
    {"concept-768.bin", EMBEDDING_DIFFUSERS_BIN, true},
};
#define N_LOADABLE (sizeof LOADABLE / sizeof LOADABLE[0])

static bool json_str_eq(const cJSON *item, const char *s) {
    if (cJSON_IsNull(item) || !item)
        return s == NULL;
    return cJSON_IsString(item) && s && strcmp(item->valuestring, s) == 0;
}

static void test_fixtures_read(void) {
    for (size_t i = 0; i < N_LOADABLE; i++) {
        const Case *c = &LOADABLE[i];
        const cJSON *x = cJSON_GetObjectItem(expected, c->file);
        CHECKF(x != NULL, "%s missing from expected.json", c->file);
        Embedding e;
        Error err = {{0}};
        if (embedding_load(fixture(c->file), &e, &err) != 0) {
            CHECKF(false, "%s: %s", c->file, err.message);
            continue;
        }
        CHECKF(e.format == c->format, "%s: read as %s", c->file, embedding_format_name(e.format));
        if (c->format != EMBEDDING_KOHYA_SAFETENSORS &&
            c->format != EMBEDDING_DIFFUSERS_SAFETENSORS)
            CHECKF(e.torch_zip == c->zip, "%s: zip %d", c->file, e.torch_zip);
        const cJSON *keys = cJSON_GetObjectItem(x, "keys");
        CHECKF(cJSON_GetArraySize(keys) == 1 && json_str_eq(cJSON_GetArrayItem(keys, 0), e.key),
               "%s: key '%s'", c->file, e.key);
        const cJSON *shape = cJSON_GetObjectItem(x, "shape");
        int nd = cJSON_GetArraySize(shape);
        CHECKF(e.one_dim == (nd == 1), "%s: one_dim %d for %d dims", c->file, e.one_dim, nd);
        CHECKF(e.dim == cJSON_GetArrayItem(shape, nd - 1)->valueint, "%s: dim %d", c->file, e.dim);
        if (nd == 2)
            CHECKF(e.num_vectors == cJSON_GetArrayItem(shape, 0)->valueint, "%s: %d vectors",
                   c->file, e.num_vectors);
        CHECKF(strcmp(dtype_safetensors_name(e.dtype),
                      cJSON_GetObjectItem(x, "dtype")->valuestring) == 0,
               "%s: dtype %s", c->file, dtype_safetensors_name(e.dtype));
        /* A1111 fields (None -> absent) */
        if (cJSON_GetObjectItem(x, "step")) {
            const cJSON *step = cJSON_GetObjectItem(x, "step");
            CHECKF(cJSON_IsNull(step) ? !e.has_step
                                      : e.has_step && e.step == (int64_t)step->valuedouble,
                   "%s: step", c->file);
            CHECKF(json_str_eq(cJSON_GetObjectItem(x, "name"), e.stored_name), "%s: name", c->file);
            CHECKF(json_str_eq(cJSON_GetObjectItem(x, "sd_checkpoint"), e.sd_checkpoint),
                   "%s: sd_checkpoint", c->file);
            CHECKF(json_str_eq(cJSON_GetObjectItem(x, "sd_checkpoint_name"), e.sd_checkpoint_name),
                   "%s: sd_checkpoint_name", c->file);
        } else {
            CHECKF(!e.has_step && !e.stored_name && !e.sd_checkpoint, "%s: A1111 fields", c->file);
        }
        const cJSON *md = cJSON_GetObjectItem(x, "metadata");
        CHECKF((size_t)cJSON_GetArraySize(md) == e.meta_count, "%s: %zu metadata entries", c->file,
               e.meta_count);
        const cJSON *m;
        cJSON_ArrayForEach(m, md) {
            CHECKF(json_str_eq(m, embedding_get_meta(&e, m->string)), "%s: metadata %s", c->file,
                   m->string);
        }
        /* the name is the file stem */
        const char *base = path_basename(c->file);
        CHECKF(strncmp(e.name, base, strlen(e.name)) == 0 && base[strlen(e.name)] == '.',
               "%s: name '%s'", c->file, e.name);
        check_values(c->file, &e, c->file);
        embedding_free(&e);
    }
}

/* Our writers against the tools' own files: load, write back under the same file name (torch
 * names the archive after it), compare bytes; the .pt writers keep only the records A1111's
 * safe unpickler allows, each identical to the tool's. */
static void test_writers_match_tools(void) {
    struct {
        const char *file;
        int writer; /* 0 kohya st, 1 kohya pt, 2 a1111, 3 diffusers */
    } cases[] = {
        {"kohya-sd1.safetensors", 0}, {"kohya-sd2-bf16.safetensors", 0},
        {"kohya-sd1-fp16.pt", 1},     {"a1111-sd1.pt", 2},
        {"a1111-zero.pt", 2},         {"diffusers/learned_embeds.safetensors", 3},
        {"concept-768.bin", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Embedding e;
        Error err = {{0}};
        if (embedding_load(fixture(cases[i].file), &e, &err) != 0) {
            CHECKF(false, "%s", err.message);
            continue;
        }
        char *out = tmp_path(path_basename(cases[i].file));
        int rc = cases[i].writer == 0   ? embedding_save_kohya_safetensors(&e, out, e.dtype, &err)
                 : cases[i].writer == 1 ? embedding_save_kohya_pt(&e, out, e.dtype, &err)
                 : cases[i].writer == 2 ? embedding_save_a1111_pt(&e, out, e.dtype, &err)
                                        : embedding_save_diffusers(&e, out, e.key, e.dtype, &err);
        CHECKF(rc == 0, "%s: %s", cases[i].file, err.message);
        if (cases[i].writer == 1 || cases[i].writer == 2 || path_has_suffix(out, ".bin"))
            CHECKF(rc == 0 && same_minimal_records(out, fixture(cases[i].file)),
                   "%s: our records differ from the tool's", cases[i].file);
        else
            CHECKF(rc == 0 && same_bytes(out, fixture(cases[i].file)),
                   "%s: our writer's bytes differ from the tool's", cases[i].file);
        free(out);
        embedding_free(&e);
    }
}

/* Every loadable fixture through every writer and dtype, read back. */
static void test_round_trips(void) {
    const DType dtypes[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    const char *names[] = {"rt.safetensors", "rt.pt", "rt-a1111.pt", "rt-d.safetensors",
                           "rt-d.bin"};
    for (size_t i = 0; i < N_LOADABLE; i++) {
        Embedding src;
        Error err = {{0}};
        if (embedding_load(fixture(LOADABLE[i].file), &src, &err) != 0) {
            CHECKF(false, "%s", err.message);
            continue;
        }
        for (int w = 0; w < 5; w++) {
            for (size_t d = 0; d < 3; d++) {
                DType dt = dtypes[d];
                char *out = tmp_path(names[w]);
                int rc = w == 0   ? embedding_save_kohya_safetensors(&src, out, dt, &err)
                         : w == 1 ? embedding_save_kohya_pt(&src, out, dt, &err)
                         : w == 2 ? embedding_save_a1111_pt(&src, out, dt, &err)
                                  : embedding_save_diffusers(&src, out, "<tok>", dt, &err);
                CHECKF(rc == 0, "%s -> %s: %s", LOADABLE[i].file, names[w], err.message);
                Embedding back;
                if (rc != 0 || embedding_load(out, &back, &err) != 0) {
                    CHECKF(rc != 0, "%s -> %s: reading back: %s", LOADABLE[i].file, names[w],
                           err.message);
                    free(out);
                    continue;
                }
                CHECKF(
                    back.num_vectors == src.num_vectors && back.dim == src.dim && back.dtype == dt,
                    "%s -> %s (%s): %d x %d %s", LOADABLE[i].file, names[w], dtype_display_name(dt),
                    back.num_vectors, back.dim, dtype_display_name(back.dtype));
                /* values: exact when the stored dtype is kept or widened; otherwise what
                 * torch's rounding (round to nearest even) of the source gives */
                size_t n = (size_t)src.num_vectors * (size_t)src.dim;
                if (back.num_vectors == src.num_vectors && back.dim == src.dim) {
                    float *want = malloc(n * sizeof *want);
                    uint16_t *tmp = malloc(n * sizeof *tmp);
                    for (size_t k = 0; k < n; k++)
                        want[k] = dt == DTYPE_F16    ? f16_to_f32(f32_to_f16(src.data[k]))
                                  : dt == DTYPE_BF16 ? bf16_to_f32(f32_to_bf16(src.data[k]))
                                                     : src.data[k];
                    CHECKF(memcmp(want, back.data, n * sizeof *want) == 0,
                           "%s -> %s (%s): values differ", LOADABLE[i].file, names[w],
                           dtype_display_name(dt));
                    free(want);
                    free(tmp);
                }
                if (w == 2) { /* A1111 keeps step and checkpoint */
                    CHECK(back.has_step == src.has_step && back.step == src.step);
                    CHECK((back.sd_checkpoint == NULL) == (src.sd_checkpoint == NULL));
                    CHECK(back.stored_name && strcmp(back.stored_name, "rt-a1111") == 0);
                }
                if (w == 0)
                    CHECK(back.meta_count == src.meta_count);
                if (w >= 3)
                    CHECK(strcmp(back.key, "<tok>") == 0 && back.one_dim == src.one_dim);
                embedding_free(&back);
                free(out);
            }
        }
        embedding_free(&src);
    }
}

/* kohya's metadata builder against the metadata kohya's code gave the fixtures. */
static void test_kohya_metadata(void) {
    setenv("TZ", "UTC", 1);
    tzset();
    struct {
        const char *file;
        KohyaMetadataArgs args;
    } cases[] = {
        {"kohya-sd1.safetensors",
         {.title = "kohya-sd1",
          .resolution = "512",
          .timestamp = 1767225600,
          .clip_skip = 2,
          .min_timestep = -1,
          .max_timestep = -1,
          .implementation_version = "sd-scripts/48d368fa"}},
        {"kohya-sd2-bf16.safetensors",
         {.v2 = true,
          .v_parameterization = true,
          .title = "kohya-sd2-bf16",
          .resolution = "768,768",
          .timestamp = 1767225600,
          .clip_skip = -1,
          .min_timestep = 0,
          .max_timestep = -1,
          .implementation_version = "sd-scripts/48d368fa"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Embedding ref, ours;
        Error err = {{0}};
        if (embedding_load(fixture(cases[i].file), &ref, &err) != 0) {
            CHECKF(false, "%s", err.message);
            continue;
        }
        embedding_init(&ours);
        CHECK_OK(embedding_set_kohya_metadata(&ours, &cases[i].args, &err), &err);
        CHECKF(ours.meta_count == ref.meta_count, "%s: %zu keys, kohya %zu", cases[i].file,
               ours.meta_count, ref.meta_count);
        for (size_t k = 0; k < ref.meta_count; k++) {
            const char *v = embedding_get_meta(&ours, ref.meta[k].key);
            CHECKF(v && strcmp(v, ref.meta[k].value) == 0, "%s: %s = %s, kohya %s", cases[i].file,
                   ref.meta[k].key, v ? v : "(missing)", ref.meta[k].value);
        }
        embedding_free(&ours);
        embedding_free(&ref);
    }
}

/* ---- bad inputs ---- */

static void expect_load_fails(const char *path, const char *needle) {
    Embedding e;
    Error err = {{0}};
    int rc = embedding_load(path, &e, &err);
    CHECK_FAILS_WITH(rc, &err, needle);
    if (rc == 0)
        embedding_free(&e);
    else
        CHECKF(strstr(err.message, path_basename(path)) && !strchr(err.message, '\n'),
               "error does not name the file on one line: %s", err.message);
}

/* Every proper prefix of every fixture fails cleanly (and names the file). */
static void test_truncated(void) {
    const char *files[] = {
        "kohya-sd1.safetensors",        "kohya-sd1-fp16.pt", "a1111-sd1.pt", "a1111-sd1-legacy.pt",
        "diffusers/learned_embeds.bin", "a1111-paramdict.pt"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t size;
        char *data = read_all(fixture(files[f]), &size);
        if (!data)
            continue;
        size_t failures = 0, ok = 0;
        for (size_t len = 0; len < size; len++) {
            Embedding e;
            Error err = {{0}};
            if (embedding_load_buffer("cut.pt", data, len, &e, &err) == 0) {
                ok++;
                embedding_free(&e);
            } else if (strncmp(err.message, "cut.pt", 6) == 0 && !strchr(err.message, '\n')) {
                failures++;
            } else {
                CHECKF(false, "%s cut at %zu: message %s", files[f], len, err.message);
            }
        }
        CHECKF(ok == 0, "%s: %zu truncated prefixes were accepted", files[f], ok);
        CHECKF(failures == size, "%s: %zu of %zu prefixes failed cleanly", files[f], failures,
               size);
        free(data);
    }
}

/* Writes a torch file holding `root`, tensors from `set`. */
static void save_torch(const char *name, PickleValue *root, TensorSet *set) {
    Error err = {{0}};
    char *path = tmp_path(name);
    CHECK_OK(torch_file_save(path, root, set, &err), &err);
    free(path);
}

static void test_wrong_layouts(void) {
    Error err = {{0}};
    TensorSet set;
    tensor_set_init(&set);
    float good[16], nan_values[8], inf_values[8];
    for (int i = 0; i < 16; i++)
        good[i] = 0.01f * (float)(i + 1);
    for (int i = 0; i < 8; i++)
        nan_values[i] = inf_values[i] = good[i];
    nan_values[5] = NAN;
    inf_values[2] = -INFINITY;
    int8_t ints[8] = {0};
    int64_t s28[2] = {2, 8}, s18[2] = {1, 8}, s08[2] = {0, 8}, s3[3] = {1, 2, 8};
    CHECK_OK(tensor_set_add(&set, "good", DTYPE_F32, 2, s28, good, &err), &err);
    CHECK_OK(tensor_set_add(&set, "nan", DTYPE_F32, 2, s18, nan_values, &err), &err);
    CHECK_OK(tensor_set_add(&set, "inf", DTYPE_F32, 2, s18, inf_values, &err), &err);
    CHECK_OK(tensor_set_add(&set, "ints", DTYPE_I8, 2, s18, ints, &err), &err);
    CHECK_OK(tensor_set_add(&set, "empty", DTYPE_F32, 2, s08, NULL, &err), &err);
    CHECK_OK(tensor_set_add(&set, "cube", DTYPE_F32, 3, s3, good, &err), &err);

    struct {
        const char *file;
        const char *key;   /* root key */
        const char *value; /* tensor entry, or NULL for a string value */
        bool a1111;        /* inside string_to_param */
        const char *needle;
    } torch_cases[] = {
        {"nan.pt", "emb_params", "nan", false, "NaN"},
        {"inf.pt", "*", "inf", true, "infinite"},
        {"ints.pt", "emb_params", "ints", false, "int8"},
        {"empty.pt", "<tok>", "empty", false, "no vectors"},
        {"cube.pt", "emb_params", "cube", false, "shape [1, 2, 8]"},
        {"str.pt", "emb_params", NULL, false, "not an embedding"},
        {"a1111-str.pt", "*", NULL, true, "not a tensor"},
        {"clip.pt", "clip_l", "good", false, "SDXL is not supported"},
    };
    for (size_t i = 0; i < sizeof torch_cases / sizeof torch_cases[0]; i++) {
        PickleDoc doc;
        pickle_doc_init(&doc);
        PickleValue *root = pickle_new(&doc, PICKLE_DICT);
        PickleValue *v = torch_cases[i].value
                             ? pickle_new_tensor(&doc, torch_cases[i].value, false, false)
                             : pickle_new_str(&doc, "hello");
        if (torch_cases[i].a1111) {
            PickleValue *terms = pickle_new(&doc, PICKLE_DICT);
            pickle_dict_set(&doc, terms, torch_cases[i].key, v);
            pickle_dict_set(&doc, root, "string_to_param", terms);
        } else {
            pickle_dict_set(&doc, root, torch_cases[i].key, v);
        }
        save_torch(torch_cases[i].file, root, &set);
        char *path = tmp_path(torch_cases[i].file);
        expect_load_fails(path, torch_cases[i].needle);
        free(path);
        pickle_doc_free(&doc);
    }
    /* root kinds and dict shapes */
    {
        PickleDoc doc;
        pickle_doc_init(&doc);
        PickleValue *list = pickle_new(&doc, PICKLE_LIST);
        pickle_append(list, pickle_new_tensor(&doc, "good", false, false));
        save_torch("list.pt", list, &set);
        PickleValue *empty = pickle_new(&doc, PICKLE_DICT);
        save_torch("emptydict.pt", empty, &set);
        PickleValue *two = pickle_new(&doc, PICKLE_DICT);
        pickle_dict_set(&doc, two, "a", pickle_new_tensor(&doc, "good", false, false));
        pickle_dict_set(&doc, two, "b", pickle_new_tensor(&doc, "good", false, false));
        save_torch("two.pt", two, &set);
        PickleValue *bad_terms = pickle_new(&doc, PICKLE_DICT);
        pickle_dict_set(&doc, bad_terms, "string_to_param", pickle_new_int(&doc, 3));
        save_torch("badterms.pt", bad_terms, &set);
        pickle_doc_free(&doc);
        const char *cases[][2] = {{"list.pt", "not a dict"},
                                  {"emptydict.pt", "empty dict"},
                                  {"two.pt", "multiple terms"},
                                  {"badterms.pt", "string_to_param is a int"}};
        for (size_t i = 0; i < 4; i++) {
            char *path = tmp_path(cases[i][0]);
            expect_load_fails(path, cases[i][1]);
            free(path);
        }
    }
    /* safetensors: no tensor, two tensors, NaN */
    {
        struct {
            const char *file;
            const char *entries[2];
            const char *needle;
        } st_cases[] = {
            {"none.safetensors", {NULL, NULL}, "no tensors"},
            {"two.safetensors", {"good", "nan"}, "multiple terms"},
            {"nan.safetensors", {"nan", NULL}, "NaN"},
            {"ints.safetensors", {"ints", NULL}, "int8"},
        };
        for (size_t i = 0; i < sizeof st_cases / sizeof st_cases[0]; i++) {
            TensorSet out;
            tensor_set_init(&out);
            for (int k = 0; k < 2 && st_cases[i].entries[k]; k++) {
                const NamedTensor *t = tensor_set_find(&set, st_cases[i].entries[k]);
                CHECK_OK(tensor_set_add(&out, t->name, t->dtype, t->ndim, t->shape, t->data, &err),
                         &err);
            }
            char *path = tmp_path(st_cases[i].file);
            CHECK_OK(safetensors_write(path, &out, &err), &err);
            expect_load_fails(path, st_cases[i].needle);
            free(path);
            tensor_set_free(&out);
        }
    }
    /* fixtures the tools wrote that are not usable */
    expect_load_fails(fixture("a1111-multi.pt"), "embedding file has multiple terms in it");
    expect_load_fails(fixture("sdxl.safetensors"), "SDXL is not supported");
    expect_load_fails(fixture("expected.json"), "neither a safetensors file nor a torch file");
    char *missing = tmp_path("missing.pt");
    Embedding e;
    CHECK(embedding_load(missing, &e, &err) != 0 && strstr(err.message, "missing.pt"));
    free(missing);
    /* a file far too large to be an embedding is not read */
    char *big = tmp_path("big.ckpt");
    FILE *f = fopen(big, "wb");
    CHECK(f && fseek(f, (long)EMBEDDING_MAX_FILE, SEEK_SET) == 0 && fputc(0, f) == 0);
    if (f)
        fclose(f);
    expect_load_fails(big, "too large for an embedding");
    remove(big);
    free(big);
    char *zero = tmp_path("zero-bytes.pt");
    test_write_file(zero, "", 0);
    expect_load_fails(zero, "empty");
    free(zero);
    tensor_set_free(&set);
}

static void test_model_checks(void) {
    struct {
        const char *file;
        int width;
        const char *needle; /* NULL: accepted */
    } cases[] = {
        {"kohya-sd1.safetensors", 8, NULL},
        {"kohya-sd1.safetensors", 768,
         "an embedding 8 wide; the model's text encoder is SD1.x (768 wide)"},
        {"concept-768.bin", 1024,
         "an SD1.x embedding (CLIP ViT-L, 768 wide); the model's text "
         "encoder is SD2.x (1024 wide)"},
        {"concept-768.bin", 768, NULL},
        {"kohya-sd2-bf16.safetensors", 768,
         "an SD2.x embedding (OpenCLIP ViT-H, 1024 wide); the "
         "model's text encoder is SD1.x (768 wide)"},
        {"kohya-sd2-bf16.safetensors", 8, "the model's text encoder is 8 wide"},
        {"a1111-zero.pt", 8, "vector 0 of 2 is all zeros"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Embedding e;
        Error err = {{0}};
        if (embedding_load(fixture(cases[i].file), &e, &err) != 0) {
            CHECKF(false, "%s", err.message);
            continue;
        }
        int rc = embedding_check_for_model(&e, cases[i].file, cases[i].width, &err);
        if (cases[i].needle)
            CHECK_FAILS_WITH(rc, &err, cases[i].needle);
        else
            CHECKF(rc == 0, "%s at width %d: %s", cases[i].file, cases[i].width, err.message);
        embedding_free(&e);
    }
}

/* ---- the CLI ---- */

static void test_cli(void) {
    const char *bin = getenv("SDTI_BIN");
    if (!bin) {
        CHECKF(false, "SDTI_BIN not set");
        return;
    }
    char cmd[4096];
    char *out = NULL;
    /* A1111 .pt -> A1111 .pt through the CLI: the same records as A1111's own file */
    char *a = tmp_path("a1111-sd1.pt");
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s'", bin, fixture("a1111-sd1.pt"), a);
    CHECKF(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    CHECK(same_minimal_records(a, fixture("a1111-sd1.pt")));
    /* -> kohya .safetensors with modelspec metadata (fixed date via SOURCE_DATE_EPOCH) */
    char *k = tmp_path("from-a1111.safetensors");
    snprintf(cmd, sizeof cmd, "SOURCE_DATE_EPOCH=1767225600 TZ=UTC '%s' convert '%s' '%s'", bin, a,
             k);
    CHECKF(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", bin, k);
    CHECKF(test_run(cmd, &out) == 0 && strstr(out, "kohya .safetensors") &&
               strstr(out, "vectors:       4") && strstr(out, "width:         8") &&
               strstr(out, "modelspec.architecture = stable-diffusion-v1/textual-inversion") &&
               strstr(out, "modelspec.title = from-a1111") &&
               strstr(out, "modelspec.date = 2026-01-01T00:00:00"),
           "inspect: %s", out);
    free(out);
    /* -> diffusers .bin, fp16, token named */
    char *d = tmp_path("learned_embeds.bin");
    snprintf(cmd, sizeof cmd, "'%s' convert --save_precision fp16 --token '<x>' '%s' '%s'", bin, k,
             d);
    CHECKF(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", bin, d);
    CHECKF(test_run(cmd, &out) == 0 && strstr(out, "diffusers learned_embeds .bin") &&
               strstr(out, "tensor key:    <x>") && strstr(out, "dtype:         float16"),
           "inspect: %s", out);
    free(out);
    /* A1111's step and checkpoint are shown */
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", bin, fixture("a1111-sd1-legacy.pt"));
    CHECKF(test_run(cmd, &out) == 0 && strstr(out, "legacy torch file") &&
               strstr(out, "step:          1200") &&
               strstr(out, "sd_checkpoint: 0badc0de (sd1-tiny [0badc0de])"),
           "inspect: %s", out);
    free(out);
    /* errors */
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s'", bin, fixture("sdxl.safetensors"), k);
    CHECKF(test_run(cmd, &out) == 1 && strstr(out, "SDXL is not supported"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s/x.txt'", bin, fixture("a1111-sd1.pt"),
             tmp_dir);
    CHECKF(test_run(cmd, &out) == 2 && strstr(out, "must end in"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' convert --format a1111 '%s' '%s'", bin, fixture("a1111-sd1.pt"),
             k);
    CHECKF(test_run(cmd, &out) == 2 && strstr(out, "only as .pt"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", bin, fixture("sdxl.safetensors"));
    CHECKF(test_run(cmd, &out) == 1 && strstr(out, "as an embedding:") &&
               strstr(out, "SDXL is not supported"),
           "%s", out);
    free(out);
    free(a);
    free(k);
    free(d);
}

/* A safetensors file with more tensors than the error message lists (a regression: the list
 * was indexed past its 8 shown names). The text-encoder fixture holds 13 tensors. */
static void test_many_tensors_error(void) {
    Embedding e;
    Error err = {{0}};
    int rc = embedding_load(test_fixture("text_encoder/sd2-tiny-225.safetensors"), &e, &err);
    CHECK_FAILS_WITH(rc, &err, "holds 13 tensors");
    if (rc == 0)
        embedding_free(&e);
}

int main(void) {
    tmp_dir = test_tmp_dir("test_embedding_file");
    size_t size;
    char *text = read_all(fixture("expected.json"), &size);
    expected = text ? cJSON_Parse(text) : NULL;
    free(text);
    tensor_set_init(&expected_values);
    Error err = {{0}};
    CHECK(expected != NULL);
    CHECK_OK(safetensors_open(fixture("expected.safetensors"), &expected_values, &err), &err);
    test_many_tensors_error();
    if (expected) {
        test_fixtures_read();
        test_writers_match_tools();
        test_round_trips();
        test_kohya_metadata();
        test_truncated();
        test_wrong_layouts();
        test_model_checks();
        test_cli();
    }
    cJSON_Delete(expected);
    tensor_set_free(&expected_values);
    return test_finish();
}
