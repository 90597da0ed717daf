/*
** core.c -- status names, error buffers, logging and the allocation wrappers.
** Bottom layer: depends only on the public header.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* ---- statuses ----------------------------------------------------------- */

const char *petrel_status_str(petrel_status s) {
    switch (s) {
    case PETREL_OK: return "PETREL_OK";
    case PETREL_ERR_INVALID_ARG: return "PETREL_ERR_INVALID_ARG";
    case PETREL_ERR_STATE: return "PETREL_ERR_STATE";
    case PETREL_ERR_SHAPE: return "PETREL_ERR_SHAPE";
    case PETREL_ERR_NOMEM: return "PETREL_ERR_NOMEM";
    case PETREL_ERR_IO: return "PETREL_ERR_IO";
    case PETREL_ERR_NOT_FOUND: return "PETREL_ERR_NOT_FOUND";
    case PETREL_ERR_FORMAT: return "PETREL_ERR_FORMAT";
    case PETREL_ERR_VERSION: return "PETREL_ERR_VERSION";
    case PETREL_ERR_UNSUPPORTED: return "PETREL_ERR_UNSUPPORTED";
    case PETREL_ERR_BACKEND_UNAVAILABLE: return "PETREL_ERR_BACKEND_UNAVAILABLE";
    case PETREL_ERR_UNSUPPORTED_OP: return "PETREL_ERR_UNSUPPORTED_OP";
    case PETREL_ERR_DEVICE: return "PETREL_ERR_DEVICE";
    case PETREL_ERR_RUNTIME: return "PETREL_ERR_RUNTIME";
    case PETREL_STATUS_COUNT: break;
    }
    return "PETREL_ERR_UNKNOWN";
}

/* ---- errors and logging ------------------------------------------------- */

static _Thread_local char last_error[512];
static petrel_log_fn log_fn;
static void *log_user;

const char *petrel_last_error(void) { return last_error; }

void pt_set_last_error(const char *msg) {
    snprintf(last_error, sizeof last_error, "%s", msg ? msg : "");
}

void petrel_log_set(petrel_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

void pt_log(petrel_log_level lvl, const char *fmt, ...) {
    if (!log_fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(lvl, buf, log_user);
}

petrel_status pt_vfail(pt_err *e, petrel_status st, const char *fmt, va_list ap) {
    char *dst = e ? e->msg : last_error;
    size_t cap = e ? sizeof e->msg : sizeof last_error;
    vsnprintf(dst, cap, fmt, ap);
    /* names quoted from a damaged file may hold control characters: keep
     * every message on one line */
    for (char *c = dst; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    if (log_fn) log_fn(PETREL_LOG_ERROR, dst, log_user);
    return st;
}

petrel_status pt_fail(pt_err *e, petrel_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pt_vfail(e, st, fmt, ap);
    va_end(ap);
    return st;
}

/* ---- allocation --------------------------------------------------------- */

/* Failing-allocator test hook: counts allocations and fails number
 * `fail_at` (1-based).  Not thread-safe by design: tests drive it. */
static int64_t alloc_count;
static int64_t fail_at;

int64_t pt_alloc_fail_at(int64_t n) {
    int64_t c = alloc_count;
    alloc_count = 0;
    fail_at = n;
    return c;
}

static bool alloc_should_fail(void) {
    alloc_count++;
    return fail_at > 0 && alloc_count == fail_at;
}

void *pt_malloc(size_t n) {
    if (alloc_should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *pt_calloc(size_t count, size_t size) {
    if (alloc_should_fail()) return NULL;
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *pt_realloc(void *p, size_t n) {
    if (alloc_should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void pt_free(void *p) { free(p); }

char *pt_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pt_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- checksums ---------------------------------------------------------- */

/* Table-driven CRC-32; the table is built on first use (idempotent, so a
 * race between threads only computes the same values twice). */
static uint32_t crc_table[256];
static bool crc_ready;

uint32_t pt_crc32(uint32_t crc, const void *data, size_t n) {
    if (!crc_ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
            crc_table[i] = c;
        }
        crc_ready = true;
    }
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}
