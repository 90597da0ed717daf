/*
** index_k.h -- launchers of the "index" family's device kernels
** (index_k.cu), called from index.c.  Plain C: argument blocks passed by
** value, every launcher enqueues on `s` and returns cudaGetLastError().
**
** Index values live on the device, so a kernel cannot fail the node on an
** out-of-range index the way the CPU backend does: a gather reads zeros
** for it and a scatter skips the write.  No kernel reads or writes outside
** its tensors.  Where several writes hit one element (duplicate indices
** without accumulation) one of them wins, unspecified which, as in torch's
** CUDA backend; accumulating writes are atomic.
*/
#ifndef PETREL_CUDA_INDEX_K_H
#define PETREL_CUDA_INDEX_K_H

#include "../cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Take along one dim: self (r dims) indexed at `dim` by every element of
 * `index` (any shape), giving the dense (self dims before dim, index dims,
 * self dims after dim): index_select and embedding. */
typedef struct pcu_take {
    pcu_tdesc self;
    pcu_tdesc index;              /* integer dtype */
    int32_t dim;
    int64_t nidx;                 /* index elements */
    int64_t inner;                /* elements of the self dims after dim */
    int64_t numel;                /* output elements */
    void *out;
    int32_t odt;
    int32_t rows;                 /* the dims after dim are contiguous in self and
                                     self has the output's dtype: copy whole rows */
} pcu_take;

/* Walks of torch.gather / scatter / index_copy / index_add: positions c
 * of a walked shape; the target coordinate is c with c[dim] replaced by
 * the wrapped index value at c (index viewed over the walked shape). */
enum {
    PCU_WALK_GATHER,     /* out[c] = tgt[c'] (out dense over the walked shape) */
    PCU_WALK_SCATTER,    /* tgt[c'] = src[c] */
    PCU_WALK_ADD,        /* tgt[c'] += alpha * src[c], atomically */
    PCU_WALK_FILL,       /* tgt[c'] = fill value */
};
typedef struct pcu_walk {
    int32_t kind, rank, dim;
    int64_t wshape[PCU_MAX_RANK];
    int64_t numel;                /* walked positions */
    pcu_tdesc index;              /* over wshape */
    pcu_tdesc src;                /* over wshape (SCATTER, ADD) */
    pcu_tdesc tgt;                /* GATHER: read; others: written (the output) */
    void *out;                    /* GATHER: dense result */
    int32_t odt;
    int32_t fill_is_int;
    int64_t fill_i;               /* FILL value; ADD: integer alpha */
    double fill_f;                /* FILL value; ADD: float alpha */
} pcu_walk;

/* Advanced indexing self[indices] (index.Tensor) and its assignment
 * (index_put): result position ridx (rshape) reads self at, per self dim
 * d, the wrapped index of tensor d at the broadcast position (ridx[first
 * .. first + br)) when d is indexed, else the next result coordinate
 * outside that block. */
typedef struct pcu_adv {
    pcu_tdesc self;               /* read (index) or written (put: the output) */
    int32_t has[PCU_MAX_RANK];    /* self dim d is indexed by a tensor */
    const void *idata[PCU_MAX_RANK];
    int32_t idt[PCU_MAX_RANK];
    int64_t istride[PCU_MAX_RANK][PCU_MAX_RANK]; /* index d over the br broadcast dims */
    int32_t br, first, rrank;
    int64_t rshape[PCU_MAX_RANK];
    int64_t numel;                /* result positions */
    void *out;                    /* index: dense result */
    int32_t odt;
    int32_t put, accumulate;
    pcu_tdesc values;             /* put: over rshape */
    int32_t fill;                 /* put: values is a Python number */
    int32_t fill_is_int;
    int64_t fill_i;
    double fill_f;
} pcu_adv;

/* one_hot: out (numel / classes, classes) = (self[t] == c). */
typedef struct pcu_one_hot {
    pcu_tdesc self;
    int64_t classes, numel;
    void *out;
    int32_t odt;
} pcu_one_hot;

/* topk along dim of a float tensor (MoE routing): every row (a position
 * of the other dims) ordered as the CPU kernel's stable sort orders it --
 * by value, largest first when `largest` (NaN counting as larger than
 * everything), ties by position -- and its first k written: vals (self's
 * dtype) and idx (i64), both dense of self's shape with dim of size k.
 * k passes, each picking the element that comes next after the one the
 * pass before picked: a warp per row of up to 512 elements (its values
 * held in registers), a block per longer row. */
typedef struct pcu_topk_rows {
    pcu_tdesc self;               /* f32 / f16 / bf16 */
    int32_t dim;
    int64_t len, k, rows;         /* self.shape[dim]; rows: the other dims' product */
    int32_t largest;
    int64_t ostride[PCU_MAX_RANK]; /* the outputs' dense strides */
    void *vals, *idx;             /* NULL: not wanted */
} pcu_topk_rows;

PT_HIDDEN cudaError_t pcu_take_launch(const pcu_take *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_walk_launch(const pcu_walk *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_adv_launch(const pcu_adv *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_one_hot_launch(const pcu_one_hot *a, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_topk_rows_launch(const pcu_topk_rows *a, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_INDEX_K_H */
