/*
** ops.c -- the op table generated from ops.def, and lookup by target name.
*/
#include <string.h>

#include "ops.h"

const pt_op_info pt_op_table[PETREL_OP_COUNT] = {
#define PT_OP(id, target, schema, kernel, flags) {#id, target, schema, #kernel, flags},
#include "ops.def"
#undef PT_OP
};

int pt_op_find(const char *target) {
    if (strncmp(target, "torch.ops.", 10) == 0) target += 10;
    /* Linear scan: ~300 entries, called once per node at load time. */
    for (int i = 0; i < PETREL_OP_COUNT; i++)
        if (strcmp(pt_op_table[i].target, target) == 0) return i;
    return -1;
}
