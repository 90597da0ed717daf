/*
** cmd_compile.c -- `petrel compile IN.pt2 -o OUT.petrel [--backend cpu|cuda]
** [--dtype fp32|fp16|bf16] [--quant SCHEME [--quant-embedding]
** [--quant-skip PATTERN]...]`: lower a program and print what the dtype
** conversion, the passes, the quantizer and the partitioner did.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_SKIP 64

/* Progress on a terminal: one line rewritten in place. */
static void show_progress(const char *stage, int64_t done, int64_t total, void *user) {
    (void)user;
    fprintf(stderr, "\r%s: %3d%% (%.0f of %.0f MB)", stage, total ? (int)(100 * done / total) : 100,
            (double)done / 1e6, (double)total / 1e6);
    if (done == total) fputc('\n', stderr);
}

/* torch's name of a float dtype ("bfloat16"), for the summary. */
static const char *long_name(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F32 ? "float32" : dt == PETREL_DTYPE_F16 ? "float16" : dt == PETREL_DTYPE_BF16 ? "bfloat16"
                                                                                                           : petrel_dtype_name(dt);
}

int cmd_compile(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *backend = "cpu", *quant = NULL, *dtype = NULL;
    const char *skip[MAX_SKIP];
    int nskip = 0;
    bool qemb = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--backend") || !strcmp(a, "--quant") ||
            !strcmp(a, "--quant-skip") || !strcmp(a, "--dtype")) {
            if (i + 1 >= argc) return cli_error("compile: %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--backend")) backend = v;
            else if (!strcmp(a, "--quant")) quant = v;
            else if (!strcmp(a, "--dtype")) dtype = v;
            else if (!strcmp(a, "--quant-skip") && nskip == MAX_SKIP)
                return cli_error("compile: more than %d --quant-skip patterns", MAX_SKIP);
            else if (!strcmp(a, "--quant-skip")) skip[nskip++] = v;
            else out = v;
        } else if (!strcmp(a, "--quant-embedding")) {
            qemb = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_error("compile: unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            return cli_error("compile: unexpected argument '%s'", a);
        }
    }
    if (!in || !out)
        return cli_error("usage: petrel compile IN.pt2 -o OUT.petrel [--backend cpu|cuda] [--dtype fp32|fp16|bf16] "
                         "[--quant SCHEME [--quant-embedding] [--quant-skip PATTERN]...]");
    if (strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0)
        return cli_error("compile: --backend must be cpu or cuda, not '%s'", backend);
    if (!quant && (qemb || nskip))
        return cli_error("compile: %s needs --quant", qemb ? "--quant-embedding" : "--quant-skip");
    if (cli_check_output("compile", out, &in, 1, true)) return 1;
    /* progress only for a person watching: scripts get one line per error */
    bool tty = isatty(STDERR_FILENO);
    if (tty) fprintf(stderr, "compiling %s ...\n", in);
    petrel_compile_report r;
    petrel_compile_opts opts = {.backend = backend, .dtype = dtype, .quant = quant, .quant_embedding = qemb, .quant_skip = skip,
                                .n_quant_skip = nskip, .progress = tty ? show_progress : NULL};
    if (petrel_compile(&r, in, out, &opts) != PETREL_OK) return cli_error("%s", petrel_last_error());
    printf("%s: %" PRId64 " nodes (%" PRId64 " imported, %" PRId64 " no-ops and %" PRId64
           " dead nodes removed, %" PRId64 " fused ops made)\n",
           out, r.nodes_out, r.nodes_in, r.noops_removed, r.dead_removed, r.fused);
    if (dtype && r.dtype_from == r.dtype_to)
        printf("  dtype: %s (unchanged)\n", long_name(r.dtype_to));
    else if (dtype)
        printf("  dtype: %s -> %s, %d weight%s (%.2f MB -> %.2f MB)\n", long_name(r.dtype_from),
               long_name(r.dtype_to), r.dtype_converted, r.dtype_converted == 1 ? "" : "s",
               (double)r.dtype_bytes_before / 1e6, (double)r.dtype_bytes_after / 1e6);
    if (quant) {
        printf("  quantized (%s): %d weight%s, %.2f MB -> %.2f MB", quant, r.quantized, r.quantized == 1 ? "" : "s",
               (double)r.quant_bytes_before / 1e6, (double)r.quant_bytes_after / 1e6);
        if (r.quant_bytes_before) printf(" (%.3fx)", (double)r.quant_bytes_after / (double)r.quant_bytes_before);
        printf("\n");
        if (r.quant_kept) printf("  kept float: %d weight%s: %s\n", r.quant_kept, r.quant_kept == 1 ? "" : "s",
                                 r.quant_kept_why);
    }
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
