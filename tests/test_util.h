/* A minimal test harness: CHECK records a failure with file and line and goes on; the
 * program ends with "N passed, N failed" and a non-zero exit when anything failed. */
#ifndef SDTI_TEST_UTIL_H
#define SDTI_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

void test_check(bool ok, const char *expr, const char *file, int line);
void test_checkf(bool ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int test_finish(void);

/* A scratch directory for this test (created fresh): $SDTI_TMP/<name>. */
const char *test_tmp_dir(const char *test_name);
/* Path of a committed fixture file: SDTI_FIXTURES "/" rel. Returned buffer is static. */
const char *test_fixture(const char *rel);
/* Writes bytes to a file; returns 0 on success. */
int test_write_file(const char *path, const void *data, size_t size);
/* Runs a shell command, capturing stdout+stderr into a malloc'd string; returns exit code. */
int test_run(const char *cmd, char **output);

struct TensorSet;
/* The float32 copy (malloc'd) of tensor `name` in `set`, any dtype widened; NULL when absent
 * or unreadable. *n gets its element count when n is not NULL. */
float *test_load_f32(const struct TensorSet *set, const char *name, size_t *n);
/* The tests' error measure against a reference: max|ours - ref| / max|ref| (plain max|d| when
 * the reference is all zeros); any NaN gives infinity, so it can never pass a tolerance. */
double test_max_rel_err(const float *ours, const float *ref, size_t n);
/* Our 8-bit RGB image [h, w, 3] against a reference PNG: the fraction of bytes that differ by
 * more than one grey level (1.0 when the PNG is unreadable or of another size, which is also
 * recorded as a failure when unreadable); *max_diff gets the largest difference (256 then). */
double test_png_mismatch(const unsigned char *ours, const char *ref_path, int w, int h,
                         int *max_diff);

#define CHECK(cond)       test_check((cond), #cond, __FILE__, __LINE__)
#define CHECKF(cond, ...) test_checkf((cond), __FILE__, __LINE__, __VA_ARGS__)
/* A call that must succeed: prints the error message otherwise. */
#define CHECK_OK(call, err)                                                                        \
    test_checkf((call) == 0, __FILE__, __LINE__, "%s failed: %s", #call, (err)->message)
/* A call that must fail with a message containing `needle`. */
#define CHECK_FAILS_WITH(call, err, needle)                                                        \
    test_check_fails((call), (err), (needle), #call, __FILE__, __LINE__)
void test_check_fails(int rc, const Error *err, const char *needle, const char *expr,
                      const char *file, int line);

#endif
