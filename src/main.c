/* sdti: Stable Diffusion Textual Inversion in C. Dispatches to the subcommands in cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "train/dist.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} COMMANDS[] = {
    {"train", cmd_train, "textual inversion training (kohya train_textual_inversion.py options)"},
    {"generate", cmd_generate, "txt2img with embeddings (kohya gen_img_diffusers.py options)"},
    {"tokenize", cmd_tokenize, "prompt -> CLIP token ids"},
    {"inspect", cmd_inspect, "what a model, embedding or dataset config is"},
    {"convert", cmd_convert, "convert an embedding between A1111, kohya and diffusers formats"},
    {"forward", cmd_forward, "run one model component on tensors from a file (parity checks)"},
};

static void print_usage(FILE *out) {
    fprintf(out, "usage: sdti <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\n`sdti <command> --help` lists a command's options.\n"
                 "  --version  print the version and build features\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("sdti %s\n", SDTI_VERSION);
        printf("features: safetensors, torch zip + legacy checkpoints, diffusers folders\n");
        printf("mpi: %s\n", dist_built_with_mpi()
                                ? "yes (data-parallel `mpirun -np N sdti train`)"
                                : "no (built without MPI: sdti train runs in one process)");
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(name, COMMANDS[i].name) == 0)
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sdti: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return 2;
}
