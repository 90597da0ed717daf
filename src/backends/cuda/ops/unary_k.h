/*
** unary_k.h -- launcher of the CUDA unary elementwise kernels (unary_k.cu),
** called by unary.c.  Plain C.
*/
#ifndef PETREL_CUDA_UNARY_K_H
#define PETREL_CUDA_UNARY_K_H

#include "ew_k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The unary functions: float math first, then the integer-only bitwise_not
 * and the predicates, which read any dtype and write 0/1. */
#define PCU_UN_FNS(X)                                                                              \
    X(ABS) X(NEG) X(EXP) X(EXPM1) X(LOG) X(LOG2) X(LOG10) X(LOG1P) X(SQRT) X(RSQRT) X(SIN) X(COS)  \
    X(TAN) X(ASIN) X(ACOS) X(ATAN) X(SINH) X(COSH) X(TANH) X(ASINH) X(ACOSH) X(ATANH) X(SIGMOID)   \
    X(ERF) X(FLOOR) X(CEIL) X(ROUND) X(ROUND_DECIMALS) X(TRUNC) X(RECIPROCAL) X(SIGN) X(SQUARE)    \
    X(RELU) X(SILU) X(GELU) X(GELU_TANH) X(HARDSWISH) X(HARDSIGMOID) X(LEAKY_RELU) X(ELU)          \
    X(SOFTPLUS) X(MISH) X(RELU6) X(SELU) X(CELU)                                                   \
    X(BITWISE_NOT) X(LOGICAL_NOT) X(ISNAN) X(ISINF)

typedef enum pcu_un_fn {
#define PCU_UN_ENUM(name) PCU_UN_##name,
    PCU_UN_FNS(PCU_UN_ENUM)
#undef PCU_UN_ENUM
    PCU_UN_COUNT
} pcu_un_fn;

typedef struct pcu_un_params {
    double p0, p1, p2;  /* leaky_relu: slope; elu: alpha, scale, input_scale;
                           softplus: beta, threshold; celu: alpha;
                           round.decimals: p0 = 10^|decimals| */
    int64_t decimals;   /* round.decimals */
    bool bool_in;       /* bitwise_not of a bool tensor is logical not */
} pcu_un_params;

/* out = fn(in[0]) over the iterator, computed in ct (PCU_CT_*; for the
 * predicates, the type the input is read in). */
cudaError_t pcu_launch_unary(const pcu_ew *it, int fn, int ct, const pcu_un_params *p, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_UNARY_K_H */
