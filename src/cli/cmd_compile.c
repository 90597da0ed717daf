/*
** cmd_compile.c -- `petrel compile IN.pt2 -o OUT.petrel [--backend cpu|cuda]`: lower a
** program and print what the passes and the partitioner did.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_compile(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *backend = "cpu";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--backend")) {
            if (i + 1 >= argc) return cli_error("compile: %s needs a value", a);
            if (!strcmp(a, "--backend")) backend = argv[++i];
            else out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_error("compile: unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            return cli_error("compile: unexpected argument '%s'", a);
        }
    }
    if (!in || !out) return cli_error("usage: petrel compile IN.pt2 -o OUT.petrel [--backend cpu|cuda]");
    if (strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0)
        return cli_error("compile: --backend must be cpu or cuda, not '%s'", backend);
    if (cli_check_output("compile", out, &in, 1, true)) return 1;
    /* progress only for a person watching: scripts get one line per error */
    if (isatty(STDERR_FILENO)) fprintf(stderr, "compiling %s ...\n", in);
    petrel_compile_report r;
    petrel_compile_opts opts = {.backend = backend};
    if (petrel_compile(&r, in, out, &opts) != PETREL_OK) return cli_error("%s", petrel_last_error());
    printf("%s: %" PRId64 " nodes (%" PRId64 " imported, %" PRId64 " no-ops and %" PRId64
           " dead nodes removed, %" PRId64 " fused ops made)\n",
           out, r.nodes_out, r.nodes_in, r.noops_removed, r.dead_removed, r.fused);
    if (!strcmp(backend, "cpu")) {
        printf("  partition: all %" PRId64 " nodes on cpu\n", r.nodes_out);
    } else {
        printf("  partition: %" PRId64 " ops on %s, %" PRId64 " on cpu, %" PRId64
               " metadata-only (views, shapes), %" PRId64 " values cross between them\n",
               r.on_device, backend, r.on_cpu, r.meta_nodes, r.transfers);
        if (r.fallback[0]) printf("  on cpu: %s\n", r.fallback);
    }
    printf("  weights %.2f MB, file %.2f MB, %d extra file%s\n", (double)r.weight_bytes / 1e6,
           (double)r.file_bytes / 1e6, r.nextras, r.nextras == 1 ? "" : "s");
    printf("  activation arena %.3f MB (%.3f MB if nothing shared memory)\n", (double)r.arena_bytes / 1e6,
           (double)r.naive_bytes / 1e6);
    return 0;
}
