/*
** binary.c -- CPU reference kernels for elementwise binary ops: arithmetic
** (add/sub/rsub with alpha, mul, div with its rounding modes, floor_divide,
** remainder, fmod, pow), maximum/minimum, atan2, logical and bitwise ops,
** and comparisons.  Part of the CPU backend.
**
** Operands broadcast against each other.  The output dtype is the one
** torch recorded; float outputs are computed in double and integer/bool
** outputs in int64, then stored once.  Before computing, operands are
** rounded to the precision torch computes in (see bin_round_dtype), which
** is what makes `half_tensor == 0.1` true and `half_tensor + 0.1` exact.
*/
#include "binary_ops.h"

/* ---- float arithmetic (double) ------------------------------------------- */

/* Python-style floor division, as c10's div_floor_floating: computed from
 * fmod so that e.g. 7.5 // 2.5 is exactly 3 even where a / b rounds. */
static double bin_floordiv_f64(double a, double b) {
    if (b == 0) return a / b;
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0 && (b < 0) != (mod < 0)) div -= 1;
    if (div == 0) return copysign(0.0, a / b);
    double fl = floor(div);
    if (div - fl > 0.5) fl += 1;
    return fl;
}

/* a op b in double; `rnd` is the dtype intermediate quotients are rounded
 * to (torch truncates the float32 quotient, not the exact one). */
static double bin_f64(bin_fn fn, double a, double b, double alpha, petrel_dtype rnd) {
    switch (fn) {
    case BIN_ADD: return a + alpha * b;
    case BIN_SUB: return a - alpha * b;
    case BIN_RSUB: return b - alpha * a;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_DIV_TRUNC: return trunc(ew_round(a / b, rnd));
    case BIN_DIV_FLOOR: return bin_floordiv_f64(a, b);
    case BIN_REMAINDER: {
        /* the result takes the divisor's sign, like Python's % */
        double m = fmod(a, b);
        if (m != 0 && (b < 0) != (m < 0)) m += b;
        return m;
    }
    case BIN_FMOD: return fmod(a, b);
    case BIN_POW: return pow(a, b);
    case BIN_MAXIMUM: return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b);
    case BIN_MINIMUM: return (isnan(a) || isnan(b)) ? NAN : (a < b ? a : b);
    case BIN_ATAN2: return atan2(a, b);
    case BIN_LAND: return (a != 0) && (b != 0);
    case BIN_LOR: return (a != 0) || (b != 0);
    case BIN_LXOR: return (a != 0) != (b != 0);
    case BIN_EQ: return a == b;
    case BIN_NE: return a != b;
    case BIN_LT: return a < b;
    case BIN_LE: return a <= b;
    case BIN_GT: return a > b;
    case BIN_GE: return a >= b;
    case BIN_BAND: case BIN_BOR: case BIN_BXOR: break; /* rejected before the loop */
    }
    return NAN;
}

/* ---- integer arithmetic (int64, wrapping like the fixed-width C types) --- */

static int64_t bin_wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t bin_wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* Integer power by squaring; a negative exponent gives 0 except for bases
 * 1 and -1, as torch's powi. */
static int64_t bin_powi(int64_t a, int64_t b) {
    if (b < 0) {
        if (a == 1) return 1;
        if (a == -1) return (b % 2 == 0) ? 1 : -1;
        return 0;
    }
    int64_t r = 1;
    while (b) {
        if (b & 1) r = bin_wrap_mul(r, a);
        a = bin_wrap_mul(a, a);
        b >>= 1;
    }
    return r;
}

/* a op b in int64.  Returns false on integer division by zero (torch
 * raises ZeroDivisionError). */
