/* sdti train: kohya's train_textual_inversion.py options, parsed and checked, then the
 * training run (src/train/trainer.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/train_log_config.h"
#include "cli/train_options.h"
#include "train/dist.h"
#include "train/trainer.h"

static LogLevel log_level_of(const char *name) {
    if (!name || strcasecmp(name, "INFO") == 0)
        return LOG_INFO;
    if (strcasecmp(name, "DEBUG") == 0)
        return LOG_DEBUG;
    if (strcasecmp(name, "WARNING") == 0)
        return LOG_WARNING;
    return LOG_ERROR; /* ERROR, CRITICAL */
}

/* Accepted by train_options_finish (kohya has them) but not run by the training loop yet:
 * refused by name, never ignored. */
static const char *const not_run_yet[] = {
    NULL,
};

static int check_loop_supports(const TrainOptions *o, Error *err) {
    for (int i = 0; not_run_yet[i]; i++) {
        const TrainOptionDef *d = train_option_find(not_run_yet[i]);
        if (d && train_option_differs(o, d))
            return error_set(err,
                             "--%s is not supported yet by sdti train (the training loop does "
                             "not run it); leave it out",
                             d->name);
    }
    return 0;
}

/* --num_cpu_threads_per_process N (or =N): accelerate launch's option in kohya's command lines
 * (`accelerate launch --num_cpu_threads_per_process 1 train_textual_inversion.py ...`), here
 * the threads of each rank; taken out of argv before kohya's options are parsed. */
static int take_threads_option(int *argc, char **argv, int *threads, Error *err) {
    static const char name[] = "--num_cpu_threads_per_process";
    size_t len = sizeof name - 1;
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], name, len) != 0 || (argv[i][len] != '\0' && argv[i][len] != '='))
            continue;
        int used = argv[i][len] == '=' ? 1 : 2;
        const char *value =
            argv[i][len] == '=' ? argv[i] + len + 1 : (i + 1 < *argc ? argv[i + 1] : NULL);
        char *end = NULL;
        long v = value ? strtol(value, &end, 10) : 0;
        if (!value || !*value || *end || v < 1 || v > 4096)
            return error_set(err, "%s expects a thread count (a whole number from 1)", name);
        *threads = (int)v;
        for (int k = i; k + used < *argc; k++)
            argv[k] = argv[k + used];
        *argc -= used;
        i--;
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    Error err = {0};
    bool help = false;
    int rc = 1, threads = 0;
    TrainLogConfig log_config = {0};
    train_options_init(&o);
    if (dist_init(&err) != 0) {
        fprintf(stderr, "sdti train: %s\n", err.message);
        goto done;
    }
    /* under mpirun: rank 0 speaks for the job (every rank agrees on errors and has the
     * failing rank's message); the others print errors only */
    bool quiet = dist_rank() != 0;
    if (quiet)
        log_set_level(LOG_ERROR);
    if (take_threads_option(&argc, argv, &threads, &err) != 0 ||
        train_options_parse(&o, argc, argv, &help, &err) != 0) {
        if (!quiet)
            fprintf(stderr, "%s\n", err.message);
        goto done;
    }
    if (help) {
        if (!quiet)
            train_options_print_help();
        rc = 0;
        goto done;
    }
    if (!quiet)
        log_set_level(log_level_of(o.console_log_level));
    if (o.output_config) {
        if (train_options_write_config(&o, &err) != 0) {
            fprintf(stderr, "sdti train: %s\n", err.message);
            goto done;
        }
        printf("sdti train: wrote the options to %s\n", o.config_path);
        rc = 0;
        goto done;
    }
    if (train_options_finish(&o, &err) != 0) {
        fprintf(stderr, "sdti train: %s\n", err.message);
        goto done;
    }
    /* kohya's setup_logging(args, reset=True), after its argument checks: the log goes to the
     * file instead of the console (progress and errors stay on the console) */
    if (o.console_log_file && !quiet && log_set_file(o.console_log_file) != 0) {
        fprintf(stderr, "sdti train: --console_log_file %s: cannot create it: %s\n",
                o.console_log_file, strerror(errno));
        goto done;
    }
    LrSchedulerSettings lr;
    train_options_lr_settings(&o, o.max_train_steps, &lr);
    if (o.log_config) { /* kohya's get_sanitized_config_or_none, for the TensorBoard log */
        if (train_log_config_build(&o, &log_config, &err) != 0) {
            fprintf(stderr, "sdti train: %s\n", err.message);
            goto done;
        }
        o.log_config_values = log_config.items;
        o.log_config_count = log_config.count;
    }
    if (check_loop_supports(&o, &err) != 0 || trainer_run(&o, &lr, threads, &err) != 0) {
        if (!quiet)
            fprintf(stderr, "sdti train: %s\n", err.message);
        goto done;
    }
    rc = 0;
done:
    log_close_file();
    dist_finalize();
    train_log_config_free(&log_config);
    train_options_free(&o);
    return rc;
}
