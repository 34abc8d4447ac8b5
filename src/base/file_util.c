#define _POSIX_C_SOURCE 200809L
#include "base/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, char **out_data, size_t *out_size, Error *err) {
    *out_data = NULL;
    *out_size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, size = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(fp);
        return error_set(err, "%s: out of memory", path);
    }
    for (;;) {
        size_t n = fread(buf + size, 1, cap - size, fp);
        size += n;
        if (size < cap) {
            if (ferror(fp)) {
                free(buf);
                fclose(fp);
                return error_set(err, "%s: read error: %s", path, strerror(errno));
            }
            break;
        }
        char *grown = realloc(buf, cap * 2 + 1);
        if (!grown) {
            free(buf);
            fclose(fp);
            return error_set(err, "%s: out of memory reading the file", path);
        }
        buf = grown;
        cap *= 2;
    }
    fclose(fp);
    buf[size] = '\0';
    *out_data = buf;
    *out_size = size;
    return 0;
}

int file_map(const char *path, const void **out_data, size_t *out_size, Error *err) {
    *out_data = NULL;
    *out_size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return error_set(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return error_set(err, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return error_set(err, "%s: cannot map: %s", path, strerror(errno));
    *out_data = p;
    *out_size = (size_t)st.st_size;
    return 0;
}

void file_unmap(const void *data, size_t size) {
    if (data && size)
        munmap((void *)data, size);
}

bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int file_make_dirs(const char *path, Error *err) {
    char *p = strdup(path);
    if (!p)
        return error_set(err, "%s: out of memory", path);
    size_t n = strlen(p);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0) {
            int e = errno;
            if (!(e == EEXIST && file_is_dir(p)))
                rc = error_set(err, "%s: cannot create the folder %s: %s", path, p,
                               e == EEXIST ? "a file has that name" : strerror(e));
        }
        p[i] = saved;
    }
    free(p);
    return rc;
}

int atomic_file_open(AtomicFile *af, const char *path, Error *err) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->final_path = strdup(path);
    af->temp_path = malloc(n);
    if (!af->final_path || !af->temp_path) {
        atomic_file_abort(af);
        return error_set(err, "%s: out of memory", path);
    }
    snprintf(af->temp_path, n, "%s.tmp-%ld", path, (long)getpid());
    af->fp = fopen(af->temp_path, "wb");
    if (!af->fp) {
        int e = errno;
        atomic_file_abort(af);
        return error_set(err, "%s: cannot create: %s", path, strerror(e));
    }
    return 0;
}

int atomic_file_commit(AtomicFile *af, Error *err) {
    int rc = 0;
    if (fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0)
        rc = error_set(err, "%s: write failed: %s", af->final_path, strerror(errno));
    if (fclose(af->fp) != 0 && rc == 0)
        rc = error_set(err, "%s: close failed: %s", af->final_path, strerror(errno));
    af->fp = NULL;
    if (rc == 0 && rename(af->temp_path, af->final_path) != 0)
        rc = error_set(err, "%s: cannot rename the finished file into place: %s", af->final_path,
                       strerror(errno));
    if (rc != 0) {
        atomic_file_abort(af);
        return rc;
    }
    free(af->final_path);
    free(af->temp_path);
    memset(af, 0, sizeof *af);
    return 0;
}

void atomic_file_abort(AtomicFile *af) {
    if (af->fp)
        fclose(af->fp);
    if (af->temp_path)
        unlink(af->temp_path);
    free(af->final_path);
    free(af->temp_path);
    memset(af, 0, sizeof *af);
}

char *path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *out = malloc(la + lb + 2);
    if (!out)
        return NULL;
    memcpy(out, a, la);
    size_t pos = la;
    if (la > 0 && a[la - 1] != '/')
        out[pos++] = '/';
    memcpy(out + pos, b, lb + 1);
    return out;
}

const char *path_basename(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

bool path_has_suffix(const char *path, const char *suffix) {
    size_t lp = strlen(path), ls = strlen(suffix);
    return lp >= ls && strcasecmp(path + lp - ls, suffix) == 0;
}
