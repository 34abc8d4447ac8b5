// labels: cli
/* kill -9 and --resume, for real: `sdti train --save_state --save_every_n_steps 3` on the tiny
 * SD1 fixture model is started with posix_spawn and SIGKILLed as soon as its step-6 state
 * folder exists; the run resumed from the last state it saved must end with an embedding equal
 * byte for byte to an uninterrupted run's. Also: every file the killed run left under its
 * final name is whole (embeddings load, state folders hold both files), and after the resumed
 * run no temporary or moved-aside file is left (the killed run's, and a planted one of another
 * dead process, are removed). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "text/embedding_file.h"
#include "train_support.h"

extern char **environ;

#define STEPS "30"

static bool same_bytes(const char *a, const char *b) {
    char *da = NULL, *db = NULL;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = false;
    if (fa && fb) {
        fseek(fa, 0, SEEK_END);
        fseek(fb, 0, SEEK_END);
        long na = ftell(fa), nb = ftell(fb);
        rewind(fa);
        rewind(fb);
        da = malloc((size_t)na + 1);
        db = malloc((size_t)nb + 1);
        same = da && db && na == nb && na > 0 && fread(da, 1, (size_t)na, fa) == (size_t)na &&
               fread(db, 1, (size_t)nb, fb) == (size_t)nb && memcmp(da, db, (size_t)na) == 0;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    free(da);
    free(db);
    return same;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A pid that is not running any more (a child that has exited and been reaped). */
static pid_t dead_pid(void) {
    pid_t pid = 0;
    char *argv[] = {"true", NULL};
    if (posix_spawnp(&pid, "true", NULL, NULL, argv, environ) != 0)
        return 0;
    waitpid(pid, NULL, 0);
    return pid;
}

/* Entries of dir whose names hold ".tmp-" or ".old-", as one string (malloc'd). */
static char *leftovers(const char *dir) {
    char *list = calloc(1, 8192);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (list && d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp-") || strstr(e->d_name, ".old-")) {
            strncat(list, e->d_name, 8000 - strlen(list));
            strncat(list, " ", 8000 - strlen(list));
        }
    if (d)
        closedir(d);
    return list;
}

/* Every embedding and state folder the killed run left under its final name is whole;
 * returns the step of the last state folder (0 if none). */
static int check_whole_and_last_state(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int last = 0, embeddings = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".tmp-") || strstr(e->d_name, ".old-") || e->d_name[0] == '.')
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int step = 0;
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".pt") == 0) {
            Embedding emb;
            embedding_init(&emb);
            Error err = {{0}};
            CHECKF(embedding_load(path, &emb, &err) == 0 && emb.num_vectors == 2 && emb.dim == 8,
                   "%s left half-written: %s", path, err.message);
            embedding_free(&emb);
            embeddings++;
        } else if (sscanf(e->d_name, "kill-step%d-state", &step) == 1) {
            char f[1500];
            snprintf(f, sizeof f, "%s/state.safetensors", path);
            CHECKF(train_support_exists(f), "%s missing", f);
            snprintf(f, sizeof f, "%s/state.json", path);
            CHECKF(train_support_exists(f), "%s missing", f);
            if (step > last)
                last = step;
        }
    }
    if (d)
        closedir(d);
    printf("the killed run left %d embeddings and states up to step %d\n", embeddings, last);
    return last;
}

