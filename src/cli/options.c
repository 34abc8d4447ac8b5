#define _POSIX_C_SOURCE 200809L
#include "cli/options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static OptionSpec *find_option(CommandSpec *cmd, const char *name, size_t len) {
    for (int i = 0; i < cmd->option_count; i++) {
        OptionSpec *o = &cmd->options[i];
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

static int parse_value(CommandSpec *cmd, OptionSpec *o, const char *value, Error *err) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end)
            return error_set(err, "sdti %s: --%s expects an integer, got '%s'", cmd->name, o->name,
                             value);
        *(long *)o->target = v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            return error_set(err, "sdti %s: --%s expects a number, got '%s'", cmd->name, o->name,
                             value);
        *(double *)o->target = v;
        return 0;
    }
    case OPT_STRING:
        if (o->choices) {
            bool ok = false;
            for (const char *const *c = o->choices; *c; c++)
                ok = ok || strcmp(*c, value) == 0;
            if (!ok) {
                char list[512] = "";
                for (const char *const *c = o->choices; *c; c++) {
                    strncat(list, *c, sizeof list - strlen(list) - 3);
                    if (c[1])
                        strncat(list, ", ", sizeof list - strlen(list) - 1);
                }
                return error_set(err, "sdti %s: --%s: '%s' is not one of: %s", cmd->name, o->name,
                                 value, list);
            }
        }
        *(const char **)o->target = value;
        return 0;
    default:
        return error_set(err, "sdti %s: --%s takes no value", cmd->name, o->name);
    }
}

static int list_append(StringList *list, const char *value, Error *err) {
    const char **items = realloc(list->items, (size_t)(list->count + 1) * sizeof *items);
    if (!items)
        return error_set(err, "out of memory");
    items[list->count++] = value;
    list->items = items;
    return 0;
}

int options_parse(CommandSpec *cmd, int argc, char **argv, const char **positional,
                  int *positional_count, bool *wants_help, Error *err) {
    *positional_count = 0;
    *wants_help = false;
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_positional && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)) {
            *wants_help = true;
            return 0;
        }
        if (!only_positional && strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (only_positional || strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (cmd->max_positional >= 0 && *positional_count >= cmd->max_positional)
                return error_set(err, "sdti %s: unexpected argument '%s' (see sdti %s --help)",
                                 cmd->name, arg, cmd->name);
            positional[(*positional_count)++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        OptionSpec *o = find_option(cmd, name, len);
        if (!o)
            return error_set(err, "sdti %s: unknown option '--%.*s' (see sdti %s --help)",
                             cmd->name, (int)len, name, cmd->name);
        o->seen = true;
        if (o->type == OPT_FLAG) {
            if (eq)
                return error_set(err, "sdti %s: --%s is a flag and takes no value", cmd->name,
                                 o->name);
            *(bool *)o->target = true;
            continue;
        }
        if (o->type == OPT_LIST) {
            StringList *list = o->target;
            if (eq && list_append(list, eq + 1, err) != 0)
                return -1;
            while (!eq && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                if (list_append(list, argv[++i], err) != 0)
                    return -1;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc)
                return error_set(err, "sdti %s: --%s needs a value", cmd->name, o->name);
            value = argv[++i];
        }
        if (parse_value(cmd, o, value, err) != 0)
            return -1;
    }
    if (*positional_count < cmd->min_positional)
        return error_set(err, "sdti %s: missing argument (usage: %s)", cmd->name, cmd->usage);
    return 0;
}

void options_print_help(const CommandSpec *cmd) {
    printf("usage: %s\n\n%s\n\noptions:\n", cmd->usage, cmd->summary);
    for (int i = 0; i < cmd->option_count; i++) {
        const OptionSpec *o = &cmd->options[i];
        static const char *const metavar[] = {"", " N", " X", " S", " S..."};
        char left[96];
        snprintf(left, sizeof left, "--%s%s", o->name, metavar[o->type]);
        printf("  %-34s %s", left, o->help);
        if (o->choices) {
            printf(" (");
            for (const char *const *c = o->choices; *c; c++)
                printf("%s%s", *c, c[1] ? "|" : ")");
        }
        printf("\n");
    }
    printf("  %-34s %s\n", "-h, --help", "show this help");
}

void string_list_free(StringList *list) {
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

bool options_parse_command(CommandSpec *cmd, int argc, char **argv, const char **positional,
                           int *positional_count, int *exit_code) {
    bool help = false;
    Error err = {{0}};
    if (options_parse(cmd, argc, argv, positional, positional_count, &help, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        *exit_code = 2;
        return false;
    }
    if (help) {
        options_print_help(cmd);
        *exit_code = 0;
        return false;
    }
    return true;
}
