/*
** caps.h -- what the CUDA backend can run, as data: the partitioner's view
** of the backend.  Built in every configuration (no CUDA headers), so
** `petrel compile --backend cuda` works on a machine without a GPU.
*/
#ifndef PETREL_CUDA_CAPS_H
#define PETREL_CUDA_CAPS_H

#include "../../ir/ir.h"

/* dtype masks for caps/<family>.h */
#define PCU_DT(x) (1u << PETREL_DTYPE_##x)
#define PCU_DT_FLOAT (PCU_DT(F32) | PCU_DT(F16) | PCU_DT(BF16))
#define PCU_DT_FLOAT64 (PCU_DT_FLOAT | PCU_DT(F64))
#define PCU_DT_INT (PCU_DT(I64) | PCU_DT(I32) | PCU_DT(I16) | PCU_DT(I8) | PCU_DT(U8))
#define PCU_DT_ALL (PCU_DT_FLOAT64 | PCU_DT_INT | PCU_DT(BOOL))

/* True when the CUDA backend runs node n: its op is listed in a caps table,
 * every tensor it reads or writes has a listed dtype and no argument asks
 * for what its kernel lacks (caps.c: petrel.rope's interleaved).
 * Otherwise *why (a static string) says what is missing. */
PT_HIDDEN bool pt_cuda_supports(const pt_graph *g, const pt_node *n, const char **why);

/* True when a caps table lists op (its kernel exists for some dtypes). */
PT_HIDDEN bool pt_cuda_has_op(pt_op op);

#endif /* PETREL_CUDA_CAPS_H */
