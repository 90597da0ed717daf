/*
** cli.h -- shared declarations of the petrel command-line front end.  The
** CLI uses only the public header; each verb lives in cmd_<verb>.c.
*/
#ifndef PETREL_CLI_H
#define PETREL_CLI_H

#include "petrel.h"

int cmd_run(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* Print "petrel: <msg>" to stderr and return exit code 1. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* PETREL_CLI_H */