static bool bin_i64(bin_fn fn, int64_t a, int64_t b, int64_t alpha, int64_t *r) {
    switch (fn) {
    case BIN_ADD: *r = bin_wrap_add(a, bin_wrap_mul(alpha, b)); return true;
    case BIN_SUB: *r = (int64_t)((uint64_t)a - (uint64_t)bin_wrap_mul(alpha, b)); return true;
    case BIN_RSUB: *r = (int64_t)((uint64_t)b - (uint64_t)bin_wrap_mul(alpha, a)); return true;
    case BIN_MUL: *r = bin_wrap_mul(a, b); return true;
    case BIN_DIV:
    case BIN_DIV_TRUNC:
    case BIN_DIV_FLOOR:
    case BIN_REMAINDER:
    case BIN_FMOD: {
        if (b == 0) return false;
        /* INT64_MIN / -1 overflows in C; the wrapped answer is -a, remainder 0 */
        int64_t q = b == -1 ? (int64_t)((uint64_t)0 - (uint64_t)a) : a / b;
        int64_t m = b == -1 ? 0 : a % b;
        if (fn == BIN_DIV || fn == BIN_DIV_TRUNC) *r = q;
        else if (fn == BIN_FMOD) *r = m;
        else if (fn == BIN_DIV_FLOOR) *r = (m != 0 && (m < 0) != (b < 0)) ? q - 1 : q;
        else *r = (m != 0 && (m < 0) != (b < 0)) ? m + b : m;
        return true;
    }
    case BIN_POW: *r = bin_powi(a, b); return true;
    case BIN_MAXIMUM: *r = a > b ? a : b; return true;
    case BIN_MINIMUM: *r = a < b ? a : b; return true;
    case BIN_ATAN2: *r = (int64_t)atan2((double)a, (double)b); return true;
    case BIN_LAND: *r = (a != 0) && (b != 0); return true;
    case BIN_LOR: *r = (a != 0) || (b != 0); return true;
    case BIN_LXOR: *r = (a != 0) != (b != 0); return true;
    case BIN_BAND: *r = a & b; return true;
    case BIN_BOR: *r = a | b; return true;
    case BIN_BXOR: *r = a ^ b; return true;
    case BIN_EQ: *r = a == b; return true;
    case BIN_NE: *r = a != b; return true;
    case BIN_LT: *r = a < b; return true;
    case BIN_LE: *r = a <= b; return true;
    case BIN_GT: *r = a > b; return true;
    case BIN_GE: *r = a >= b; return true;
    }
    return true;
}

/* ---- operands ------------------------------------------------------------ */

static int64_t bin_load_i64(const bin_operand *o, const int64_t *idx) {
    return o->t ? pt_load_i64(pt_at(&o->view, idx), o->t->dtype) : o->i;
}

/* ---- the float loop ---------------------------------------------------- */

/* A float op over the output's rows (its last dim), spread over the
 * program's threads: each operand's row start is found once per row and
 * the row walked with its last-dim stride.  The same values as one
 * element at a time: every element is computed alone. */
typedef struct bin_rows {
    const bin_operand *x, *y;
    bin_fn fn;
    double alpha;
    petrel_dtype rnd;
    const pt_tensor *out;
    int lead;               /* leading dims (rank - 1; 0 for a 0-d output) */
    const int64_t *shape;
    int64_t inner;          /* elements per row */
    bool fast;              /* bin_row_fast applies */
} bin_rows;

/* +, -, * and / of two tensors of the output's dtype, f32 or bf16, alpha
 * 1: in float.  The same values as the double path: an f32 result of
 * these ops computed in double and rounded to f32 is the float op's
 * (53 >= 2 * 24 + 2 bits), and the double path rounds to bf16 through f32
 * too. */
static bool bin_fast_ok(bin_fn fn, double alpha, const bin_operand *x, const bin_operand *y, petrel_dtype odt) {
    return (fn == BIN_ADD || fn == BIN_SUB || fn == BIN_MUL || fn == BIN_DIV) && alpha == 1 && x->t && y->t &&
           (odt == PETREL_DTYPE_F32 || odt == PETREL_DTYPE_BF16) && x->t->dtype == odt && y->t->dtype == odt;
}

static inline float bin_ld(const uint8_t *p, bool bf) {
    if (bf) {
        uint16_t h;
        memcpy(&h, p, 2);
        return pt_bf16_to_f32(h);
    }
    float f;
    memcpy(&f, p, 4);
    return f;
}

static void bin_row_fast(bin_fn fn, bool bf, const uint8_t *a, int64_t sa, const uint8_t *b, int64_t sb, uint8_t *dst,
                         int64_t inner) {
    const int64_t es = bf ? 2 : 4;
    for (int64_t j = 0; j < inner; j++) {
        float u = bin_ld(a + j * sa, bf), v = bin_ld(b + j * sb, bf);
        float r = fn == BIN_ADD ? u + v : fn == BIN_SUB ? u - v : fn == BIN_MUL ? u * v : u / v;
        if (bf) {
            uint16_t h = pt_f32_to_bf16(r);
            memcpy(dst + j * es, &h, 2);
        } else {
            memcpy(dst + j * es, &r, 4);
        }
    }
}

