/* sg_cli_run.h — the batch commands: `sgps validate MANIFEST` and
 * `[mpirun -n P] sgps run MANIFEST`. Declared here until sg_cli.h lists them. */
#ifndef SG_CLI_RUN_H
#define SG_CLI_RUN_H

int sg_cmd_run(int argc, char **argv);
int sg_cmd_validate(int argc, char **argv);

#endif
