/* One entry point per subcommand; each returns the process exit code. */
#ifndef SDTI_CLI_COMMANDS_H
#define SDTI_CLI_COMMANDS_H

int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_forward(int argc, char **argv);

#endif
