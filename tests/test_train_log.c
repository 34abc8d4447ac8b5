// labels: unit
/* The --logging_dir log. tb_events: CRC32C and its mask against the `tensorboard` package's
 * own crc32c, and the encoded, framed events byte for byte against events that tensorboard's
 * protobuf classes serialized and its RecordWriter framed (tools/reference/
 * make_tb_event_fixtures.py); an event file written by the writer read back record by record
 * (both CRCs, the data). train_log: the run folder layout, the CSV rows, a second run in the
 * same second in its own folder, the loss-curve PNG (readable, its size, drawn on), and
 * --log_tracker_config's [tensorboard] keys. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "formats/image.h"
#include "test_util.h"
#include "train/loss_plot.h"
#include "train/tb_events.h"
#include "train/train_log.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    if (strcmp(hex, "-") == 0)
        return 0;
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n && i < cap; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n < cap ? n : cap;
}

static void test_reference_bytes(void) {
    FILE *f = fopen(test_fixture("train_log/cases.txt"), "r");
    CHECKF(f != NULL, "cannot open %s", test_fixture("train_log/cases.txt"));
    if (!f)
        return;
    char *ref = NULL;
    size_t ref_size = 0;
    Error err = {{0}};
    CHECK_OK(file_read_all(test_fixture("train_log/events.bin"), &ref, &ref_size, &err), &err);
    uint8_t *ours = malloc(4096);
    size_t n = 0;
    int crcs = 0, events = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char kind[16], a[512], tag[256];
        unsigned crc, masked, bits;
        double wall;
        long long step;
        uint8_t data[256], event[TB_MAX_EVENT];
        if (sscanf(line, "crc %511s %x %x", a, &crc, &masked) == 3) {
            size_t len = unhex(a, data, sizeof data);
            CHECKF(tb_crc32c(data, len) == crc, "crc32c(%s) = %08x, tensorboard: %08x", a,
                   tb_crc32c(data, len), crc);
            CHECKF(tb_masked_crc32c(data, len) == masked, "masked crc32c(%s) = %08x, want %08x", a,
                   tb_masked_crc32c(data, len), masked);
            crcs++;
        } else if (sscanf(line, "version %lf", &wall) == 1) {
            size_t len = tb_encode_version_event(event, wall);
            n += tb_frame_record(ours + n, event, len);
            events++;
        } else if (sscanf(line, "scalar %lf %lld %255s %x", &wall, &step, tag, &bits) == 4) {
            float v;
            uint32_t b = bits;
            memcpy(&v, &b, sizeof v);
            size_t len = tb_encode_scalar_event(event, wall, step, tag, v);
            CHECK(len > 0);
            n += tb_frame_record(ours + n, event, len);
            events++;
        } else {
            CHECKF(sscanf(line, "%15s", kind) != 1, "unknown fixture line: %s", line);
        }
    }
    fclose(f);
    printf("%d crc cases, %d events, %zu bytes (tensorboard: %zu)\n", crcs, events, n, ref_size);
    CHECK(crcs >= 5 && events >= 5);
    CHECKF(ref && n == ref_size && memcmp(ours, ref, n) == 0,
           "the encoded events differ from tensorboard's (%zu vs %zu bytes)", n, ref_size);
    for (size_t i = 0; ref && i < n && i < ref_size; i++)
        if (ours[i] != (uint8_t)ref[i]) {
            printf("first difference at byte %zu: %02x vs %02x\n", i, ours[i], (uint8_t)ref[i]);
            break;
        }
    free(ours);
    free(ref);
    uint8_t event[TB_MAX_EVENT];
    char long_tag[TB_MAX_TAG + 2];
    memset(long_tag, 'a', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    CHECK(tb_encode_scalar_event(event, 1.0, 1, long_tag, 1.0f) == 0);
    CHECK(tb_encode_scalar_event(event, 1.0, 1, "", 1.0f) == 0);
}

static uint64_t get_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The only file in dir whose name starts with prefix (malloc'd path), or NULL. */
static char *find_file(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    char *found = NULL;
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            free(found);
            found = path_join(dir, e->d_name);
            count++;
        }
    if (d)
        closedir(d);
    if (count != 1) {
        free(found);
        return NULL;
    }
    return found;
}

