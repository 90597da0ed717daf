/*
** unary.c -- CPU reference kernels for elementwise unary ops: math
** functions, activations (relu, silu, gelu, hardswish, elu, softplus,
** mish, ...), rounding, sign, logical/bitwise not, isnan/isinf.  Part of
** the CPU backend.
**
** Float outputs are computed in double from the input (an integer input
** is first cast to the float compute type, as torch casts it to the
** output dtype) and stored once.  Integer outputs exist only for the ops
** torch defines on integers (abs, neg, sign, square, relu, rounding,
** bitwise_not) and are computed in int64.  Predicates (logical_not, isnan,
** isinf) read the input's truth/class and store 0/1.
*/
#include "ew_util.h"

/* Parameters some activations take, read once per node. */
typedef struct un_params {
    bool gelu_tanh;
    int64_t decimals;   /* round.decimals */
    bool single;        /* round.decimals: torch computes in float for f32/f16/bf16 */
    double p0, p1, p2; /* leaky_relu: slope; elu: alpha, scale, input_scale;
                          softplus: beta, threshold */
} un_params;

static double un_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The float computation of op on x. */
static double un_f64(pt_op op, double x, const un_params *p) {
    switch (op) {
    case PETREL_OP_ABS: return fabs(x);
    case PETREL_OP_NEG: return -x;
    case PETREL_OP_EXP: return exp(x);
    case PETREL_OP_EXPM1: return expm1(x);
    case PETREL_OP_LOG: return log(x);
    case PETREL_OP_LOG2: return log2(x);
    case PETREL_OP_LOG10: return log10(x);
    case PETREL_OP_LOG1P: return log1p(x);
    case PETREL_OP_SQRT: return sqrt(x);
    case PETREL_OP_RSQRT: return 1.0 / sqrt(x);
    case PETREL_OP_SIN: return sin(x);
    case PETREL_OP_COS: return cos(x);
    case PETREL_OP_TAN: return tan(x);
    case PETREL_OP_ASIN: return asin(x);
    case PETREL_OP_ACOS: return acos(x);
    case PETREL_OP_ATAN: return atan(x);
    case PETREL_OP_SINH: return sinh(x);
    case PETREL_OP_COSH: return cosh(x);
    case PETREL_OP_TANH: return tanh(x);
    case PETREL_OP_ASINH: return asinh(x);
    case PETREL_OP_ACOSH: return acosh(x);
    case PETREL_OP_ATANH: return atanh(x);
    case PETREL_OP_SIGMOID: return un_sigmoid(x);
    case PETREL_OP_ERF: return erf(x);
    case PETREL_OP_FLOOR: return floor(x);
    case PETREL_OP_CEIL: return ceil(x);
    case PETREL_OP_ROUND: return nearbyint(x); /* half to even, like torch.round */
    case PETREL_OP_ROUND_DECIMALS: {
        /* torch: nearbyint(x * 10^d) / 10^d (d < 0: nearbyint(x / 10^-d) * 10^-d),
         * in the input's precision */
        int64_t d = p->decimals < 0 ? -p->decimals : p->decimals;
        double tp = pow(10.0, (double)d);
        if (p->single) {
            float xf = (float)x, tf = (float)tp;
            return p->decimals >= 0 ? nearbyintf(xf * tf) / tf : nearbyintf(xf / tf) * tf;
        }
        return p->decimals >= 0 ? nearbyint(x * tp) / tp : nearbyint(x / tp) * tp;
    }
    case PETREL_OP_TRUNC: return trunc(x);
    case PETREL_OP_RECIPROCAL: return 1.0 / x;
    case PETREL_OP_SIGN: return (double)((0 < x) - (x < 0)); /* NaN -> 0, as torch's CPU kernel */
    case PETREL_OP_SQUARE: return x * x;
    case PETREL_OP_RELU:
    case PETREL_OP_RELU_: return isnan(x) ? x : (x > 0 ? x : 0);
    case PETREL_OP_SILU:
    case PETREL_OP_SILU_: return x * un_sigmoid(x);
    case PETREL_OP_GELU:
        if (p->gelu_tanh) {
            const double k = 0.7978845608028654; /* sqrt(2 / pi) */
            return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
        }
        return 0.5 * x * (1.0 + erf(x * 0.7071067811865476));
    case PETREL_OP_HARDSWISH:
    case PETREL_OP_HARDSWISH_: return x * fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0;
    case PETREL_OP_HARDSIGMOID:
    case PETREL_OP_HARDSIGMOID_: return fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0;
    case PETREL_OP_LEAKY_RELU: return x > 0 ? x : x * p->p0;
    case PETREL_OP_ELU:
        return x > 0 ? x * p->p1 : expm1(x * p->p2) * p->p0 * p->p1;
    case PETREL_OP_SOFTPLUS:
        return x * p->p0 > p->p1 ? x : log1p(exp(x * p->p0)) / p->p0;
    case PETREL_OP_MISH: return x * tanh(log1p(exp(x)));
    case PETREL_OP_RELU6: return isnan(x) ? x : fmin(fmax(x, 0.0), 6.0);
    case PETREL_OP_SELU: {
        /* constants from the SELU paper, as torch uses them */
        const double alpha = 1.6732632423543772848170429916717, scale = 1.0507009873554804934193349852946;
        return scale * (x > 0 ? x : alpha * expm1(x));
    }
    case PETREL_OP_CELU: return x > 0 ? x : p->p0 * expm1(x / p->p0);
    default: return NAN;
    }
}

