/* TensorBoard hparams summaries: a small growable protobuf encoder for the hparams plugin's
 * messages. See tb_hparams.h. */
#define _POSIX_C_SOURCE 200809L /* gethostname, getpid */
#include "train/tb_hparams.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file_util.h"
#include "generate/generate_run.h"
#include "train/tb_events.h"

typedef struct PbBuf {
    uint8_t *data;
    size_t len, cap;
    bool oom;
} PbBuf;

static void pb_put(PbBuf *b, const void *data, size_t size) {
    if (b->oom)
        return;
    if (b->len + size > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + size)
            cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    if (size)
        memcpy(b->data + b->len, data, size);
    b->len += size;
}

static void pb_varint(PbBuf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    pb_put(b, tmp, n);
}

/* field key: wire type 0 varint, 1 fixed64, 2 length-delimited */
static void pb_key(PbBuf *b, unsigned field, unsigned wire) {
    pb_varint(b, ((uint64_t)field << 3) | wire);
}

static void pb_bytes(PbBuf *b, unsigned field, const void *data, size_t size) {
    pb_key(b, field, 2);
    pb_varint(b, size);
    pb_put(b, data, size);
}

static void pb_string(PbBuf *b, unsigned field, const char *s) {
    pb_bytes(b, field, s, strlen(s));
}

/* a submessage: its encoding, then freed */
static void pb_message(PbBuf *b, unsigned field, PbBuf *sub) {
    if (sub->oom)
        b->oom = true;
    pb_bytes(b, field, sub->data, sub->len);
    free(sub->data);
    memset(sub, 0, sizeof *sub);
}

static void pb_double(PbBuf *b, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(bits >> (8 * i));
    pb_key(b, field, 1);
    pb_put(b, le, 8);
}

enum { DATA_TYPE_STRING = 1, DATA_TYPE_FLOAT64 = 3, STATUS_SUCCESS = 1 };

/* HParamsPluginData (version 0 left out) with `which` (2 experiment, 3 session_start_info,
 * 4 session_end_info) set to `data`, inside an Event{wall_time, summary{value{tag,
 * metadata{plugin_data{"hparams", content}}}}}, framed and appended to out. */
static void put_event(PbBuf *out, double wall_time, const char *tag, unsigned which, PbBuf *data) {
    PbBuf content = {0}, plugin = {0}, meta = {0}, value = {0}, summary = {0}, event = {0};
    pb_message(&content, which, data);
    pb_string(&plugin, 1, "hparams");
    pb_message(&plugin, 2, &content);
    pb_message(&meta, 1, &plugin);
    pb_string(&value, 1, tag);
    pb_message(&value, 9, &meta);
    pb_message(&summary, 1, &value);
    pb_double(&event, 1, wall_time);
    pb_message(&event, 5, &summary);
    uint8_t *record = event.oom ? NULL : malloc(event.len + 16);
    if (record) {
        size_t n = tb_frame_record(record, event.data, event.len);
        pb_put(out, record, n);
    } else {
        out->oom = true;
    }
    free(record);
    free(event.data);
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const TbHParam *const *)a)->name, (*(const TbHParam *const *)b)->name);
}

int tb_hparams_encode(const TbHParam *params, int count, double wall_time, uint8_t **out,
                      size_t *size, Error *err) {
    *out = NULL;
    *size = 0;
    PbBuf all = {0}, exp = {0}, start = {0}, end = {0};
    for (int i = 0; i < count; i++) {
        PbBuf info = {0};
        pb_string(&info, 1, params[i].name);
        pb_key(&info, 4, 0);
        pb_varint(&info, params[i].kind == TB_HPARAM_STRING ? DATA_TYPE_STRING : DATA_TYPE_FLOAT64);
        pb_message(&exp, 4, &info); /* Experiment.hparam_infos */
    }
    const TbHParam **sorted = malloc(sizeof *sorted * (size_t)(count > 0 ? count : 1));
    if (!sorted)
        return error_set(err, "out of memory");
    for (int i = 0; i < count; i++)
        sorted[i] = &params[i];
    qsort(sorted, (size_t)count, sizeof *sorted, by_name);
    for (int i = 0; i < count; i++) {
        PbBuf value = {0}, entry = {0};
        if (sorted[i]->kind == TB_HPARAM_STRING)
            pb_string(&value, 3, sorted[i]->string); /* Value.string_value */
        else
            pb_double(&value, 2, sorted[i]->number); /* Value.number_value */
        pb_string(&entry, 1, sorted[i]->name);
        pb_message(&entry, 2, &value);
        pb_message(&start, 1, &entry); /* SessionStartInfo.hparams */
    }
    free(sorted);
    pb_key(&end, 1, 0);
    pb_varint(&end, STATUS_SUCCESS);
    put_event(&all, wall_time, "_hparams_/experiment", 2, &exp);
    put_event(&all, wall_time, "_hparams_/session_start_info", 3, &start);
    put_event(&all, wall_time, "_hparams_/session_end_info", 4, &end);
    if (all.oom) {
        free(all.data);
        return error_set(err, "out of memory");
    }
    *out = all.data;
    *size = all.len;
    return 0;
}

void tb_py_float_repr(double x, char *buf, size_t size) {
    generate_format_py_float(x, buf, size); /* Python's str(float), which is its repr */
}

int tb_hparams_write(const char *tracker_dir, const TbHParam *params, int count, double wall_time,
                     char **folder, Error *err) {
    if (folder)
        *folder = NULL;
    char name[64];
    tb_py_float_repr(wall_time, name, sizeof name);
    char *dir = path_join(tracker_dir, name);
    if (!dir)
        return error_set(err, "out of memory");
    if (file_make_dirs(dir, err) != 0) {
        free(dir);
        return -1;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    char file[512];
    snprintf(file, sizeof file, "events.out.tfevents.%010lld.%s.%ld.1", (long long)floor(wall_time),
             host, (long)getpid());
    char *path = path_join(dir, file);
    uint8_t *events = NULL;
    size_t size = 0;
    int rc = path ? tb_hparams_encode(params, count, wall_time, &events, &size, err)
                  : error_set(err, "out of memory");
    FILE *f = rc == 0 ? fopen(path, "wb") : NULL;
    if (rc == 0 && !f)
        rc = error_set(err, "%s: cannot create the TensorBoard event file: %s", path,
                       strerror(errno));
    if (rc == 0) {
        uint8_t version[TB_MAX_EVENT], record[TB_MAX_RECORD];
        size_t n = tb_frame_record(record, version, tb_encode_version_event(version, wall_time));
        if (fwrite(record, 1, n, f) != n || fwrite(events, 1, size, f) != size)
            rc = error_set(err, "%s: write failed: %s", path, strerror(errno));
    }
    if (f && fclose(f) != 0 && rc == 0)
        rc = error_set(err, "%s: write failed: %s", path, strerror(errno));
    free(events);
    free(path);
    if (rc == 0 && folder)
        *folder = dir;
    else
        free(dir);
    return rc;
}
