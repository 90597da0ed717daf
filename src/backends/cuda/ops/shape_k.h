/*
** shape_k.h -- launchers of the "shape" family's device kernels
** (shape_k.cu), called from shape.c.  Plain C: argument blocks passed by
** value, every launcher enqueues on `s` and returns cudaGetLastError().
** Output tensors are dense row-major; sources are strided (pcu_tdesc).
*/
#ifndef PETREL_CUDA_SHAPE_K_H
#define PETREL_CUDA_SHAPE_K_H

#include "../cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Inputs handled by one cat launch (larger lists take several). */
#define PCU_CAT_MAX 8

/* cat of contiguous inputs of the output's dtype: every output row
 * (outer index) is the concatenation of one byte row of each input. */
typedef struct pcu_cat_bytes {
    void *out;
    int64_t outer;                 /* rows */
    int64_t out_row;               /* bytes per output row */
    int32_t n;                     /* inputs in this launch */
    const void *src[PCU_CAT_MAX];
    int64_t row[PCU_CAT_MAX];      /* bytes per input row */
    int64_t at[PCU_CAT_MAX];       /* byte offset of the input inside an output row */
} pcu_cat_bytes;

/* cat of any inputs: input i (strided, any dtype) lands at offset at[i]
 * along `dim` of the dense output, converted to its dtype. */
typedef struct pcu_cat_strided {
    void *out;
    int32_t odt, rank, dim, n;
    int64_t oshape[PCU_MAX_RANK];
    pcu_tdesc src[PCU_CAT_MAX];    /* rank = output rank */
    int64_t numel[PCU_CAT_MAX];
    int64_t at[PCU_CAT_MAX];
} pcu_cat_strided;

/* How output coordinate o of one dim maps to a source coordinate
 * (size = the source dim's size). */
enum {
    PCU_MAP_ID,        /* o */
    PCU_MAP_MOD,       /* o % size (repeat) */
    PCU_MAP_DIV,       /* o / arg (repeat_interleave) */
    PCU_MAP_FLIP,      /* size - 1 - o */
    PCU_MAP_ROLL,      /* (o - arg) mod size, arg in [0, size) */
    PCU_MAP_PAD,       /* o - arg, outside [0, size) -> fill value */
    PCU_MAP_REFLECT,   /* o - arg reflected at the edges */
    PCU_MAP_REPLICATE, /* o - arg clamped to the edges */
    PCU_MAP_CIRCULAR,  /* o - arg mod size */
};

/* Generic gather: out[o] = src[map(o)] per dim, or the fill value where
 * a PAD dim falls outside or tril/triu masks the element out.  With
 * `flat`, the source position is instead the row-major index
 * ((o / flat_div) + flat_mod - flat_shift) % flat_mod of src (flattened
 * roll and repeat_interleave). */
typedef struct pcu_remap {
    pcu_tdesc src;                 /* rank = output rank (flat: its own) */
    void *out;
    int32_t odt, rank;
    int64_t oshape[PCU_MAX_RANK];
    int64_t numel;
    int32_t mode[PCU_MAX_RANK];    /* PCU_MAP_* */
    int64_t arg[PCU_MAX_RANK];
    int32_t tri;                   /* 0; 1: keep col - row <= tri_k; 2: keep >= tri_k */
    int64_t tri_k;
    int32_t flat;
    int64_t flat_div, flat_shift, flat_mod;
    int32_t fill_is_int;
    int64_t fill_i;
    double fill_f;
} pcu_remap;

/* torch.diff: n-th forward difference along dim of cat([part 0, 1, 2]),
 * each step rounded to the output dtype (xor for bool, wrapping for
 * integers).  Parts have the output's rank; len[k] is part k's length
 * along dim (0 = absent). */
#define PCU_DIFF_MAX_ORDER 16
typedef struct pcu_diff {
    pcu_tdesc part[3];
    int64_t len[3];
    int32_t dim, order;
    void *out;
    int32_t odt, rank;
    int64_t oshape[PCU_MAX_RANK];
    int64_t numel;
} pcu_diff;

PT_HIDDEN cudaError_t pcu_cat_bytes_launch(const pcu_cat_bytes *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_cat_strided_launch(const pcu_cat_strided *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_remap_launch(const pcu_remap *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_diff_launch(const pcu_diff *a, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_SHAPE_K_H */