/* The integer computation of op on x; false when op has no integer form. */
static bool un_i64(pt_op op, int64_t x, petrel_dtype in_dt, int64_t *r) {
    switch (op) {
    case PETREL_OP_ABS: *r = x < 0 ? (int64_t)((uint64_t)0 - (uint64_t)x) : x; return true;
    case PETREL_OP_NEG: *r = (int64_t)((uint64_t)0 - (uint64_t)x); return true;
    case PETREL_OP_SIGN: *r = (0 < x) - (x < 0); return true;
    case PETREL_OP_SQUARE: *r = (int64_t)((uint64_t)x * (uint64_t)x); return true;
    case PETREL_OP_RELU:
    case PETREL_OP_RELU_: *r = x > 0 ? x : 0; return true;
    case PETREL_OP_FLOOR:
    case PETREL_OP_CEIL:
    case PETREL_OP_ROUND:
    case PETREL_OP_TRUNC: *r = x; return true;
    case PETREL_OP_BITWISE_NOT:
        /* on bool tensors bitwise_not is logical not */
        *r = in_dt == PETREL_DTYPE_BOOL ? !x : ~x;
        return true;
    default: return false;
    }
}

/*
** cpu_k_unary -- every op of the "unary" family in ops.def (in-place
** variants compute like their functional forms).  Writes one fresh output
** of the input's shape and the exported dtype.  Fails for an unknown gelu
** approximation or an op applied to a dtype torch does not define it on
** (e.g. bitwise_not of a float tensor).
*/
/* Float results over the output's rows (x's last dim), spread over the
 * program's threads, x's row start found once per row: the same values as
 * one element at a time. */
typedef struct un_rows {
    const pt_tensor *x, *out;
    pt_op op;
    const un_params *p;
    bool in_float;
    petrel_dtype rnd;
    int lead;       /* leading dims (rank - 1; 0 for a 0-d tensor) */
    int64_t inner;  /* elements per row */
} un_rows;