int main(void) {
    if (!getenv("SDTI_BIN"))
        return 0;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    char tmp[512], data[1024], dir[1100], full[1100], killed[1100], args[4096], path[1400];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("train_kill"));
    snprintf(dir, sizeof dir, "%s/data/1_thing", tmp);
    train_support_make_images(dir, 4, "mytok, a red thing, on a table, photo");
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(full, sizeof full, "%s/full", tmp);
    snprintf(killed, sizeof killed, "%s/killed", tmp);
    const char *common = "--train_data_dir %s --caption_extension .txt --resolution 64 "
                         "--token_string mytok --init_word cat --num_vectors_per_token 2 "
                         "--learning_rate 5e-2 --flip_aug --shuffle_caption --seed 11 "
                         "--max_train_steps " STEPS " --save_every_n_steps 3 --save_state "
                         "--output_name kill --output_dir %s";

    /* the uninterrupted run */
    snprintf(args, sizeof args, common, data, full);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "uninterrupted run failed (%d): %s", rc, log ? log : "");
    free(log);

    /* the run that is killed: spawned directly (no shell), output to a log file */
    char model[1024], logfile[1200];
    snprintf(model, sizeof model, "%s", test_fixture(TRAIN_SUPPORT_MODEL));
    snprintf(logfile, sizeof logfile, "%s/killed.log", tmp);
    char *argv[] = {"sdti",
                    "train",
                    "--pretrained_model_name_or_path",
                    model,
                    "--train_data_dir",
                    data,
                    "--caption_extension",
                    ".txt",
                    "--resolution",
                    "64",
                    "--token_string",
                    "mytok",
                    "--init_word",
                    "cat",
                    "--num_vectors_per_token",
                    "2",
                    "--learning_rate",
                    "5e-2",
                    "--flip_aug",
                    "--shuffle_caption",
                    "--seed",
                    "11",
                    "--max_train_steps",
                    STEPS,
                    "--save_every_n_steps",
                    "3",
                    "--save_state",
                    "--output_name",
                    "kill",
                    "--output_dir",
                    killed,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, logfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    rc = posix_spawn(&pid, getenv("SDTI_BIN"), &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    CHECKF(rc == 0, "posix_spawn %s: %s", getenv("SDTI_BIN"), strerror(rc));
    if (rc != 0)
        return test_finish();
    /* poll for the step-6 state (renamed into place whole), then SIGKILL */
    snprintf(path, sizeof path, "%s/kill-step00000006-state", killed);
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 60000 && !train_support_exists(path); i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        sleep_ms(1);
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECKF(!exited && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
           "the run was not killed (it %s); see %s", exited ? "ended first" : "did not die",
           logfile);
    snprintf(path, sizeof path, "%s/kill.pt", killed);
    CHECKF(!train_support_exists(path), "the killed run finished: %s exists", path);
    int last = check_whole_and_last_state(killed);
    CHECKF(last >= 6 && last < 30, "last state at step %d", last);
    char *left = leftovers(killed);
    printf("temporary files the kill left: %s\n", left && *left ? left : "none");
    free(left);

    /* a leftover of another dead run, planted: a half-written state folder and embedding */
    pid_t gone = dead_pid();
    CHECK(gone > 0);
    snprintf(path, sizeof path, "%s/kill-step00000099-state.tmp-%ld", killed, (long)gone);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/kill-step00000099-state.tmp-%ld/state.safetensors", killed,
             (long)gone);
    CHECK(test_write_file(path, "half", 4) == 0);
    snprintf(path, sizeof path, "%s/kill-step00000099.pt.tmp-%ld", killed, (long)gone);
    CHECK(test_write_file(path, "half", 4) == 0);

    /* resume from the last state */
    char extra[1400];
    snprintf(args, sizeof args, common, data, killed);
    snprintf(extra, sizeof extra, " --resume %s/kill-step%08d-state", killed, last);
    strncat(args, extra, sizeof args - strlen(args) - 1);
    rc = train_support_run(args, &log);
    CHECKF(rc == 0, "resumed run failed (%d): %s", rc, log ? log : "");
    free(log);
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/kill.pt", full);
    snprintf(b, sizeof b, "%s/kill.pt", killed);
    CHECKF(same_bytes(a, b), "killed at step %d and resumed: %s differs from %s", last, b, a);
    snprintf(a, sizeof a, "%s/kill-step%08d.pt", full, 27);
    snprintf(b, sizeof b, "%s/kill-step%08d.pt", killed, 27);
    CHECKF(same_bytes(a, b), "step 27: %s differs from %s", b, a);
    left = leftovers(killed);
    CHECKF(left && *left == '\0', "left in %s after the resumed run: %s", killed, left ? left : "");
    free(left);
    return test_finish();
}
