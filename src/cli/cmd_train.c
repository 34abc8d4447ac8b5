/* sdti train: kohya's train_textual_inversion.py options, parsed and checked, then the
 * training run (src/train/trainer.h). */
#include <stdio.h>
#include <strings.h>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/train_options.h"
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
    "console_log_file",
    "log_config",
    "sample_every_n_steps",
    "sample_every_n_epochs",
    "sample_at_first",
    "masked_loss",
    "alpha_mask",
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

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    Error err = {0};
    bool help = false;
    int rc = 1;
    train_options_init(&o);
    if (train_options_parse(&o, argc, argv, &help, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        goto done;
    }
    if (help) {
        train_options_print_help();
        rc = 0;
        goto done;
    }
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
    LrSchedulerSettings lr;
    train_options_lr_settings(&o, o.max_train_steps, &lr);
    if (check_loop_supports(&o, &err) != 0 || trainer_run(&o, &lr, 0, &err) != 0) {
        fprintf(stderr, "sdti train: %s\n", err.message);
        goto done;
    }
    rc = 0;
done:
    train_options_free(&o);
    return rc;
}
