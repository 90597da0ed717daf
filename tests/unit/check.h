/*
** check.h -- the unit tests' assertion: CHECK(cond, fmt, ...) counts a
** failure and prints where and why, then the test goes on (each test's
** main returns non-zero when `failures` is).
*/
#ifndef PETREL_TEST_CHECK_H
#define PETREL_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            failures++;                                                               \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                               \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
        }                                                                             \
    } while (0)

#endif /* PETREL_TEST_CHECK_H */
