/* TensorBoard event files: TFRecord framing and a minimal hand-written protobuf encoder for
 * tensorflow.Event with scalar summaries. See tb_events.h. */
#define _POSIX_C_SOURCE 200809L /* gethostname, getpid */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file_util.h"
#include "train/tb_events.h"

/* CRC-32C, reflected polynomial 0x82F63B78, computed bit by bit. Debian has no C library for
 * it, and the records here are a few dozen bytes per training step, so a lookup table (and
 * the global or static state it needs) buys nothing. */
uint32_t tb_crc32c(const uint8_t *data, size_t size) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; i++) {
        crc ^= data[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

/* TFRecord's mask (rotate right by 15, add a constant), so that a CRC stored inside the data
 * it covers does not make a trivially valid record. */
uint32_t tb_masked_crc32c(const uint8_t *data, size_t size) {
    uint32_t crc = tb_crc32c(data, size);
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

static size_t put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return (size_t)bytes;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* A protobuf field key: field number and wire type (0 varint, 1 fixed64, 2 length-delimited,
 * 5 fixed32). */
static size_t put_key(uint8_t *p, unsigned field, unsigned wire) {
    return put_varint(p, ((uint64_t)field << 3) | wire);
}

static size_t put_bytes(uint8_t *p, unsigned field, const void *data, size_t size) {
    size_t n = put_key(p, field, 2);
    n += put_varint(p + n, size);
    memcpy(p + n, data, size);
    return n + size;
}

static size_t put_double(uint8_t *p, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    size_t n = put_key(p, field, 1);
    return n + put_le(p + n, bits, 8);
}

static size_t put_float(uint8_t *p, unsigned field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    size_t n = put_key(p, field, 5);
    return n + put_le(p + n, bits, 4);
}

size_t tb_encode_version_event(uint8_t *buf, double wall_time) {
    static const char version[] = "brain.Event:2";
    static const char writer[] = "sdti";
    size_t n = put_double(buf, 1, wall_time);
    n += put_bytes(buf + n, 3, version, sizeof version - 1);
    uint8_t meta[16];
    size_t m = put_bytes(meta, 1, writer, sizeof writer - 1); /* SourceMetadata.writer */
    return n + put_bytes(buf + n, 10, meta, m);
}

size_t tb_encode_scalar_event(uint8_t *buf, double wall_time, int64_t step, const char *tag,
                              float value) {
    size_t tag_len = tag ? strlen(tag) : 0;
    if (tag_len == 0 || tag_len > TB_MAX_TAG)
        return 0;
    uint8_t val[TB_MAX_TAG + 16], summary[TB_MAX_TAG + 24];
    size_t v = put_bytes(val, 1, tag, tag_len);
    /* simple_value sits in Value's oneof, so it is written even when it is 0.0 */
    v += put_float(val + v, 2, value);
    size_t s = put_bytes(summary, 1, val, v); /* Summary.value */
    size_t n = put_double(buf, 1, wall_time);
    if (step != 0) {
        n += put_key(buf + n, 2, 0);
        n += put_varint(buf + n, (uint64_t)step); /* int64: negative as 10-byte two's complement */
    }
    return n + put_bytes(buf + n, 5, summary, s);
}

size_t tb_frame_record(uint8_t *out, const uint8_t *data, size_t size) {
    size_t n = put_le(out, size, 8);
    n += put_le(out + n, tb_masked_crc32c(out, 8), 4);
    memcpy(out + n, data, size);
    n += size;
    return n + put_le(out + n, tb_masked_crc32c(data, size), 4);
}

static int write_record(TbEventWriter *w, const uint8_t *event, size_t size, Error *err) {
    uint8_t record[TB_MAX_RECORD];
    size_t n = tb_frame_record(record, event, size);
    if (fwrite(record, 1, n, w->fp) != n || fflush(w->fp) != 0)
        return error_set(err, "%s: write failed: %s", w->path, strerror(errno));
    return 0;
}

int tb_event_writer_open(TbEventWriter *w, const char *dir, const char *suffix, double wall_time,
                         Error *err) {
    memset(w, 0, sizeof *w);
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    char name[512];
    snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%ld.0%s",
             (long long)floor(wall_time), host, (long)getpid(), suffix ? suffix : "");
    w->path = path_join(dir, name);
    if (!w->path)
        return error_set(err, "out of memory");
    w->fp = fopen(w->path, "wb");
    if (!w->fp) {
        error_set(err, "%s: cannot create the TensorBoard event file: %s", w->path,
                  strerror(errno));
        tb_event_writer_close(w);
        return -1;
    }
    uint8_t event[TB_MAX_EVENT];
    size_t n = tb_encode_version_event(event, wall_time);
    if (write_record(w, event, n, err) != 0) {
        tb_event_writer_close(w);
        return -1;
    }
    return 0;
}

int tb_event_writer_scalar(TbEventWriter *w, double wall_time, int64_t step, const char *tag,
                           float value, Error *err) {
    uint8_t event[TB_MAX_EVENT];
    size_t n = tb_encode_scalar_event(event, wall_time, step, tag, value);
    if (n == 0)
        return error_set(err, "%s: scalar tag '%s' is empty or longer than %d bytes", w->path,
                         tag ? tag : "", TB_MAX_TAG);
    return write_record(w, event, n, err);
}

void tb_event_writer_close(TbEventWriter *w) {
    if (w->fp)
        fclose(w->fp);
    free(w->path);
    w->fp = NULL;
    w->path = NULL;
}
