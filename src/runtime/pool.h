/*
** pool.h -- worker threads for the CPU kernels' parallel loops (pool.c).
** Layer: runtime.
*/
#ifndef PETREL_POOL_H
#define PETREL_POOL_H

#include <stdint.h>

#include "../core/core.h"

typedef struct pt_pool pt_pool;

/* One thread's share of a loop: items [begin, end), as part `part` of
 * the loop's (0 on the caller; parts < pt_pool_threads). */
typedef void (*pt_pool_fn)(void *ctx, int part, int64_t begin, int64_t end);

/* The online CPUs (at most 64, at least 1). */
PT_HIDDEN int pt_pool_default_threads(void);
/* A pool of nthreads threads, the caller of pt_pool_for included (so
 * nthreads - 1 workers); NULL for nthreads < 2 or when no thread could be
 * started (loops then run on the caller alone). */
PT_HIDDEN pt_pool *pt_pool_new(int nthreads);
PT_HIDDEN void pt_pool_free(pt_pool *p);
PT_HIDDEN int pt_pool_threads(const pt_pool *p);
/* fn over items [0, items) split into one contiguous range per thread,
 * with at least min_items per range (fewer threads for small loops; one
 * range, on the caller, when p is NULL); returns when all are done. */
PT_HIDDEN void pt_pool_for(pt_pool *p, int64_t items, int64_t min_items, pt_pool_fn fn, void *ctx);

/* The least work (multiply-adds) worth a thread of its own in a kernel's
 * loop: below it a second thread's wake-up costs more than it saves.
 * Tests set it to 1 to split every loop (pt_pool_set_min_work). */
PT_HIDDEN int64_t pt_pool_min_work(void);
PT_HIDDEN void pt_pool_set_min_work(int64_t work);
/* min_items for pt_pool_for when each item costs per_item multiply-adds. */
PT_HIDDEN int64_t pt_pool_min_items(int64_t per_item);

#endif /* PETREL_POOL_H */
