/*
** pool.c -- the CPU kernels' worker threads (pool.h): a fixed set made
** when a program is prepared, woken for one parallel loop at a time.
**
** A loop of n items is cut into one contiguous range per thread, the
** caller taking the first, so a kernel's result never depends on the
** number of threads (each item is computed whole by one thread).  A
** worker spins for a short while after each loop, as the next one in a
** decode step usually follows within microseconds, then sleeps on a
** condition variable.  Loops are not nested: a kernel runs one at a time.
*/
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pool.h"

#define POOL_MAX 64
/* The least work (multiply-adds) per thread: 16 K, 1-2 us of one core's
 * quantized or bf16 GEMV.  A loop's round trip through a spinning worker
 * costs 0.3-1.4 us (2 threads, a KVM guest), so a product of a few hundred
 * thousand multiply-adds (a small model's q or o projection) gains from
 * the split: 2^18 kept those on one thread (SmolLM2-135M decode, int4
 * 108 -> 137 tok/s, fp32 40 -> 47; bench/RESULTS.md). */
#define POOL_MIN_WORK ((int64_t)1 << 14)
#define POOL_SPIN 2000 /* polls (sched_yield) of the generation before sleeping: about a millisecond */

struct pt_pool {
    int n;                        /* threads, the caller included */
    int started;                  /* workers running */
    pthread_t tid[POOL_MAX];
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen;              /* bumped for each loop (and for stop) */
    atomic_int pending;           /* workers still in the current loop */
    atomic_bool stop;
    /* the current loop */
    pt_pool_fn fn;
    void *ctx;
    int64_t items;
    int parts;                    /* threads taking part (<= n) */
    struct pt_pool_arg { pt_pool *p; int k; } arg[POOL_MAX];
};

static void run_part(pt_pool *p, int k) {
    int64_t b = p->items * k / p->parts, e = p->items * (k + 1) / p->parts;
    if (b < e) p->fn(p->ctx, k, b, e);
}

static void *worker(void *a) {
    struct pt_pool_arg *arg = a;
    pt_pool *p = arg->p;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < POOL_SPIN; i++) {
            sched_yield();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        if (arg->k < p->parts) run_part(p, arg->k);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

int pt_pool_default_threads(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > POOL_MAX ? POOL_MAX : (int)c;
}

pt_pool *pt_pool_new(int nthreads) {
    if (nthreads > POOL_MAX) nthreads = POOL_MAX;
    if (nthreads < 2) return NULL;
    pt_pool *p = pt_calloc(1, sizeof *p);
    if (!p) return NULL;
    if (pthread_mutex_init(&p->mu, NULL)) {
        pt_free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL)) {
        pthread_mutex_destroy(&p->mu);
        pt_free(p);
        return NULL;
    }
    p->n = 1;
    for (int k = 1; k < nthreads; k++) {
        p->arg[k] = (struct pt_pool_arg){p, k};
        if (pthread_create(&p->tid[k], NULL, worker, &p->arg[k])) break; /* fewer threads, still correct */
        p->started = k;
        p->n = k + 1;
    }
    if (p->n < 2) {
        pt_pool_free(p);
        return NULL;
    }
    return p;
}

void pt_pool_free(pt_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int k = 1; k <= p->started; k++) pthread_join(p->tid[k], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    pt_free(p);
}

int pt_pool_threads(const pt_pool *p) { return p ? p->n : 1; }

void pt_pool_for(pt_pool *p, int64_t items, int64_t min_items, pt_pool_fn fn, void *ctx) {
    if (items <= 0) return;
    int64_t parts = min_items > 0 ? items / min_items : items;
    if (!p || parts < 2) {
        fn(ctx, 0, 0, items);
        return;
    }
    p->fn = fn, p->ctx = ctx, p->items = items;
    p->parts = parts < p->n ? (int)parts : p->n;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_part(p, 0);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) sched_yield();
}

static _Atomic int64_t min_work = POOL_MIN_WORK;

int64_t pt_pool_min_work(void) { return atomic_load_explicit(&min_work, memory_order_relaxed); }

void pt_pool_set_min_work(int64_t work) {
    atomic_store_explicit(&min_work, work > 0 ? work : POOL_MIN_WORK, memory_order_relaxed);
}

int64_t pt_pool_min_items(int64_t per_item) {
    int64_t w = pt_pool_min_work();
    return per_item > 0 ? (w + per_item - 1) / per_item : 1;
}
