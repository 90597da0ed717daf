/*
** cli.h -- shared declarations of the petrel command-line front end.  The
** CLI uses only the public header; each verb lives in cmd_<verb>.c.
*/
#ifndef PETREL_CLI_H
#define PETREL_CLI_H

#include "petrel.h"
#include "petrel_llm.h"

int cmd_run(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Flags shared by `generate` and `chat` (llm_flags.c). */
typedef struct cli_llm_flags {
    const char *model;                /* -m */
    const char *backend;              /* --backend, "cpu" by default */
    petrel_sampler_params sampling;   /* --temp, --top-k, ... */
    bool seed_given;                  /* --seed; else a fresh seed per run */
    int32_t max_new;                  /* -n; -1: until EOS or the cache is full */
    int32_t threads;                  /* --threads; 0: one per CPU */
} cli_llm_flags;

/* Parse a --threads value (0: one per CPU); false when it is not one. */
bool cli_parse_threads(const char *v, int32_t *out);

void cli_llm_flags_init(cli_llm_flags *f);
/* Parse argv[*i] when it is a shared flag, advancing *i past its value:
 * 1 = parsed, 0 = not a shared flag, -1 = bad value (message printed). */
int cli_llm_flag(cli_llm_flags *f, const char *verb, int argc, char **argv, int *i);
/* Load the -m model with the flags' backend and sampling (a fresh seed when
 * none was given).  Returns 0, or 1 with the message printed. */
int cli_llm_load(petrel_llm_t **llm, cli_llm_flags *f, const char *verb);

/* Print "petrel: <msg>" to stderr, on one line (control characters become
 * '?'), and return exit code 1. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Check an output path before any work: it must not be one of the `nins`
 * input files, nor a directory, nor -- when `renamed` (the library writes a
 * temporary file and renames it into place) -- any other non-regular file,
 * which the rename would replace (a device, a FIFO).  Returns 0, or 1 with
 * the message printed. */
int cli_check_output(const char *verb, const char *out, const char *const *ins, int nins, bool renamed);

#endif /* PETREL_CLI_H */
