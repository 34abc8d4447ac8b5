#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include "formats/image.h"
#include "formats/tensor_set.h"

#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int passed, failed;

void test_check(bool ok, const char *expr, const char *file, int line) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "FAIL %s:%d: %s\n", file, line, expr);
}

void test_checkf(bool ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void test_check_fails(int rc, const Error *err, const char *needle, const char *expr,
                      const char *file, int line) {
    if (rc == 0) {
        test_checkf(false, file, line, "%s succeeded, expected an error containing '%s'", expr,
                    needle);
        return;
    }
    test_checkf(strstr(err->message, needle) != NULL, file, line,
                "%s: error '%s' does not contain '%s'", expr, err->message, needle);
}

int test_finish(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

const char *test_tmp_dir(const char *test_name) {
    static char path[4096];
    const char *base = getenv("SDTI_TMP");
    snprintf(path, sizeof path, "%s/%s", base ? base : "/tmp", test_name);
    char cmd[2 * sizeof path + 64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot create %s\n", path);
    return path;
}

const char *test_fixture(const char *rel) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", SDTI_FIXTURES, rel);
    return path;
}

int test_write_file(const char *path, const void *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t n = fwrite(data, 1, size, fp);
    return (fclose(fp) == 0 && n == size) ? 0 : -1;
}

int test_run(const char *cmd, char **output) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *g = realloc(buf, cap * 2);
            if (!g)
                break;
            buf = g;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = '\0';
    int status = pclose(p);
    if (output)
        *output = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

float *test_load_f32(const TensorSet *set, const char *name, size_t *n) {
    const NamedTensor *t = tensor_set_find(set, name);
    if (!t)
        return NULL;
    size_t numel = (size_t)tensor_numel(t);
    float *out = malloc((numel ? numel : 1) * sizeof *out);
    Error err;
    if (!out || tensor_to_f32(t, out, &err) != 0) {
        free(out);
        return NULL;
    }
    if (n)
        *n = numel;
    return out;
}

double test_max_rel_err(const float *ours, const float *ref, size_t n) {
    double dmax = 0.0, rmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - (double)ref[i]);
        if (isnan(d))
            return INFINITY;
        if (d > dmax)
            dmax = d;
        if (fabs((double)ref[i]) > rmax)
            rmax = fabs((double)ref[i]);
    }
    return rmax > 0.0 ? dmax / rmax : dmax;
}

double test_png_mismatch(const unsigned char *ours, const char *ref_path, int w, int h,
                         int *max_diff) {
    Image ref = {0};
    Error err = {{0}};
    ImageLoadOptions lo = {0};
    *max_diff = 256;
    if (image_load_file(ref_path, &lo, &ref, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return 1.0;
    }
    double bad = 1.0;
    if (ref.width == w && ref.height == h && ref.channels == 3) {
        size_t n = (size_t)w * h * 3, off = 0;
        int worst = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)ours[i] - (int)ref.pixels[i]);
            off += d > 1;
            worst = d > worst ? d : worst;
        }
        bad = (double)off / (double)n;
        *max_diff = worst;
    }
    image_free(&ref);
    return bad;
}
