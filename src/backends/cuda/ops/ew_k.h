/*
** ew_k.h -- the elementwise iterator of the CUDA backend ("TensorIterator
** lite"), shared by the host side of the elementwise families (ew.c,
** binary.c, unary.c, where.c, copy.c, create.c) and their kernels (*_k.cu).
** Plain C: the host builds a pcu_ew, the launchers take it by value.
**
** One output and up to three inputs over one shape.  Each input is a device
** tensor (its own strides, 0 where it broadcasts) or a scalar held by value.
** The host coalesces dimensions first (ew.c), so a dense operation is rank 1
** whatever the tensors' ranks; dims are stored innermost first so kernels
** can index them with unrolled constant indices.
*/
#ifndef PETREL_CUDA_EW_K_H
#define PETREL_CUDA_EW_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#define PCU_EW_RANK 8  /* PETREL_MAX_RANK */
#define PCU_EW_MAXIN 3

/* The type a kernel computes in: float for f32/f16/bf16 ("opmath"),
 * double for f64, int64 for integer and bool arithmetic. */
enum { PCU_CT_F32 = 0, PCU_CT_F64 = 1, PCU_CT_I64 = 2 };

/* One input: a strided device tensor, or (data == NULL) a scalar. */
typedef struct pcu_ew_arg {
    const void *data;              /* device pointer to element 0; NULL = scalar */
    int32_t dtype;                 /* petrel_dtype */
    int64_t stride[PCU_EW_RANK];   /* elements, innermost dim first */
    double f;                      /* scalar read by float/double kernels */
    int64_t i;                     /* scalar read by int64 kernels */
} pcu_ew_arg;

typedef struct pcu_ew {
    int32_t rank;                  /* coalesced */
    int64_t shape[PCU_EW_RANK];    /* innermost dim first */
    int64_t numel;
    int32_t nin;
    pcu_ew_arg in[PCU_EW_MAXIN];
    void *out;                     /* device pointer to element 0 */
    int32_t out_dtype;
    int64_t out_stride[PCU_EW_RANK];
    bool idx32;                    /* numel and every offset fit in 31 bits */
    bool dense;                    /* rank <= 1 and every tensor has stride 1 */
} pcu_ew;

#endif /* PETREL_CUDA_EW_K_H */
