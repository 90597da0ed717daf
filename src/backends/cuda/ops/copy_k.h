/*
** copy_k.h -- launchers of the CUDA copy and fill kernels (copy_k.cu),
** called by copy.c (pcu_copy_into, the copy family) and create.c.  Plain C.
*/
#ifndef PETREL_CUDA_COPY_K_H
#define PETREL_CUDA_COPY_K_H

#include "ew_k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out = in[0] converted like torch's copy_ (float -> int truncates,
 * anything -> bool is != 0, f16/bf16 round to nearest even); a raw element
 * copy when the dtypes are equal. */
cudaError_t pcu_launch_copy(const pcu_ew *it, cudaStream_t s);

/* Set n dense elements of `elsize` bytes (1, 2, 4 or 8) at dst to the
 * element whose bytes are the low `elsize` bytes of `bits` (little-endian). */
cudaError_t pcu_launch_fill(void *dst, int64_t n, int elsize, uint64_t bits, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_COPY_K_H */
