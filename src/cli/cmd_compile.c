/*
** cmd_compile.c -- `petrel compile IN.pt2 -o OUT.petrel [--backend cpu]`.
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
    if (!in || !out) return cli_error("usage: petrel compile IN.pt2 -o OUT.petrel [--backend cpu]");
    if (strcmp(backend, "cpu") != 0) return cli_error("compile: backend '%s' is not available in this build (have: cpu)", backend);
    /* progress only for a person watching: scripts get one line per error */
    if (isatty(STDERR_FILENO)) fprintf(stderr, "compiling %s ...\n", in);
    petrel_compile_report r;
    petrel_compile_opts opts = {.backend = backend};
    if (petrel_compile(&r, in, out, &opts) != PETREL_OK) return cli_error("%s", petrel_last_error());
    printf("%s: %" PRId64 " nodes (%" PRId64 " imported, %" PRId64 " no-ops and %" PRId64
           " dead nodes removed, %" PRId64 " fused ops made), all on cpu\n",
           out, r.nodes_out, r.nodes_in, r.noops_removed, r.dead_removed, r.fused);
    printf("  weights %.2f MB, file %.2f MB, %d extra file%s\n", (double)r.weight_bytes / 1e6,
           (double)r.file_bytes / 1e6, r.nextras, r.nextras == 1 ? "" : "s");
    printf("  activation arena %.3f MB (%.3f MB if nothing shared memory)\n", (double)r.arena_bytes / 1e6,
           (double)r.naive_bytes / 1e6);
    return 0;
}
