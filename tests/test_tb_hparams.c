// labels: unit golden
/* --log_config's TensorBoard hparams (src/train/tb_hparams.c) against torch's add_hparams
 * (tools/reference/make_tb_hparams_fixtures.py): the three events for a dict with every value
 * kind kohya's sanitized config holds (bool, int, float, str, None) equal the fixture's bytes
 * (framing, CRCs, protobufs; map entries in deterministic order); Python's repr of floats
 * (the str(time.time()) folder names) matches for every fixture case; tb_hparams_write makes
 * the time-named folder with one event file: the file_version event, then those bytes. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "test_util.h"
#include "train/tb_events.h"
#include "train/tb_hparams.h"

int main(void) {
    FILE *f = fopen(test_fixture("train_log/hparams_cases.txt"), "r");
    CHECKF(f != NULL, "cannot open %s", test_fixture("train_log/hparams_cases.txt"));
    if (!f)
        return test_finish();
    TbHParam params[64];
    char names[64][128], strings[64][256];
    int n = 0, reprs = 0;
    double wall = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char name[128], kind[16], value[512] = "";
        if (strncmp(line, "wall ", 5) == 0) {
            wall = strtod(line + 5, NULL);
        } else if (strncmp(line, "repr ", 5) == 0) {
            char *end;
            double x = strtod(line + 5, &end);
            char got[64];
            tb_py_float_repr(x, got, sizeof got);
            CHECKF(strcmp(got, end + 1) == 0, "repr of %s: '%s', Python '%s'", line + 5, got,
                   end + 1);
            reprs++;
        } else if (sscanf(line, "hparam %127s %15s", name, kind) == 2 && n < 64) {
            const char *v = line + 7 + strlen(name) + 1 + strlen(kind);
            if (*v == ' ')
                v++;
            snprintf(value, sizeof value, "%s", v);
            if (strcmp(kind, "none") == 0)
                continue; /* torch's hparams skips None */
            snprintf(names[n], sizeof names[n], "%s", name);
            params[n].name = names[n];
            if (strcmp(kind, "str") == 0) {
                snprintf(strings[n], sizeof strings[n], "%s", value);
                params[n].kind = TB_HPARAM_STRING;
                params[n].string = strings[n];
            } else {
                params[n].kind = TB_HPARAM_NUMBER; /* bool and int are Python ints */
                params[n].number = strtod(value, NULL);
            }
            n++;
        }
    }
    fclose(f);
    CHECKF(n >= 10 && reprs >= 10 && wall > 0, "fixture: %d hparams, %d reprs", n, reprs);

    char *ref = NULL;
    uint8_t *got = NULL;
    size_t ref_size = 0, got_size = 0;
    Error err = {{0}};
    CHECK_OK(file_read_all(test_fixture("train_log/hparams.bin"), &ref, &ref_size, &err), &err);
    CHECK_OK(tb_hparams_encode(params, n, wall, &got, &got_size, &err), &err);
    size_t first = 0;
    while (first < got_size && first < ref_size && got[first] == (uint8_t)ref[first])
        first++;
    CHECKF(got && ref && got_size == ref_size && first == ref_size,
           "hparams events: %zu bytes, torch %zu; first difference at byte %zu", got_size, ref_size,
           first);

    /* the folder and file tb_hparams_write makes */
    const char *tmp = test_tmp_dir("test_tb_hparams");
    char *folder = NULL;
    CHECK_OK(tb_hparams_write(tmp, params, n, wall, &folder, &err), &err);
    char want[1200];
    snprintf(want, sizeof want, "%s/1796315716.625", tmp);
    CHECKF(folder && strcmp(folder, want) == 0, "folder %s, want %s", folder ? folder : "(none)",
           want);
    DIR *d = folder ? opendir(folder) : NULL;
    int files = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        files++;
        size_t nl = strlen(e->d_name);
        CHECKF(strncmp(e->d_name, "events.out.tfevents.1796315716.", 31) == 0 &&
                   strcmp(e->d_name + nl - 2, ".1") == 0,
               "event file name %s", e->d_name);
        char path[2400];
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        char *file = NULL;
        size_t size = 0;
        CHECK_OK(file_read_all(path, &file, &size, &err), &err);
        uint8_t version[TB_MAX_EVENT], record[TB_MAX_RECORD];
        size_t nv = tb_frame_record(record, version, tb_encode_version_event(version, wall));
        CHECKF(file && size == nv + ref_size && memcmp(file, record, nv) == 0 &&
                   memcmp(file + nv, ref, ref_size) == 0,
               "%s: not the version event followed by the hparams events", path);
        free(file);
    }
    if (d)
        closedir(d);
    CHECKF(files == 1, "%d files in %s", files, folder ? folder : "(none)");
    free(folder);
    free(ref);
    free(got);
    return test_finish();
}
