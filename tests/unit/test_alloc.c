/*
** test_alloc.c -- failing-allocator test: make allocation number N fail,
** for every N, during program load and execution of a real fixture; each
** failure must come back as a status (never a crash), and the next attempt
** must work.  Run under ASan/LSan (`make test-asan`) this also proves the
** unwinding leaks nothing.
*/
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static const char *fixture_dir = "tests/fixtures/state_cache_index_copy_export";
static char last_msg[600];

/* Load, bind inputs from step0, execute.  Returns the first failing status. */
static petrel_status attempt(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.pt2", fixture_dir);
    petrel_program_t *p = NULL;
    petrel_status st = petrel_program_load(&p, path, NULL);
    if (st != PETREL_OK) {
        snprintf(last_msg, sizeof last_msg, "%s", petrel_last_error());
        return st;
    }
    snprintf(path, sizeof path, "%s/step0.in.safetensors", fixture_dir);
    petrel_tensor_file_t *in = NULL;
    st = petrel_tensor_file_read(&in, path);
    if (st == PETREL_OK) st = petrel_program_set_inputs_from_file(p, in);
    if (st == PETREL_OK) st = petrel_program_execute(p);
    snprintf(last_msg, sizeof last_msg, "%s", petrel_program_error(p));
    petrel_tensor_file_free(in);
    petrel_program_free(p);
    return st;
}

int main(int argc, char **argv) {
    if (argc > 1) fixture_dir = argv[1];
    pt_alloc_fail_at(0);
    if (attempt() != PETREL_OK) {
        printf("test_alloc: fixture %s does not run: %s\n", fixture_dir, last_msg);
        return 1;
    }
    int64_t total = pt_alloc_fail_at(0);
    int bad = 0;
    for (int64_t n = 1; n <= total; n++) {
        pt_alloc_fail_at(n);
        petrel_status st = attempt();
        pt_alloc_fail_at(0);
        if (st != PETREL_ERR_NOMEM && st != PETREL_OK) {
            /* a failed allocation must surface as NOMEM, not as a bogus error */
            printf("allocation %lld: status %s (%s)\n", (long long)n, petrel_status_str(st), last_msg);
            bad++;
        }
    }
    printf("test_alloc: %lld allocations each failed once: %s\n", (long long)total, bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}
