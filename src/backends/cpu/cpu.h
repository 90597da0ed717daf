/*
** cpu.h -- the CPU reference backend: one kernel family per file in ops/,
** dispatched by op through a table generated from ops.def.  These kernels
** are the oracle every other backend is tested against: plain loops,
** arbitrary strides, every dtype torch allows, computed in double (floats)
** or int64 (integers) and rounded once to the output dtype.
*/
#ifndef PETREL_CPU_H
#define PETREL_CPU_H

#include "../../runtime/kernel.h"

/* Kernel families (each implemented in ops/<family>.c). */
PT_HIDDEN petrel_status cpu_k_binary(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_where(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_unary(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_reduce(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_matmul(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_conv(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_pool(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_norm(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_sdpa(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_view(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_copy(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_shape(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_index(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_create(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_symbolic(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_noop(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_fused(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cpu_k_quant(pt_exec *ex, const pt_node *n);

/* The RMSNorm prologue of the fused linears (ops.def, petrel.linear_n):
 * when node n's argument a (norm) is true, *xn = petrel.rms_norm of x
 * with the node's arguments a + 1 .. a + 4 (norm_weight, norm_eps,
 * norm_add_one, norm_dtype), rounded to x's dtype, in dense node scratch
 * (ops/fused.c); else *xn = *x.  Fails the node on bad arguments. */
PT_HIDDEN petrel_status cpu_rms_norm_prologue(pt_exec *ex, const pt_node *n, int a, const pt_tensor *x,
                                              pt_tensor *xn);

/* The kernel for an op (never NULL for a valid op). */
PT_HIDDEN pt_kernel_fn cpu_kernel(pt_op op);

#endif /* PETREL_CPU_H */
