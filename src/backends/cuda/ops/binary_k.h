/*
** binary_k.h -- launcher of the CUDA binary elementwise kernels
** (binary_k.cu), called by binary.c.  Plain C.
*/
#ifndef PETREL_CUDA_BINARY_K_H
#define PETREL_CUDA_BINARY_K_H

#include "ew_k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The binary functions; the launcher instantiates one kernel per entry. */
#define PCU_BIN_FNS(X)                                                                             \
    X(ADD) X(SUB) X(RSUB) X(MUL) X(DIV) X(DIV_TRUNC) X(DIV_FLOOR) X(REMAINDER) X(FMOD) X(POW)      \
    X(MAXIMUM) X(MINIMUM) X(ATAN2)                                                                 \
    X(LAND) X(LOR) X(LXOR) X(BAND) X(BOR) X(BXOR)                                                  \
    X(EQ) X(NE) X(LT) X(LE) X(GT) X(GE)

typedef enum pcu_bin_fn {
#define PCU_BIN_ENUM(name) PCU_BIN_##name,
    PCU_BIN_FNS(PCU_BIN_ENUM)
#undef PCU_BIN_ENUM
    PCU_BIN_COUNT
} pcu_bin_fn;

typedef struct pcu_bin_params {
    double alpha_f;   /* add/sub/rsub alpha for float computes */
    int64_t alpha_i;  /* ... and for int64 computes */
    int32_t rnd;      /* petrel_dtype float operands are rounded to first */
    bool rnd_ops;     /* false when no tensor operand needs that rounding */
} pcu_bin_params;

/* out = fn(in[0], in[1]) over the iterator, computed in ct (PCU_CT_*).
 * Integer division by zero cannot be reported from a kernel: it gives 0. */
cudaError_t pcu_launch_binary(const pcu_ew *it, int fn, int ct, const pcu_bin_params *p,
                          cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_BINARY_K_H */
