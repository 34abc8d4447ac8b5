/* Whole-file reading, memory mapping and atomic writes (temp name + rename, so a crash never
 * leaves a half-written file under the final name). */
#ifndef SDTI_BASE_FILE_UTIL_H
#define SDTI_BASE_FILE_UTIL_H

#include <stdio.h>
#include <stddef.h>
#include <stdbool.h>

#include "base/error.h"

/* Reads the whole file into a malloc'd, NUL-terminated buffer. */
int file_read_all(const char *path, char **out_data, size_t *out_size, Error *err);

/* Maps the whole file read-only. An empty file maps to (NULL, 0). */
int file_map(const char *path, const void **out_data, size_t *out_size, Error *err);
void file_unmap(const void *data, size_t size);

bool file_exists(const char *path);
bool file_is_dir(const char *path);

/* mkdir -p: makes `path` and every missing folder above it (as Python's os.makedirs with
 * exist_ok=True). The error names the component that could not be made and why. */
int file_make_dirs(const char *path, Error *err);

/* An output file written under "<path>.tmp-<pid>" and renamed over `path` on commit. */
typedef struct AtomicFile {
    FILE *fp;
    char *final_path;
    char *temp_path;
} AtomicFile;

int atomic_file_open(AtomicFile *af, const char *path, Error *err);
/* Flushes, fsyncs and renames; closes the file either way. */
int atomic_file_commit(AtomicFile *af, Error *err);
/* Closes and deletes the temp file (safe to call after a failed commit or twice). */
void atomic_file_abort(AtomicFile *af);

/* Joins two path parts with one '/'. Returns a malloc'd string. */
char *path_join(const char *a, const char *b);
/* Returns a pointer to the final component of `path` (inside `path`). */
const char *path_basename(const char *path);
/* True when `path` ends with `suffix`, ignoring ASCII case. */
bool path_has_suffix(const char *path, const char *suffix);

#endif
