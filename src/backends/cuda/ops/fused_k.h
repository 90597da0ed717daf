/*
** fused_k.h -- launchers of the "fused" family's own device kernels
** (fused_k.cu): petrel.rope, the cache write of petrel.sdpa_cache and
** petrel.rope_table.
** petrel.rms_norm runs on the norm kernel (norm_k.h) and the attention of
** petrel.sdpa_cache on the shared attention kernel (sdpa_k.h).  Plain C:
** argument blocks by value, every launcher enqueues on `s` and returns
** cudaGetLastError().
*/
#ifndef PETREL_CUDA_FUSED_K_H
#define PETREL_CUDA_FUSED_K_H

#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PCU_ROPE_RANK 8 /* PETREL_MAX_RANK */

/* petrel.rope over x (..., D): rows are the leading dims; cos / sin are
 * already broadcast to x[..., :R] (their strides, 0 where repeated). */
typedef struct pcu_rope {
    const void *x, *cos, *sin;
    int32_t xdt, cdt, sdt, odt;
    void *out;                       /* dense, x's shape */
    int32_t rank;                    /* of x, >= 1 */
    int64_t shape[PCU_ROPE_RANK];
    int64_t xs[PCU_ROPE_RANK], cs[PCU_ROPE_RANK], ss[PCU_ROPE_RANK]; /* strides */
    int64_t R;                       /* rotated channels (even, <= D) */
} pcu_rope;

cudaError_t pcu_rope_launch(cudaStream_t s, const pcu_rope *a);

/* petrel.sdpa_cache's write: cache[b, h, pos[i]] = new[b, h, i] for the
 * key and the value cache, converting to the cache dtype.  Rows whose
 * position lies outside [0, S) are skipped (the host cannot read pos to
 * report them); of repeated positions the last one wins. */
typedef struct pcu_cache_write {
    void *kc, *vc;                   /* (B, H, S, E) and (B, H, S, Ev) */
    int32_t kcdt, vcdt;
    int64_t kcs[4], vcs[4];
    const void *k, *v;               /* (B, H, L, E) and (B, H, L, Ev) */
    int32_t kdt, vdt;
    int64_t ks[4], vs[4];
    const void *pos;                 /* (L) integers */
    int32_t pos_dt;
    int64_t pos_s;
    int64_t B, H, L, S, E, Ev;
} pcu_cache_write;

cudaError_t pcu_cache_write_launch(cudaStream_t s, const pcu_cache_write *a);

/* petrel.rope_table: both tables in one launch, computed as the CPU
 * oracle does (ops.def's rounding points; cos and sin in double). */
typedef struct pcu_rope_table {
    const void *inv, *pos;           /* inv_freq (H) float; positions (B, L) integer or float */
    int32_t inv_dt, pos_dt, odt;
    int64_t inv_s, pos_s[2];         /* strides */
    void *cos, *sin;                 /* dense (B, L, 2H) of dtype odt */
    int64_t B, L, H;
    float scale;                     /* float32(scale) */
} pcu_rope_table;

cudaError_t pcu_rope_table_launch(cudaStream_t s, const pcu_rope_table *a);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_FUSED_K_H */
