/*
** backend.c -- CPU backend dispatch table, generated from ops.def so that an
** op without a CPU kernel family fails to build.
*/
#include "cpu.h"

static const pt_kernel_fn cpu_kernels[PETREL_OP_COUNT] = {
#define PT_OP(id, target, schema, kernel, flags) [PETREL_OP_##id] = cpu_k_##kernel,
#include "../../core/ops.def"
#undef PT_OP
};
_Static_assert(sizeof cpu_kernels / sizeof cpu_kernels[0] == PETREL_OP_COUNT,
               "cpu_kernels must cover every op");

pt_kernel_fn cpu_kernel(pt_op op) { return cpu_kernels[op]; }
