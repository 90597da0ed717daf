/*
** rng_util.h -- the seeded random numbers of the white-box kernel tests
** (splitmix64): each test sets rng_state to its own seed first.
*/
#ifndef PETREL_TESTS_RNG_UTIL_H
#define PETREL_TESTS_RNG_UTIL_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline double rng_uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_next() >> 11) / 9007199254740992.0;
}
static inline int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

#endif /* PETREL_TESTS_RNG_UTIL_H */
