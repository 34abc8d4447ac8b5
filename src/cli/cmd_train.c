/* sdti train: kohya's train_textual_inversion.py options, parsed and checked. The training
 * loop is not wired to the models yet; this says so after the options pass. */
#include <stdio.h>
#include <strings.h>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/train_options.h"

static LogLevel log_level_of(const char *name) {
    if (!name || strcasecmp(name, "INFO") == 0)
        return LOG_INFO;
    if (strcasecmp(name, "DEBUG") == 0)
        return LOG_DEBUG;
    if (strcasecmp(name, "WARNING") == 0)
        return LOG_WARNING;
    return LOG_ERROR; /* ERROR, CRITICAL */
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
    fprintf(stderr,
            "sdti train: the options are valid (optimizer %s, lr scheduler %s, %ld steps), but "
            "the training loop is not wired to the models yet.\n",
            optimizer_kind_name(o.optimizer.kind), o.lr_scheduler, o.max_train_steps);
    rc = 2;
done:
    train_options_free(&o);
    return rc;
}