static void bin_float_rows(void *ctx, int part, int64_t r0, int64_t r1) {
    (void)part;
    const bin_rows *c = ctx;
    const bin_operand *ops[2] = {c->x, c->y};
    int64_t idx[PETREL_MAX_RANK] = {0};
    ew_row_index(r0, c->lead, c->shape, idx);
    petrel_dtype odt = c->out->dtype;
    int64_t oes = (int64_t)pt_elsize(c->out);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p[2] = {NULL, NULL};
        int64_t step[2] = {0, 0};
        double sc[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            const bin_operand *o = ops[k];
            if (o->t) {
                p[k] = pt_at(&o->view, idx);
                step[k] = c->lead < o->view.rank ? o->view.stride[c->lead] * (int64_t)pt_elsize(o->t) : 0;
            } else {
                sc[k] = ew_round(o->is_int ? (double)o->i : o->f, c->rnd);
            }
        }
        uint8_t *dst = c->out->data + r * c->inner * oes;
        if (c->fast) {
            bin_row_fast(c->fn, odt == PETREL_DTYPE_BF16, p[0], step[0], p[1], step[1], dst, c->inner);
            pt_next_index(idx, c->shape, c->lead);
            continue;
        }
        for (int64_t j = 0; j < c->inner; j++) {
            double a = p[0] ? ew_round(pt_load_f64(p[0] + j * step[0], c->x->t->dtype), c->rnd) : sc[0];
            double b = p[1] ? ew_round(pt_load_f64(p[1] + j * step[1], c->y->t->dtype), c->rnd) : sc[1];
            pt_store_f64(dst + j * oes, odt, bin_f64(c->fn, a, b, c->alpha, c->rnd));
        }
        pt_next_index(idx, c->shape, c->lead);
    }
}

/* ---- kernel -------------------------------------------------------------- */

/*
** cpu_k_binary -- every op of the "binary" family in ops.def.  Reads two
** operands (tensor or Scalar by schema), broadcasts them, and writes one
** fresh output of the exported dtype.  Fails on incompatible shapes,
** integer division by zero, bitwise ops on floats and unknown rounding
** modes.
*/
petrel_status cpu_k_binary(pt_exec *ex, const pt_node *n) {
    bin_desc d;
    bin_operand x, y;
    int rank;
    int64_t shape[PETREL_MAX_RANK];
    PT_TRY(bin_prepare(ex, n, &d, &x, &y, &rank, shape));

    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    petrel_dtype odt = out->dtype;

    petrel_dtype rnd = bin_round_dtype(d.fn, &x, &y, odt);
    bool in_float;
    if (bin_is_compare(d.fn) || bin_is_logical(d.fn)) in_float = ew_is_float(rnd);
    else in_float = ew_is_float(odt);
    if (bin_is_bitwise(d.fn) && in_float)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "bitwise ops need integer or bool tensors");
    if (!in_float && d.fn == BIN_DIV)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "true division needs a float output");
    if (!in_float && d.fn == BIN_POW && !y.t && y.i < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "integers to negative integer powers are not allowed");

    /* alpha is only meaningful for add/sub/rsub; torch reads it in the
     * compute type of the op */
    double alpha_f = 1;
    int64_t alpha_i = 1;
    if (d.alpha_arg >= 0 && d.alpha_arg < n->nargs && !pk_is_none(ex, n, d.alpha_arg)) {
        alpha_f = pk_float(ex, n, d.alpha_arg);
        alpha_i = ew_scalar_i64(ex, n, d.alpha_arg);
    }

    int64_t total = pt_numel(out);
    if (in_float) {
        if (total == 0) return PETREL_OK;
        bin_rows c = {.x = &x, .y = &y, .fn = d.fn, .alpha = alpha_f, .rnd = rnd, .out = out,
                      .lead = rank > 0 ? rank - 1 : 0, .shape = shape, .inner = rank > 0 ? shape[rank - 1] : 1,
                      .fast = bin_fast_ok(d.fn, alpha_f, &x, &y, odt)};
        pk_parallel(ex, total / c.inner, pt_pool_min_items(8 * c.inner), bin_float_rows, &c);
        return PETREL_OK;
    }
    int64_t idx[PETREL_MAX_RANK] = {0};
    for (int64_t i = 0; i < total; i++, pt_next_index(idx, shape, rank)) {
        int64_t r;
        if (!bin_i64(d.fn, bin_load_i64(&x, idx), bin_load_i64(&y, idx), alpha_i, &r))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "integer division by zero");
        pt_store_i64(ew_elem(out, i), odt, r);
    }
    return PETREL_OK;
}
