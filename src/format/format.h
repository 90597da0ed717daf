/*
** format.h -- the petrel program file (`.petrel`): what `petrel compile`
** writes and the runtime maps.  Layer: format -> ir -> core; the compiler
** and the runtime meet here and nowhere else.
**
** Layout (all integers little-endian; docs/FORMAT.md mirrors this):
**
**  1. Header, 64 bytes at offset 0:
**       0  u8[8]  magic "PETRELPG"
**       8  u8[8]  sentinel "\x19\x93\r\n\x1a\n\0\0" (catches text-mode and
**                 newline-translating copies, as Lua's header does)
**      16  u16    major version (breaking changes only)
**      18  u16    minor version (compatible additions)
**      20  u32    header size: bytes from 0 to the end of the section table
**      24  u32    endianness probe 0x01020304
**      28  u8     sizeof(int64_t) = 8;  29: sizeof(double) = 8;  30-31: 0
**      32  u32    number of sections
**      36  u32    CRC-32 of the header and section table, this field as 0
**      40  u64    file size
**      48  u8[16] reserved, 0
**  2. Section table right after: one 32-byte entry per section:
**       u32 kind, u32 flags (0), u64 offset, u64 size, u32 crc32, u32 align
**     Payloads start at multiples of their `align` (64 for metadata, 4096
**     for weights, so an mmap of the file gives aligned tensors), do not
**     overlap, and lie inside the file.
**  3. Sections (a reader skips kinds it does not know):
**       1 STRINGS  NUL-terminated UTF-8 strings; others refer to them by
**                  byte offset (u32)
**       2 GRAPH    the graph IR record stream (format.c, write_graph)
**       3 WEIGHTS  raw tensor bytes, each tensor 64-byte aligned; its CRC
**                  is checked only by full verification, so a default load
**                  touches no weight page
**       4 EXTRA    named files carried along (tokenizer, chat template):
**                  u32 count, then {u32 name, u64 offset, u64 size} records
**                  pointing into this section
**
** Evolution: new section kinds and new trailing GRAPH fields bump the minor
** version; numbers are never reused; anything else bumps the major.  Ops
** are stored by their export target string, never by enum value, so ops.def
** can be reordered freely.
*/
#ifndef PETREL_FORMAT_H
#define PETREL_FORMAT_H

#include "../ir/ir.h"

#define PF_MAGIC "PETRELPG"
#define PF_SENTINEL "\x19\x93\r\n\x1a\n\0\0"
#define PF_MAJOR 1
#define PF_MINOR 1
#define PF_HEADER_FIXED 64
#define PF_SECTION_ENTRY 32

typedef enum pf_section_kind {
    PF_SEC_STRINGS = 1,
    PF_SEC_GRAPH = 2,
    PF_SEC_WEIGHTS = 3,
    PF_SEC_EXTRA = 4,
} pf_section_kind;

/* A named blob carried in the EXTRA section (borrowed pointers). */
typedef struct pf_extra {
    const char *name;
    const uint8_t *data;
    uint64_t size;
} pf_extra;

/* Test hook for fuzzing: when set, pf_read skips checksum comparisons so
 * mutated files reach the deeper checks (every bound and id is still
 * verified).  Never set outside fuzz targets. */
PT_HIDDEN extern bool pf_fuzz_skip_checksums;

/* True when `buf` starts like a program file (magic only). */
PT_HIDDEN bool pf_is_program(const uint8_t *buf, uint64_t size);

/* Serialize `g` (weights are copied from where its values point) to `path`,
 * atomically (temporary file + rename).  `extras` may be NULL. */
PT_HIDDEN petrel_status pf_write(const pt_graph *g, const pf_extra *extras, int nextras,
                                 const char *path, pt_err *err);

/* Load a program from a mapped file: every header field, section bound,
 * checksum (weights only when `full`), string, id and shape is verified
 * before anything runs; weights in the graph point into `buf`, which must
 * outlive `g`.  On failure `g` is freed and `err` names the first problem. */
PT_HIDDEN petrel_status pf_read(pt_graph *g, const uint8_t *buf, uint64_t size, bool full,
                                pt_err *err);

/* Section i of a verified file (kind, offset, size, alignment); false past
 * the end. */
PT_HIDDEN bool pf_section(const uint8_t *buf, uint64_t size, int i, uint32_t *kind, uint64_t *off,
                          uint64_t *len, uint32_t *align);

/* The EXTRA entry `name` of a verified file, or NULL. */
PT_HIDDEN const uint8_t *pf_find_extra(const uint8_t *buf, uint64_t size, const char *name,
                                       uint64_t *len);

#endif /* PETREL_FORMAT_H */
