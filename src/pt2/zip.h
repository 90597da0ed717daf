/*
** zip.h -- a read-only view of a ZIP archive of STORED entries, mapped into
** memory, as torch.export.save writes it (zip64 end records, data
** descriptors, 64-byte aligned payloads).  Entries are returned as pointers
** into the mapping: no copies.  Used by the .pt2 importer.
*/
#ifndef PETREL_ZIP_H
#define PETREL_ZIP_H

#include "../core/core.h"

typedef struct pz_entry {
    char *name;            /* NUL-terminated copy of the entry name */
    const uint8_t *data;   /* start of the payload inside the mapping */
    uint64_t size;         /* uncompressed == compressed size (STORED) */
    uint32_t crc;
} pz_entry;

typedef struct pz_archive {
    const uint8_t *map;    /* whole file */
    uint64_t map_size;
    bool owns_map;         /* pz_open mapped it; pz_close unmaps it */
    int32_t n;
    pz_entry *entries;
} pz_archive;

/* Map `path` and index its central directory.  Every offset and size is
 * bounds-checked; compressed entries, encrypted entries and multi-disk
 * archives are rejected with PETREL_ERR_UNSUPPORTED/FORMAT and a message in
 * `err` naming the entry.  On failure *z is left closed. */
PT_HIDDEN petrel_status pz_open(pz_archive *z, const char *path, pt_err *err);
/* Index an archive already in memory (borrowed; must outlive z). */
PT_HIDDEN petrel_status pz_open_memory(pz_archive *z, const uint8_t *buf, uint64_t size,
                                       pt_err *err);
PT_HIDDEN void pz_close(pz_archive *z);
/* Entry by exact name, or NULL. */
PT_HIDDEN const pz_entry *pz_find(const pz_archive *z, const char *name);
/* CRC-32 of a payload (IEEE), to verify entries on demand. */
PT_HIDDEN uint32_t pz_crc32(const uint8_t *p, uint64_t n);

#endif /* PETREL_ZIP_H */
