/*
** rope_table_plan.h -- the operand side of petrel.rope_table (ops.def),
** shared by the CPU reference (fused.c) and the CUDA backend
** (cuda/ops/fused.c): the inputs checked and both (B, L, 2H) tables
** allocated, with the same messages on every backend.
*/
#ifndef PETREL_CPU_ROPE_TABLE_PLAN_H
#define PETREL_CPU_ROPE_TABLE_PLAN_H

#include "../../../runtime/kernel.h"

typedef struct rope_table_args {
    const pt_tensor *inv, *pos; /* inv_freq (H), positions (B, L) */
    pt_tensor *cos, *sin;       /* (B, L, 2H) of the dtype argument (None: f32) */
    int64_t B, L, H;
    double scale;
} rope_table_args;

static inline petrel_status rope_table_args_of(pt_exec *ex, const pt_node *n, rope_table_args *a) {
    const pt_tensor *inv = pk_tensor(ex, n, 0), *pos = pk_tensor(ex, n, 1);
    if (!inv || !pos || inv->rank != 1 || pos->rank != 2 || !pt_dtype_is_float(inv->dtype) ||
        pos->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_SHAPE, "rope_table needs a float inv_freq (H) and positions (B, L)");
    int dt = pk_dtype(ex, n, 3);
    petrel_dtype odt = dt < 0 ? PETREL_DTYPE_F32 : (petrel_dtype)dt;
    if (!pt_dtype_is_float(odt) || pk_out_dtype(ex, n, 0) != odt || pk_out_dtype(ex, n, 1) != odt)
        return pk_fail(ex, PETREL_ERR_SHAPE, "rope_table: both tables must have the float dtype argument's dtype");
    *a = (rope_table_args){.inv = inv, .pos = pos, .B = pos->shape[0], .L = pos->shape[1], .H = inv->shape[0],
                           .scale = pk_float(ex, n, 2)};
    int64_t shape[3] = {a->B, a->L, 2 * a->H};
    PT_TRY(pk_out_alloc(ex, n, 0, 3, shape, &a->cos));
    return pk_out_alloc(ex, n, 1, 3, shape, &a->sin);
}

#endif /* PETREL_CPU_ROPE_TABLE_PLAN_H */
