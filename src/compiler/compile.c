/*
** compile.c -- `petrel_compile`: import a .pt2, run the passes, carry the
** archive's extra/ files along, and write the program file.
*/
#include <stdio.h>
#include <string.h>

#include "../backends/cuda/caps.h"
#include "../pt2/pt2.h"
#include "compiler.h"

/* Collect the archive's `<root>/extra/<name>` entries (borrowed). */
static int collect_extras(const pz_archive *z, pf_extra *out, int max) {
    int n = 0;
    for (int32_t i = 0; i < z->n && n < max; i++) {
        const char *name = pt2_extra_name(&z->entries[i]);
        if (name) out[n++] = (pf_extra){name, z->entries[i].data, z->entries[i].size};
    }
    return n;
}

petrel_status petrel_compile(petrel_compile_report *report, const char *in_path, const char *out_path,
                             const petrel_compile_opts *opts) {
    pt_err err = {{0}};
    if (!in_path || !out_path) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_compile: NULL path");
    const char *backend = opts && opts->backend ? opts->backend : "cpu";
    int dev = !strcmp(backend, "cpu") ? PT_DEV_CPU : !strcmp(backend, "cuda") ? PT_DEV_CUDA : -1;
    if (dev < 0)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "unknown backend '%s' (petrel knows: cpu, cuda)", backend);
    petrel_dtype to = PETREL_DTYPE_F32;
    if (opts && opts->dtype && pc_dtype_parse(opts->dtype, &to, NULL) != PETREL_OK) return PETREL_ERR_INVALID_ARG;
    pc_quant_opts qo = {0};
    if (opts && opts->quant) {
        if (pc_quant_parse(opts->quant, &qo, NULL) != PETREL_OK) return PETREL_ERR_INVALID_ARG;
        qo.embedding = opts->quant_embedding;
        qo.skip = opts->quant_skip;
        qo.nskip = opts->quant_skip ? opts->n_quant_skip : 0;
        qo.progress = opts->progress;
        qo.progress_user = opts->progress_user;
    }
    pc_quant_result qr = {0};
    pc_dtype_result dr = {0};
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    memset(&g, 0, sizeof g);
    petrel_status st = pt_map_file(&map, in_path, &err);
    if (st != PETREL_OK) goto fail;
    st = pz_open_memory(&z, map.data, map.size, &err);
    if (st == PETREL_OK) st = pt2_import(&g, &z, &err);
    if (st == PETREL_OK) {
        petrel_compile_report r = {0};
        r.nodes_in = g.nnodes;
        /* first: fusion and quantization then see the new dtypes */
        if (opts && opts->dtype) st = pc_convert_dtype(&g, to, &dr, &err);
        r.dtype_from = dr.from;
        r.dtype_to = dr.to;
        r.dtype_converted = dr.converted;
        r.dtype_bytes_before = dr.bytes_before;
        r.dtype_bytes_after = dr.bytes_after;
        r.noops_removed = pc_remove_noops(&g);
        pc_canonicalize(&g); /* fusion and quantization match aten.linear */
        r.fused = pc_fuse(&g);
        /* MoE experts only for a backend that has their kernels: the
         * unfused gather and bmm run on every device */
        if (dev == PT_DEV_CPU || pt_cuda_has_op(PETREL_OP_PETREL_EXPERT_LINEAR)) r.fused += pc_fuse_experts(&g);
        qo.experts = dev == PT_DEV_CPU || pt_cuda_has_op(PETREL_OP_PETREL_QEXPERT_LINEAR);
        qo.bias = true; /* both backends' qlinear takes a bias (mode "bias") */
        /* after fusion, whose patterns count readers; merged twins are
         * nodes nobody reads any more, too */
        r.dead_removed = pc_forward_state(&g);
        r.dead_removed += pc_cse(&g);
        r.dead_removed += pc_dce(&g);
        r.dead_removed += pc_fold(&g, &dr); /* dr owns the folded bytes */
        if (st == PETREL_OK && opts && opts->quant) st = pc_quantize(&g, &qo, &qr, &err);
        r.quantized = qr.quantized;
        r.quant_kept = qr.kept;
        r.quant_bytes_before = qr.bytes_before;
        r.quant_bytes_after = qr.bytes_after;
        memcpy(r.quant_kept_why, qr.kept_why, sizeof r.quant_kept_why);
        /* a layer's quantized q/k/v and its attention as one node, for a
         * backend with a kernel for it (the CPU composes the two) */
        if (st == PETREL_OK && dev == PT_DEV_CUDA && pt_cuda_has_op(PETREL_OP_PETREL_QKV_ATTN))
            r.fused += pc_fuse_qkv_attn(&g);
        r.nodes_out = g.nnodes;
        pt_partition_report pr;
        pt_partition(&g, dev, pt_cuda_supports, &pr);
        r.on_device = pr.on_device;
        r.on_cpu = pr.on_cpu;
        r.meta_nodes = pr.meta;
        r.transfers = pr.transfers;
        size_t o = 0;
        for (int32_t i = 0; i < pr.nreasons && o < sizeof r.fallback; i++)
            o += (size_t)snprintf(r.fallback + o, sizeof r.fallback - o, "%s%s x%d: %s", i ? "; " : "",
                                  pt_op_table[pr.reasons[i].op].target, pr.reasons[i].count, pr.reasons[i].why);
        if (st == PETREL_OK) st = pt_graph_verify(&g, &err); /* the passes must keep the graph valid */
        pf_extra extras[64];
        r.nextras = collect_extras(&z, extras, 64);
        for (int32_t i = 0; i < g.nvalues; i++)
            if (g.values[i].data) r.weight_bytes += g.values[i].data_bytes;
        pt_plan plan;
        if (st == PETREL_OK && (st = pt_plan_memory(&g, &plan, &err)) == PETREL_OK) {
            r.arena_bytes = plan.arena_bytes;
            r.naive_bytes = plan.naive_bytes;
            pt_plan_free(&plan);
        }
        if (st == PETREL_OK) st = pf_write(&g, extras, r.nextras, out_path, &err);
        if (st == PETREL_OK) {
            FILE *f = fopen(out_path, "rb");
            if (f && fseek(f, 0, SEEK_END) == 0) r.file_bytes = ftell(f);
            if (f) fclose(f);
            if (report) *report = r;
        }
        pt_graph_free(&g);
        pc_quant_free(&qr); /* the quantized and converted weights' bytes, written by now */
        pc_dtype_free(&dr);
    }
    pz_close(&z);
    pt_unmap_file(&map);
    if (st == PETREL_OK) return PETREL_OK;
fail: {
    char msg[sizeof err.msg + 600];
    snprintf(msg, sizeof msg, "%s: %s", in_path, err.msg);
    pt_set_last_error(msg);
    return st;
}
}
