/*
** prompt_util.h -- the tiny Llama fixture (tests/fixtures/llm/llama.pt2)
** loaded on a backend and run on a prompt of random ids, for the tests
** that read its logits (test_argmax, test_topk).  Include after check.h.
*/
#ifndef PETREL_TESTS_PROMPT_UTIL_H
#define PETREL_TESTS_PROMPT_UTIL_H

#include <stdlib.h>

#include "petrel.h"

/* The fixture loaded on `backend` (NULL: the CPU), its vocabulary in
 * *vocab; NULL (a failed check) when it does not load. */
static inline petrel_program_t *prompt_load(const char *backend, const char *label, int64_t *vocab) {
    petrel_program_t *p = NULL;
    petrel_load_opts lo = {.backend = backend};
    if (petrel_program_load(&p, "tests/fixtures/llm/llama.pt2", &lo) != PETREL_OK) {
        CHECK(0, "%s: load: %s", label, petrel_last_error());
        return NULL;
    }
    petrel_io_info io;
    petrel_program_output_info(&io, p, 0);
    *vocab = io.shape[2];
    return p;
}

/* Run a prompt of L (<= 16) random ids at positions 0 .. L - 1. */
static inline void prompt_run(petrel_program_t *p, const char *label, int64_t vocab, int L) {
    int64_t ids[16], pos[16];
    for (int i = 0; i < L; i++) ids[i] = rand() % vocab, pos[i] = i;
    petrel_tensor_desc ti = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, L}, .data = ids};
    petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {L}, .data = pos};
    CHECK(!petrel_program_set_input(p, petrel_program_find_input(p, "input_ids"), &ti) &&
              !petrel_program_set_input(p, petrel_program_find_input(p, "cache_position"), &tp) &&
              !petrel_program_execute(p),
          "%s: run: %s", label, petrel_program_error(p));
}

#endif /* PETREL_TESTS_PROMPT_UTIL_H */
