/* sdti inspect PATH: placeholder until model loading lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sdti inspect: not built yet\n");
    return 2;
}
