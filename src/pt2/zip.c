/*
** zip.c -- minimal, bounds-checked reader for STORED zip archives (zip64
** aware).  Hand-written rather than libzip/minizip because petrel needs the
** payload's offset in the mapped file (weights are used in place, never
** copied), which those libraries do not expose for stored entries.
*/
#include <string.h>

#include "zip.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* True when [off, off+len) lies inside a buffer of `size` bytes. */
static bool in_bounds(uint64_t size, uint64_t off, uint64_t len) {
    return off <= size && len <= size - off;
}

/* Locate the end-of-central-directory record and the directory itself. */
static petrel_status find_directory(const uint8_t *m, uint64_t size, uint64_t *cd_off,
                                    uint64_t *cd_size, uint64_t *count, pt_err *err) {
    if (size < 22) return pt_fail(err, PETREL_ERR_FORMAT, "not a zip archive (file is %llu bytes)",
                                  (unsigned long long)size);
    /* The EOCD is 22 bytes plus a comment of at most 65535 bytes. */
    uint64_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    uint64_t eocd = UINT64_MAX;
    for (uint64_t p = size - 22 + 1; p-- > lo;) {
        if (rd32(m + p) == 0x06054b50u) { eocd = p; break; }
    }
    if (eocd == UINT64_MAX)
        return pt_fail(err, PETREL_ERR_FORMAT, "not a zip archive (no end-of-central-directory record)");
    const uint8_t *e = m + eocd;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return pt_fail(err, PETREL_ERR_UNSUPPORTED, "multi-disk zip archives are not supported");
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    /* zip64: the locator sits right before the classic EOCD. */
    if (eocd >= 20 && rd32(m + eocd - 20) == 0x07064b50u) {
        uint64_t z64 = rd64(m + eocd - 20 + 8);
        if (!in_bounds(size, z64, 56) || rd32(m + z64) != 0x06064b50u)
            return pt_fail(err, PETREL_ERR_FORMAT, "zip64 end record out of bounds or corrupt");
        *count = rd64(m + z64 + 32);
        *cd_size = rd64(m + z64 + 40);
        *cd_off = rd64(m + z64 + 48);
    }
    if (!in_bounds(size, *cd_off, *cd_size))
        return pt_fail(err, PETREL_ERR_FORMAT, "zip central directory out of bounds (offset %llu, size %llu, file %llu)",
                       (unsigned long long)*cd_off, (unsigned long long)*cd_size, (unsigned long long)size);
    if (*count > *cd_size / 46)
        return pt_fail(err, PETREL_ERR_FORMAT, "zip entry count %llu does not fit the directory",
                       (unsigned long long)*count);
    return PETREL_OK;
}

/* Apply a zip64 extended-information extra field to the 0xFFFFFFFF fields. */
static petrel_status apply_zip64_extra(const uint8_t *x, uint64_t xlen, uint64_t *usize,
                                       uint64_t *csize, uint64_t *lho, const char *name,
                                       pt_err *err) {
    uint64_t p = 0;
    while (p + 4 <= xlen) {
        uint16_t id = rd16(x + p), len = rd16(x + p + 2);
        if (p + 4 + len > xlen) break;
        if (id == 0x0001) {
            const uint8_t *d = x + p + 4;
            uint64_t q = 0;
            uint64_t *fields[3] = {usize, csize, lho};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xFFFFFFFFu) continue;
                if (q + 8 > len)
                    return pt_fail(err, PETREL_ERR_FORMAT, "zip entry '%s': truncated zip64 extra field", name);
                *fields[i] = rd64(d + q);
                q += 8;
            }
            return PETREL_OK;
        }
        p += 4u + len;
    }
    if (*usize == 0xFFFFFFFFu || *csize == 0xFFFFFFFFu || *lho == 0xFFFFFFFFu)
        return pt_fail(err, PETREL_ERR_FORMAT, "zip entry '%s': missing zip64 extra field", name);
    return PETREL_OK;
}

