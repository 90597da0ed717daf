/* caps/elementwise.h -- PCU_CAP(OP_ID, dtype mask, kernel family) lines; see ../caps.h. */
