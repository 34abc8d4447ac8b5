/* TensorBoard event files, written by hand (no TensorFlow, no protobuf library): the file is a
 * sequence of TFRecords
 *   uint64 length (little-endian), uint32 masked CRC32C of those 8 bytes,
 *   `length` bytes of data, uint32 masked CRC32C of the data,
 * each holding one serialized tensorflow.Event protobuf:
 *   Event { double wall_time = 1; int64 step = 2; string file_version = 3;
 *           Summary summary = 5; SourceMetadata source_metadata = 10; }
 *   Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
 * The first event carries file_version "brain.Event:2" (what TensorBoard's reader checks),
 * then one event per scalar, as torch's SummaryWriter.add_scalar writes them. A step of 0 is
 * left out, as proto3 serializers leave out default values (simple_value sits in a oneof, so
 * it is always written). Every record is flushed when written, so a run killed at any point
 * keeps its log up to the last step. */
#ifndef SDTI_TRAIN_TB_EVENTS_H
#define SDTI_TRAIN_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"

/* CRC-32C (Castagnoli), as TFRecord uses it, and the mask TFRecord applies. */
uint32_t tb_crc32c(const uint8_t *data, size_t size);
uint32_t tb_masked_crc32c(const uint8_t *data, size_t size);

/* The longest scalar tag written. */
#define TB_MAX_TAG 200
/* Bytes an encoded event or a framed record may need at most. */
#define TB_MAX_EVENT  320
#define TB_MAX_RECORD (TB_MAX_EVENT + 16)

/* Encodes the file_version event / one scalar event into buf (TB_MAX_EVENT bytes); returns
 * the length, or 0 when the tag is empty or longer than TB_MAX_TAG. */
size_t tb_encode_version_event(uint8_t *buf, double wall_time);
size_t tb_encode_scalar_event(uint8_t *buf, double wall_time, int64_t step, const char *tag,
                              float value);
/* Frames `size` bytes of data as a TFRecord into out (size + 16 bytes); returns its length. */
size_t tb_frame_record(uint8_t *out, const uint8_t *data, size_t size);

typedef struct TbEventWriter {
    FILE *fp;
    char *path; /* the event file */
} TbEventWriter;

/* Creates dir/events.out.tfevents.<%010d wall time>.<host>.<pid>.0<suffix> (the name
 * torch's SummaryWriter gives it; suffix may be NULL) and writes the file_version event. */
int tb_event_writer_open(TbEventWriter *w, const char *dir, const char *suffix, double wall_time,
                         Error *err);
/* Appends one scalar event and flushes it. */
int tb_event_writer_scalar(TbEventWriter *w, double wall_time, int64_t step, const char *tag,
                           float value, Error *err);
/* Closes the file (safe on a writer never opened, or twice). */
void tb_event_writer_close(TbEventWriter *w);

#endif
