/*
** binary.c -- CUDA kernels for elementwise binary ops, host side: argument
** reading, torch's result-type rules, shapes and launch.  The kernels are
** in binary_k.cu.  Part of the CUDA backend.
**
** The op table, operand reading and rounding dtype are the CPU
** reference's own (cpu/ops/binary_ops.h), so both backends decide alike;
** the failures are the same.  Only the compute type differs where
** torch's does: float for f32/f16/bf16 ("opmath"), double for f64, int64
** for integers.
*/
#include "../../cpu/ops/binary_ops.h"
#include "binary_k.h"
#include "ew.h"

/* The kernels take binary_ops.h's function numbers as they are. */
#define PCU_BIN_SAME(name) _Static_assert((int)BIN_##name == (int)PCU_BIN_##name, "bin_fn order: " #name);
PCU_BIN_FNS(PCU_BIN_SAME)
#undef PCU_BIN_SAME

static bool bin_is_intdiv(bin_fn f) {
    return f == BIN_DIV_TRUNC || f == BIN_DIV_FLOOR || f == BIN_REMAINDER || f == BIN_FMOD;
}

/* Whether a tensor operand of dtype dt must be rounded to rnd inside a
 * float kernel: float kernels read every dtype as float already. */
static bool bin_needs_round(petrel_dtype dt, petrel_dtype rnd, int ct) {
    if (dt == rnd || rnd == PETREL_DTYPE_F64) return false;
    return !(ct == PCU_CT_F32 && rnd == PETREL_DTYPE_F32);
}

static void bin_add_operand(pcu_ew *it, const bin_operand *o, bool in_float, petrel_dtype rnd) {
    if (o->t) {
        pcu_ew_tensor(it, &o->view);
        return;
    }
    double v = o->is_int ? (double)o->i : o->f;
    pcu_ew_scalar(it, o->is_int ? PETREL_DTYPE_I64 : PETREL_DTYPE_F64, in_float ? ew_round(v, rnd) : v,
                  o->i);
}

/*
** cuda_k_binary -- every op of the "binary" family in ops.def, as
** cpu_k_binary computes it.  Fails on incompatible shapes, a zero integer
** scalar divisor, bitwise ops on floats and unknown rounding modes; a zero
** integer divisor inside a tensor cannot be seen from the host and gives 0.
*/
petrel_status cuda_k_binary(pt_exec *ex, const pt_node *n) {
    bin_desc d;
    bin_operand x, y;
    int rank;
    int64_t shape[PETREL_MAX_RANK];
    PT_TRY(bin_prepare(ex, n, &d, &x, &y, &rank, shape));

    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    petrel_dtype odt = out->dtype;

    petrel_dtype rnd = bin_round_dtype(d.fn, &x, &y, odt);
    bool cmp = bin_is_compare(d.fn) || bin_is_logical(d.fn);
    bool in_float = ew_is_float(cmp ? rnd : odt);
    if (bin_is_bitwise(d.fn) && in_float)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "bitwise ops need integer or bool tensors");
    if (!in_float && d.fn == BIN_DIV)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "true division needs a float output");
    if (!in_float && d.fn == BIN_POW && !y.t && y.i < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "integers to negative integer powers are not allowed");
    if (!in_float && bin_is_intdiv(d.fn) && !y.t && y.i == 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "integer division by zero");

    int ct = PCU_CT_I64;
    if (in_float)
        ct = rnd == PETREL_DTYPE_F64 || (!cmp && odt == PETREL_DTYPE_F64) ? PCU_CT_F64 : PCU_CT_F32;

    /* alpha is only meaningful for add/sub/rsub; torch reads it in the
     * compute type of the op */
    pcu_bin_params p = {.alpha_f = 1, .alpha_i = 1, .rnd = (int32_t)rnd};
    if (d.alpha_arg >= 0 && d.alpha_arg < n->nargs && !pk_is_none(ex, n, d.alpha_arg)) {
        p.alpha_f = pk_float(ex, n, d.alpha_arg);
        p.alpha_i = ew_scalar_i64(ex, n, d.alpha_arg);
    }
    p.rnd_ops = in_float && ((x.t && bin_needs_round(x.t->dtype, rnd, ct)) ||
                             (y.t && bin_needs_round(y.t->dtype, rnd, ct)));

    pcu_ew it;
    pcu_ew_begin(&it, out);
    bin_add_operand(&it, &x, in_float, rnd);
    bin_add_operand(&it, &y, in_float, rnd);
    pcu_ew_end(&it);
    if (it.numel == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_launch_binary(&it, d.fn, ct, &p, pcu_stream(ex)), "binary kernel");
    return PETREL_OK;
}
