/* Subcommands that are planned but not built yet: they answer --help and say so clearly. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static int not_yet(const char *name, const char *what, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: sdti %s [options]\n\n%s\n\nThis command is not built yet.\n", name,
                   what);
            return 0;
        }
    }
    fprintf(stderr, "sdti %s: not built yet (%s). Use `sdti inspect` meanwhile.\n", name, what);
    return 2;
}

int cmd_generate(int argc, char **argv) {
    return not_yet("generate", "txt2img with TI embeddings, gen_img_diffusers options", argc, argv);
}