static void un_float_rows(void *ctx, int part, int64_t r0, int64_t r1) {
    (void)part;
    const un_rows *c = ctx;
    const pt_tensor *x = c->x;
    int64_t idx[PETREL_MAX_RANK] = {0};
    ew_row_index(r0, c->lead, x->shape, idx);
    int64_t xes = (int64_t)pt_elsize(x), oes = (int64_t)pt_elsize(c->out);
    int64_t step = c->lead < x->rank ? x->stride[c->lead] * xes : 0;
    petrel_dtype odt = c->out->dtype;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = pt_at(x, idx);
        uint8_t *dst = c->out->data + r * c->inner * oes;
        for (int64_t j = 0; j < c->inner; j++) {
            double v = pt_load_f64(src + j * step, x->dtype);
            if (!c->in_float) v = ew_round(v, c->rnd);
            pt_store_f64(dst + j * oes, odt, un_f64(c->op, v, c->p));
        }
        pt_next_index(idx, x->shape, c->lead);
    }
}

petrel_status cpu_k_unary(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
    pt_op op = n->op;

    un_params p = {0};
    switch (op) {
    case PETREL_OP_GELU: {
        const char *a = pk_str(ex, n, 1);
        if (!a || strcmp(a, "none") == 0) p.gelu_tanh = false;
        else if (strcmp(a, "tanh") == 0) p.gelu_tanh = true;
        else return pk_fail(ex, PETREL_ERR_RUNTIME, "gelu: unknown approximate '%s'", a);
        break;
    }
    case PETREL_OP_LEAKY_RELU:
    case PETREL_OP_CELU: p.p0 = pk_float(ex, n, 1); break;
    case PETREL_OP_ROUND_DECIMALS: {
        const pt_tensor *xin = pk_tensor(ex, n, 0);
        p.decimals = pk_int(ex, n, 1);
        p.single = xin && xin->dtype != PETREL_DTYPE_F64;
        break;
    }
    case PETREL_OP_ELU:
        p.p0 = pk_float(ex, n, 1);
        p.p1 = pk_float(ex, n, 2);
        p.p2 = pk_float(ex, n, 3);
        break;
    case PETREL_OP_SOFTPLUS:
        p.p0 = pk_float(ex, n, 1);
        p.p1 = pk_float(ex, n, 2);
        break;
    default: break;
    }

    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    petrel_dtype odt = out->dtype;
    bool in_float = ew_is_float(x->dtype);
    bool predicate = op == PETREL_OP_LOGICAL_NOT || op == PETREL_OP_ISNAN || op == PETREL_OP_ISINF;
    if (op == PETREL_OP_BITWISE_NOT && in_float)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "bitwise_not needs an integer or bool tensor");
    if (!predicate && !ew_is_float(odt)) {
        int64_t probe;
        if (!un_i64(op, 0, x->dtype, &probe))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "op not defined for integer dtype %s",
                           petrel_dtype_name(odt));
    }
    petrel_dtype rnd = ew_opmath(odt);

    int64_t total = pt_numel(out), idx[PETREL_MAX_RANK] = {0};
    if (!predicate && ew_is_float(odt)) {
        if (total == 0) return PETREL_OK;
        un_rows c = {.x = x, .out = out, .op = op, .p = &p, .in_float = in_float, .rnd = rnd,
                     .lead = x->rank > 0 ? x->rank - 1 : 0, .inner = x->rank > 0 ? x->shape[x->rank - 1] : 1};
        pk_parallel(ex, total / c.inner, pt_pool_min_items(8 * c.inner), un_float_rows, &c);
        return PETREL_OK;
    }
    for (int64_t i = 0; i < total; i++, pt_next_index(idx, x->shape, x->rank)) {
        const uint8_t *src = pt_at(x, idx);
        uint8_t *dst = ew_elem(out, i);
        if (predicate) {
            double v = pt_load_f64(src, x->dtype);
            bool r = op == PETREL_OP_LOGICAL_NOT ? v == 0 : op == PETREL_OP_ISNAN ? isnan(v) != 0
                                                                                : isinf(v) != 0;
            pt_store_i64(dst, odt, r);
        } else { /* integer results (float ones: un_float_rows) */
            int64_t r = 0;
            un_i64(op, pt_load_i64(src, x->dtype), x->dtype, &r);
            pt_store_i64(dst, odt, r);
        }
    }
    return PETREL_OK;
}