static void test_writer_read_back(const char *tmp) {
    TbEventWriter w;
    Error err = {{0}};
    const double wall = 1700000000.5;
    CHECK_OK(tb_event_writer_open(&w, tmp, ".v2", wall, &err), &err);
    CHECK_OK(tb_event_writer_scalar(&w, wall + 1, 1, "loss", 0.25f, &err), &err);
    CHECK_OK(tb_event_writer_scalar(&w, wall + 1, 1, "lr", 1e-3f, &err), &err);
    CHECK_OK(tb_event_writer_scalar(&w, wall + 2, 2, "loss", 0.125f, &err), &err);
    /* flushed per record: the whole file is there before the close */
    char *path = find_file(tmp, "events.out.tfevents.1700000000.");
    CHECKF(path != NULL, "no events.out.tfevents.1700000000.* in %s", tmp);
    char *data = NULL;
    size_t size = 0;
    if (path)
        CHECK_OK(file_read_all(path, &data, &size, &err), &err);
    CHECK(path && path_has_suffix(path, ".0.v2"));
    tb_event_writer_close(&w);
    tb_event_writer_close(&w);

    uint8_t want[4][TB_MAX_EVENT];
    size_t want_len[4] = {tb_encode_version_event(want[0], wall),
                          tb_encode_scalar_event(want[1], wall + 1, 1, "loss", 0.25f),
                          tb_encode_scalar_event(want[2], wall + 1, 1, "lr", 1e-3f),
                          tb_encode_scalar_event(want[3], wall + 2, 2, "loss", 0.125f)};
    const uint8_t *p = (const uint8_t *)data;
    size_t pos = 0;
    int records = 0;
    while (data && pos + 12 <= size) {
        uint64_t len = get_le(p + pos, 8);
        CHECK(get_le(p + pos + 8, 4) == tb_masked_crc32c(p + pos, 8));
        if (pos + 16 + len > size) {
            CHECKF(0, "record %d runs past the end of the file", records);
            break;
        }
        CHECK(get_le(p + pos + 12 + len, 4) == tb_masked_crc32c(p + pos + 12, len));
        CHECKF(records < 4 && len == want_len[records] &&
                   memcmp(p + pos + 12, want[records], len) == 0,
               "record %d differs from its encoding", records);
        pos += 16 + len;
        records++;
    }
    CHECKF(records == 4 && pos == size, "%d records, %zu of %zu bytes", records, pos, size);
    free(data);
    free(path);
}

static int count_lines(const char *path) {
    char *text = NULL;
    size_t size = 0;
    Error err = {{0}};
    if (file_read_all(path, &text, &size, &err) != 0)
        return -1;
    int lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    free(text);
    return lines;
}

