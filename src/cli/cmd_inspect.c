/*
** cmd_inspect.c -- `petrel inspect`: summary of a program's interface,
** weights (quantized ones with their format and the size they save),
** sections and operators.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_io(const petrel_io_info *io) {
    static const char *kinds[] = {"tensor", "int", "float", "bool", "none"};
    printf("  %-24s %s", io->name, kinds[io->kind]);
    if (io->kind == PETREL_VALUE_TENSOR) {
        printf(" %s [", petrel_dtype_name(io->dtype));
        for (int d = 0; d < io->rank; d++) {
            if (io->shape[d] < 0) printf("%s?", d ? ", " : "");
            else printf("%s%" PRId64, d ? ", " : "", io->shape[d]);
        }
        printf("]");
    }
    printf("\n");
}

/* A byte count with a unit that keeps small tensors readable. */
static const char *human(char *buf, size_t cap, int64_t n) {
    if (n < 10000) snprintf(buf, cap, "%" PRId64 " B", n);
    else if (n < 10000000) snprintf(buf, cap, "%.1f KB", (double)n / 1e3);
    else snprintf(buf, cap, "%.1f MB", (double)n / 1e6);
    return buf;
}

int cmd_inspect(int argc, char **argv) {
    if (argc != 1 || argv[0][0] == '-') return cli_error("usage: petrel inspect PROGRAM");
    petrel_program_t *prog = NULL;
    petrel_load_opts lo = {.inspect_only = true}; /* no GPU needed to look at a CUDA program */
    if (petrel_program_load(&prog, argv[0], &lo) != PETREL_OK) return cli_error("%s", petrel_last_error());
    petrel_program_stats st;
    petrel_program_get_stats(&st, prog);
    printf("program:  %s\n", argv[0]);
    if (st.compiled)
        printf("format:   petrel program (from a torch.export archive, schema %d.%d, dialect %s), %.2f MB\n",
               st.schema_major, st.schema_minor, st.dialect, (double)st.file_bytes / 1e6);
    else
        printf("format:   torch.export archive, schema %d.%d, dialect %s\n", st.schema_major, st.schema_minor, st.dialect);
    printf("nodes:    %" PRId64 "\n", st.n_nodes);
    printf("weights:  %" PRId64 " tensors, %.2f MB, %.2f MB of them read whole by a call (embedding tables%s aside); "
           "state %.2f MB\n",
           st.n_weights, (double)st.weight_bytes / 1e6, (double)st.step_weight_bytes / 1e6,
           st.expert_weight_bytes ? " and MoE experts" : "", (double)st.state_bytes / 1e6);
    if (st.expert_weight_bytes)
        printf("          MoE experts: %.2f MB (a token reads the experts its router chooses)\n",
               (double)st.expert_weight_bytes / 1e6);
    petrel_quant_info qi;
    int64_t qbytes = 0, fbytes = 0;
    int nq = 0;
    for (; petrel_program_quant_weight(&qi, prog, nq) == PETREL_OK; nq++) qbytes += qi.bytes, fbytes += qi.float_bytes;
    if (nq)
        printf("          of which %d quantized: %.2f MB, %.2f MB in float (%.3fx, %.2f MB saved)\n", nq,
               (double)qbytes / 1e6, (double)fbytes / 1e6, fbytes ? (double)qbytes / (double)fbytes : 0.0,
               (double)(fbytes - qbytes) / 1e6);
    printf("arena:    %.3f MB for activations (%.3f MB without sharing)%s\n",
           (double)(st.arena_bytes + st.device_arena_bytes) / 1e6, (double)st.naive_bytes / 1e6,
           st.unplanned ? "; some sizes unbounded, allocated per call" : "");
    if (st.device)
        printf("          of which %.3f MB on %s, %.3f MB on cpu\n", (double)st.device_arena_bytes / 1e6, st.device,
               (double)st.arena_bytes / 1e6);
    printf("inputs:\n");
    for (int i = 0; i < petrel_program_num_inputs(prog); i++) {
        petrel_io_info io;
        petrel_program_input_info(&io, prog, i);
        print_io(&io);
    }
    printf("outputs:\n");
    for (int i = 0; i < petrel_program_num_outputs(prog); i++) {
        petrel_io_info io;
        petrel_program_output_info(&io, prog, i);
        print_io(&io);
    }
    if (st.compiled) {
        printf("sections:\n");
        petrel_section_info si;
        for (int i = 0; petrel_program_section(&si, prog, i) == PETREL_OK; i++)
            printf("  %-8s offset %10" PRIu64 "  size %10" PRIu64 "  align %u\n", si.kind, si.offset, si.size, si.align);
    }
    if (nq) printf("quantized weights (format, group size, [E x] N x K, size, size in float):\n");
    for (int i = 0; i < nq && petrel_program_quant_weight(&qi, prog, i) == PETREL_OK; i++) {
        char b[32], fb[32], ex[32] = "";
        if (qi.experts > 1) snprintf(ex, sizeof ex, "%" PRId64 " x ", qi.experts);
        printf("  %-5s g%-3d %7s%" PRId64 " x %-6" PRId64 " %10s %10s  %s%s\n", qi.format, qi.group_size, ex, qi.rows,
               qi.cols, human(b, sizeof b, qi.bytes), human(fb, sizeof fb, qi.float_bytes), qi.name,
               qi.readers > 1 ? "  (tied: read by several ops)" : "");
    }
    const char *targets[512];
    int64_t counts[512];
    static const char *sides[] = {"cuda", "cpu"};
    for (int k = 0; k < 2; k++) {
        int distinct = petrel_program_op_counts_on(prog, sides[k], targets, counts, 512);
        if (!distinct) continue;
        int64_t total = 0;
        for (int i = 0; i < distinct && i < 512; i++) total += counts[i];
        printf("ops on %s (%" PRId64 " nodes, %d distinct%s):\n", sides[k], total, distinct,
               st.device ? "" : ", all on cpu");
        for (int i = 0; i < distinct && i < 512; i++) printf("  %6" PRId64 "  %s\n", counts[i], targets[i]);
    }
    petrel_program_free(prog);
    return 0;
}
