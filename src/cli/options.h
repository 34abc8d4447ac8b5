/* Long options from one table per subcommand. The same table parses `--opt=value` and
 * `--opt value` and prints --help, so the two can never disagree. */
#ifndef SDTI_CLI_OPTIONS_H
#define SDTI_CLI_OPTIONS_H

#include <stdbool.h>

#include "base/error.h"

typedef enum OptionType {
    OPT_FLAG,   /* bool, no value */
    OPT_INT,    /* long */
    OPT_FLOAT,  /* double */
    OPT_STRING, /* const char * (points into argv) */
    OPT_LIST,   /* nargs='*': StringList, values until the next --option */
} OptionType;

typedef struct StringList {
    const char **items;
    int count;
} StringList;

typedef struct OptionSpec {
    const char *name; /* without the leading "--" */
    OptionType type;
    void *target; /* bool *, long *, double *, const char **, StringList * */
    const char *help;
    const char *const *choices; /* NULL-terminated allowed values for OPT_STRING, or NULL */
    bool seen;                  /* set by the parser */
} OptionSpec;

typedef struct CommandSpec {
    const char *name;    /* "inspect" */
    const char *usage;   /* "sdti inspect [options] PATH" */
    const char *summary; /* one paragraph */
    OptionSpec *options;
    int option_count;
    int min_positional, max_positional; /* max -1: unbounded */
} CommandSpec;

/* Parses argv (argv[0] is the subcommand name). Positional arguments are collected into
 * positional (argv pointers) and counted. Sets *wants_help for -h/--help. */
int options_parse(CommandSpec *cmd, int argc, char **argv, const char **positional,
                  int *positional_count, bool *wants_help, Error *err);
void options_print_help(const CommandSpec *cmd);
/* options_parse plus what every command does with its outcome: a parse error is printed to
 * stderr (exit code 2), --help prints the help (exit code 0). Returns true when the command
 * should go on; otherwise the command returns *exit_code. */
bool options_parse_command(CommandSpec *cmd, int argc, char **argv, const char **positional,
                           int *positional_count, int *exit_code);
void string_list_free(StringList *list);

#endif
