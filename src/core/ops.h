/*
** ops.h -- operator identity, generated from ops.def.  Bottom layer.
*/
#ifndef PETREL_OPS_H
#define PETREL_OPS_H

#include "core.h"

enum {
    PT_OPF_INPLACE = 1 << 0, /* mutates argument 0 and returns it */
    PT_OPF_VIEW = 1 << 1,    /* result may alias argument 0 */
    PT_OPF_STATE = 1 << 2,   /* writes its Tensor(a!) arguments (state buffers) in place */
};

typedef enum pt_op {
#define PT_OP(id, target, schema, kernel, flags) PETREL_OP_##id,
#include "ops.def"
#undef PT_OP
    PETREL_OP_COUNT
} pt_op;

typedef struct pt_op_info {
    const char *id;      /* "ADD_TENSOR" */
    const char *target;  /* "aten.add.Tensor" */
    const char *schema;  /* argument list with defaults */
    const char *kernel;  /* CPU kernel family name */
    unsigned flags;
} pt_op_info;

PT_HIDDEN extern const pt_op_info pt_op_table[PETREL_OP_COUNT];

/* Find an op by export target ("aten.add.Tensor"; a leading "torch.ops." is
 * accepted).  Returns -1 when unknown. */
PT_HIDDEN int pt_op_find(const char *target);

#endif /* PETREL_OPS_H */
