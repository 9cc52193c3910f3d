/* sg_cli.h — the subcommands of the sgps binary. Each takes the arguments
 * after its name (argv[0] is the command name) and returns the process exit
 * status. Every command answers --help. */
#ifndef SG_CLI_H
#define SG_CLI_H

#include "sg_core.h"

typedef struct sg_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} sg_command;

/* Defined in the sg_cmd_*.c files. */
int sg_cmd_pack(int argc, char **argv);
int sg_cmd_shards(int argc, char **argv);
int sg_cmd_train_engine(int argc, char **argv);
int sg_cmd_synth(int argc, char **argv);
int sg_cmd_eval_fewshot(int argc, char **argv);
int sg_cmd_adapt_engine(int argc, char **argv);
int sg_cmd_classify(int argc, char **argv);
int sg_cmd_selftest(int argc, char **argv);
int sg_cmd_validate(int argc, char **argv);
int sg_cmd_run(int argc, char **argv);
int sg_cmd_submit(int argc, char **argv);

/* Helpers shared by the commands. */
int sg_cli_is_help(const char *arg);
/* Parses a long option: returns 1 and sets *val when argv[*i] is `--name`
 * followed by a value or `--name=value`; advances *i. */
int sg_cli_opt(int argc, char **argv, int *i, const char *name, const char **val);
/* Numbers as typed: decimal, no leading space or '+'; an integer in [lo, hi];
 * a float finite (no nan or inf). 0 when s is not one. */
int sg_cli_parse_int(const char *s, long lo, long hi, long *out);
/* The message for an argument the loop did not accept; i0 is where the
 * argument began (i > i0: the option argv[i0] took the bad value argv[i]).
 * Returns 2, the exit status for bad arguments. */
int sg_cli_bad_arg(const char *cmd, char **argv, int i0, int i);
int sg_cli_parse_float(const char *s, double *out);
/* Whether a file can be created beside path (its folder exists and is
 * writable): checked before long work whose result goes there. 0 ok, else 1
 * with the reason in err. */
int sg_cli_check_writable(const char *path, sg_err *err);

extern const char *sg_git_hash;

#endif
