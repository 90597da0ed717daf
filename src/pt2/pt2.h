/*
** pt2.h -- import a torch.export `.pt2` archive into the graph IR.  Reads
** models/model.json (schema major 8, any minor; unknown keys ignored),
** binds parameters, buffers and constants to their raw bytes inside the
** mapped archive (no copies) and normalizes every node's arguments against
** its schema in ops.def.  Layer: pt2 -> ir -> core.
*/
#ifndef PETREL_PT2_H
#define PETREL_PT2_H

#include "../ir/ir.h"
#include "zip.h"

/* Import the first model of an open archive.  The graph borrows weight
 * bytes from `z`, which must stay open while the graph is used.  On failure
 * `g` is freed and `err` names the file and field at fault. */
PT_HIDDEN petrel_status pt2_import(pt_graph *g, const pz_archive *z, pt_err *err);

/* The name of an archive entry inside `<root>/extra/` (the files given to
 * torch.export.save's extra_files), or NULL for any other entry. */
PT_HIDDEN const char *pt2_extra_name(const pz_entry *e);

/* Map a dtype number of the export schema (FLOAT = 7, ...) to petrel's;
 * -1 when petrel has no such dtype. */
PT_HIDDEN int pt2_dtype_from_schema(int64_t v);

#endif /* PETREL_PT2_H */
