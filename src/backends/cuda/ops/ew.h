/*
** ew.h -- host side shared by the CUDA elementwise families (binary.c,
** unary.c, where.c, copy.c, create.c): building the pcu_ew iterator
** (ew_k.h) from runtime tensors, and fills.
**
** The result-type rules, scalar reading and fill values come from the CPU
** reference's helpers (cpu/ops/ew_util.h, static inline), so that both
** backends promote, round and convert alike.
*/
#ifndef PETREL_CUDA_EW_H
#define PETREL_CUDA_EW_H

#include "../../cpu/ops/ew_util.h"
#include "../cuda.h"
#include "ew_k.h"

/* Start an iterator that writes `out` (a device tensor, any strides); its
 * shape is the iteration shape.  Then add the inputs in kernel order and
 * finish with pcu_ew_end. */
PT_HIDDEN void pcu_ew_begin(pcu_ew *it, const pt_tensor *out);
/* Add a device tensor input already broadcast to the output's shape
 * (pt_broadcast_to). */
PT_HIDDEN void pcu_ew_tensor(pcu_ew *it, const pt_tensor *view);
/* Add a scalar input: f is what float kernels read (already rounded as
 * the op requires), i what int64 kernels read. */
PT_HIDDEN void pcu_ew_scalar(pcu_ew *it, petrel_dtype dt, double f, int64_t i);
/* Coalesce dims (drop size-1 dims, merge dims every operand walks
 * contiguously) and decide 32-bit indexing.  numel 0 means: launch nothing. */
PT_HIDDEN void pcu_ew_end(pcu_ew *it);

/* Set every element of a dense device tensor to one value: `elem` points
 * at a host element of out's dtype. */
PT_HIDDEN petrel_status pcu_ew_fill_elem(pt_exec *ex, const pt_tensor *out, const void *elem);
/* The same with ew_fill's rule: fv for float outputs, fv != 0 for bool,
 * iv for integers. */
PT_HIDDEN petrel_status pcu_ew_fill(pt_exec *ex, const pt_tensor *out, double fv, int64_t iv);

#endif /* PETREL_CUDA_EW_H */