static void test_train_log(const char *tmp) {
    char logging_dir[1024];
    snprintf(logging_dir, sizeof logging_dir, "%s/logs", tmp);
    TrainLogSettings s = {.logging_dir = logging_dir, .prefix = "run-", .tracker_name = NULL};
    const double wall = 1700000000.0;
    time_t t = (time_t)wall;
    struct tm tm;
    char stamp[32], want_dir[1200];
    localtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    snprintf(want_dir, sizeof want_dir, "%s/run-%s", logging_dir, stamp);

    TrainLog l;
    Error err = {{0}};
    CHECK_OK(train_log_open(&l, &s, wall, &err), &err);
    CHECKF(l.run_dir && strcmp(l.run_dir, want_dir) == 0, "run folder %s, want %s",
           l.run_dir ? l.run_dir : "none", want_dir);
    double losses[40];
    for (int i = 0; i < 40; i++) {
        losses[i] = 0.5 + 0.3 * cos(i * 0.7) * exp(-i / 20.0);
        CHECK_OK(train_log_step(&l, i + 1, i / 10 + 1, losses[i], losses[i], 1e-3, &err), &err);
    }
    CHECK_OK(train_log_epoch(&l, 1, 0.5, &err), &err);
    CHECK(count_lines(l.csv_path) == 41);
    char events_dir[1400];
    snprintf(events_dir, sizeof events_dir, "%s/textual_inversion", want_dir);
    char *events = find_file(events_dir, "events.out.tfevents.");
    CHECKF(events != NULL, "no event file in %s", events_dir);
    free(events);
    CHECK_OK(train_log_write_curve(&l, &err), &err);
    Image img = {0};
    ImageLoadOptions opts = {0};
    CHECK_OK(image_load_file(l.curve_path, &opts, &img, &err), &err);
    CHECK(img.width == LOSS_PLOT_WIDTH && img.height == LOSS_PLOT_HEIGHT);
    /* the thick curve's color is somewhere inside the frame */
    int curve_pixels = 0;
    for (int i = 0; img.pixels && i < img.width * img.height; i++) {
        const uint8_t *px = img.pixels + (size_t)i * (size_t)img.channels;
        curve_pixels += px[0] == 200 && px[1] == 40 && px[2] == 30;
    }
    printf("loss curve: %d x %d, %d pixels of the mean's color\n", img.width, img.height,
           curve_pixels);
    CHECK(curve_pixels > 2 * (LOSS_PLOT_WIDTH - 64));
    image_free(&img);
    train_log_close(&l);
    train_log_close(&l);

    /* a second run in the same second: its own folder */
    snprintf(want_dir, sizeof want_dir, "%s/run-%s-1", logging_dir, stamp);
    s.tracker_name = "mine";
    CHECK_OK(train_log_open(&l, &s, wall, &err), &err);
    CHECKF(l.run_dir && strcmp(l.run_dir, want_dir) == 0, "second run folder %s, want %s",
           l.run_dir ? l.run_dir : "none", want_dir);
    snprintf(events_dir, sizeof events_dir, "%s/mine", want_dir);
    CHECK(file_is_dir(events_dir));
    /* an empty run still gets a (frame-only) curve */
    CHECK_OK(train_log_write_curve(&l, &err), &err);
    CHECK(file_exists(l.curve_path));
    train_log_close(&l);

    /* a file where the logging folder should be */
    char file_path[1200];
    snprintf(file_path, sizeof file_path, "%s/plainfile", tmp);
    CHECK(test_write_file(file_path, "x", 1) == 0);
    s.logging_dir = file_path;
    CHECK_FAILS_WITH(train_log_open(&l, &s, wall, &err), &err, "cannot create the folder");
}

static void test_trailing_mean(void) {
    double v[25], mean[25];
    for (int i = 0; i < 25; i++)
        v[i] = (i * 7) % 5;
    loss_plot_trailing_mean(v, 25, mean);
    /* window 25 / 10 = 2 */
    CHECK(mean[0] == v[0]);
    for (int i = 1; i < 25; i++)
        CHECKF(fabs(mean[i] - (v[i] + v[i - 1]) / 2) < 1e-12, "mean[%d] = %g", i, mean[i]);
}

static void test_tracker_config(const char *tmp) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tracker.toml", tmp);
    const char *good = "[tensorboard]\nfilename_suffix = \".sdti\"\nflush_secs = 30\n\n"
                       "[wandb]\nname = \"x\"\n";
    CHECK(test_write_file(path, good, strlen(good)) == 0);
    TrainLogSettings s = {0};
    Error err = {{0}};
    CHECK_OK(train_log_read_tracker_config(path, &s, &err), &err);
    CHECK(strcmp(s.filename_suffix, ".sdti") == 0);
    const struct {
        const char *text, *needle;
    } bad[] = {
        {"[tensorboard]\nlog_dir = \"x\"\n", "not an argument of TensorBoard's SummaryWriter"},
        {"[tensorboard]\npurge_step = 3\n", "purge_step is not supported"},
        {"[tensorboard]\nfilename_suffix = 3\n", "expected a string"},
        {"tensorboard = 1\n", "expected a table"},
        {"[tensorboard\n", "tracker.toml:1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(test_write_file(path, bad[i].text, strlen(bad[i].text)) == 0);
        TrainLogSettings b = {0};
        CHECK_FAILS_WITH(train_log_read_tracker_config(path, &b, &err), &err, bad[i].needle);
    }
}

int main(void) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_log"));
    test_reference_bytes();
    test_writer_read_back(tmp);
    test_train_log(tmp);
    test_trailing_mean();
    test_tracker_config(tmp);
    return test_finish();
}