petrel_status pz_open_memory(pz_archive *z, const uint8_t *m, uint64_t size, pt_err *err) {
    memset(z, 0, sizeof *z);
    z->map = m;
    z->map_size = size;
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    PT_TRY(find_directory(m, size, &cd_off, &cd_size, &count, err));
    z->entries = pt_calloc(count ? count : 1, sizeof *z->entries);
    if (!z->entries) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory reading zip directory");
    uint64_t p = cd_off, end = cd_off + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (!in_bounds(end, p, 46) || rd32(m + p) != 0x02014b50u)
            return pt_fail(err, PETREL_ERR_FORMAT, "zip central directory entry %llu is corrupt",
                           (unsigned long long)i);
        const uint8_t *c = m + p;
        uint16_t flags = rd16(c + 8), method = rd16(c + 10);
        uint32_t crc = rd32(c + 16);
        uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
        uint16_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
        uint64_t lho = rd32(c + 42);
        if (!in_bounds(end, p + 46, (uint64_t)nlen + xlen + clen))
            return pt_fail(err, PETREL_ERR_FORMAT, "zip central directory entry %llu overruns the directory",
                           (unsigned long long)i);
        char *name = pt_malloc((size_t)nlen + 1);
        if (!name) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory reading zip directory");
        memcpy(name, c + 46, nlen);
        name[nlen] = 0;
        z->entries[i].name = name;
        z->n = (int32_t)(i + 1);
        if (memchr(name, 0, nlen))
            return pt_fail(err, PETREL_ERR_FORMAT, "zip entry %llu has a NUL in its name", (unsigned long long)i);
        PT_TRY(apply_zip64_extra(c + 46 + nlen, xlen, &usize, &csize, &lho, name, err));
        if (flags & 1) return pt_fail(err, PETREL_ERR_UNSUPPORTED, "zip entry '%s' is encrypted", name);
        if (method != 0)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "zip entry '%s' is compressed (method %u); .pt2 archives store entries uncompressed",
                           name, method);
        if (csize != usize)
            return pt_fail(err, PETREL_ERR_FORMAT, "zip entry '%s': stored sizes differ (%llu vs %llu)", name,
                           (unsigned long long)csize, (unsigned long long)usize);
        if (!in_bounds(size, lho, 30) || rd32(m + lho) != 0x04034b50u)
            return pt_fail(err, PETREL_ERR_FORMAT, "zip entry '%s': local header out of bounds or corrupt", name);
        uint64_t data = lho + 30 + rd16(m + lho + 26) + rd16(m + lho + 28);
        if (!in_bounds(size, data, usize))
            return pt_fail(err, PETREL_ERR_FORMAT, "zip entry '%s': data (offset %llu, %llu bytes) runs past the end of the file",
                           name, (unsigned long long)data, (unsigned long long)usize);
        z->entries[i].data = m + data;
        z->entries[i].size = usize;
        z->entries[i].crc = crc;
        p += 46u + nlen + xlen + clen;
    }
    return PETREL_OK;
}

petrel_status pz_open(pz_archive *z, const char *path, pt_err *err) {
    pt_mapping m;
    memset(z, 0, sizeof *z);
    PT_TRY(pt_map_file(&m, path, err));
    petrel_status s = pz_open_memory(z, m.data, m.size, err);
    z->owns_map = true; /* pz_close unmaps it, also after a failure */
    if (s != PETREL_OK) pz_close(z);
    return s;
}

void pz_close(pz_archive *z) {
    if (!z) return;
    for (int32_t i = 0; i < z->n; i++) pt_free(z->entries[i].name);
    pt_free(z->entries);
    if (z->owns_map) {
        pt_mapping m = {z->map, z->map_size};
        pt_unmap_file(&m);
    }
    memset(z, 0, sizeof *z);
}

const pz_entry *pz_find(const pz_archive *z, const char *name) {
    for (int32_t i = 0; i < z->n; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

uint32_t pz_crc32(const uint8_t *p, uint64_t n) { return pt_crc32(0, p, (size_t)n); }
