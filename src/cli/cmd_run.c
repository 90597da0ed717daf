/*
** cmd_run.c -- `petrel run`: bind inputs from safetensors files by the
** program's user-input names, execute, and write outputs as output_<i>.
** Several --inputs/--outputs pairs run in order on one loaded program.
** Tensors in an inputs file that the program does not take are ignored.
*/
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define MAX_STEPS 256

static int run_step(petrel_program_t *prog, const char *in_path, const char *out_path) {
    petrel_tensor_file_t *in = NULL, *out = NULL;
    int rc = 1;
    if (petrel_tensor_file_read(&in, in_path) != PETREL_OK) return cli_error("%s", petrel_last_error());
    /* Tensors that are not user inputs are ignored: torch bakes Python
     * scalars passed at export into the program (constant inputs), and a
     * caller may keep them in the file. A misspelt name still fails, as
     * the real input is then missing. */
    petrel_status st = petrel_program_set_inputs_from_file(prog, in);
    if (st != PETREL_OK) {
        if (st == PETREL_ERR_NOT_FOUND) cli_error("%s: %s", in_path, petrel_program_error(prog));
        else cli_error("%s", petrel_program_error(prog));
        goto done;
    }
    if (petrel_program_execute(prog) != PETREL_OK) {
        cli_error("%s", petrel_program_error(prog));
        goto done;
    }
    if (petrel_tensor_file_new(&out) != PETREL_OK) {
        cli_error("%s", petrel_last_error());
        goto done;
    }
    for (int i = 0; i < petrel_program_num_outputs(prog); i++) {
        petrel_tensor_desc t;
        petrel_value_kind kind;
        if (petrel_program_get_output(&t, prog, i, &kind) != PETREL_OK) {
            cli_error("%s", petrel_program_error(prog));
            goto done;
        }
        if (kind == PETREL_VALUE_NONE) continue;
        char name[32];
        snprintf(name, sizeof name, "output_%d", i);
        if (petrel_tensor_file_add(out, name, &t) != PETREL_OK) {
            cli_error("%s", petrel_last_error());
            goto done;
        }
    }
    if (petrel_tensor_file_write(out, out_path) != PETREL_OK) {
        cli_error("%s", petrel_last_error());
        goto done;
    }
    rc = 0;
done:
    petrel_tensor_file_free(in);
    petrel_tensor_file_free(out);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *program = NULL, *backend = NULL;
    int32_t threads = 0;
    const char *ins[MAX_STEPS], *outs[MAX_STEPS];
    int nin = 0, nout = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--inputs") || !strcmp(a, "--outputs") || !strcmp(a, "--backend") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) return cli_error("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--backend")) backend = v;
            else if (!strcmp(a, "--threads")) {
                if (!cli_parse_threads(v, &threads))
                    return cli_error("run: --threads must be an integer from 0 (one per CPU) to 64, not '%s'", v);
            }
            else if (!strcmp(a, "--inputs")) {
                if (nin == MAX_STEPS) return cli_error("too many --inputs (max %d)", MAX_STEPS);
                ins[nin++] = v;
            } else {
                if (nout == MAX_STEPS) return cli_error("too many --outputs (max %d)", MAX_STEPS);
                outs[nout++] = v;
            }
        } else if (a[0] == '-' && a[1]) {
            return cli_error("run: unknown option '%s'", a);
        } else if (!program) {
            program = a;
        } else {
            return cli_error("run: unexpected argument '%s'", a);
        }
    }
    if (!program) return cli_error("usage: petrel run PROGRAM --inputs IN.safetensors --outputs OUT.safetensors [--backend cpu|cuda] [--threads N]");
    if (nin == 0 || nin != nout)
        return cli_error("run: give one --outputs for each --inputs (got %d --inputs, %d --outputs)", nin, nout);
    if (backend && strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0)
        return cli_error("run: --backend must be cpu or cuda, not '%s'", backend);
    const char *reads[MAX_STEPS + 1] = {program};
    memcpy(reads + 1, ins, (size_t)nin * sizeof *ins);
    for (int s = 0; s < nout; s++)
        if (cli_check_output("run", outs[s], reads, nin + 1, true)) return 1;
    petrel_program_t *prog = NULL;
    petrel_load_opts opts = {.backend = backend, .threads = threads};
    if (petrel_program_load(&prog, program, &opts) != PETREL_OK) return cli_error("%s", petrel_last_error());
    int rc = 0;
    for (int s = 0; s < nin && rc == 0; s++) rc = run_step(prog, ins[s], outs[s]);
    petrel_program_free(prog);
    return rc;
}
