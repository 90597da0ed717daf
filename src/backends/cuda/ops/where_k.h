/*
** where_k.h -- launchers of the CUDA selection kernels (where_k.cu), called
** by where.c.  Plain C.
*/
#ifndef PETREL_CUDA_WHERE_K_H
#define PETREL_CUDA_WHERE_K_H

#include "ew_k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out = in[0] ? in[1] : in[2]; the condition is read for truthiness, the
 * chosen value in ct (PCU_CT_*). */
cudaError_t pcu_launch_where(const pcu_ew *it, int ct, cudaStream_t s);

/* Which clamp bounds exist, and which came from tensors (a NaN tensor bound
 * propagates; a NaN scalar bound is ignored, as in torch's CPU kernel). */
typedef struct pcu_clamp_params {
    bool lo, hi;
    bool lo_tensor, hi_tensor;
} pcu_clamp_params;

/* out = clamp(in[0], in[1], in[2]) in ct; absent bounds are ignored. */
cudaError_t pcu_launch_clamp(const pcu_ew *it, int ct, const pcu_clamp_params *p, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_WHERE_K_H */
