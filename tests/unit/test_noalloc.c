/*
** test_noalloc.c -- execution allocates nothing: for every fixture whose
** intermediates all have size bounds, the second and later calls of a
** loaded program make no allocation at all (counted through the library's
** allocation hook), in both forms, and again with the program split
** between the CPU and the loopback test device (runtime/loopback.c), where
** values cross between the sides on every call.
*/
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "runtime/device.h"

static const char *backend; /* NULL, then "cuda" on the loopback device */

/* Run every step of a fixture; returns allocations made by the last
 * execute (or -1 on error, -2 when the program has unplanned values). */
static int64_t steady_allocs(const char *dir, const char *name, int steps) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/model.pt2", dir, name);
    petrel_program_t *p = NULL;
    petrel_load_opts lo = {.backend = backend};
    if (petrel_program_load(&p, path, &lo) != PETREL_OK) return -1;
    petrel_program_stats st;
    petrel_program_get_stats(&st, p);
    int64_t count = -1;
    if (st.unplanned) {
        count = -2;
        goto out;
    }
    /* one more call than there are steps: step 0 again at the end */
    for (int s = 0; s <= steps; s++) {
        petrel_tensor_file_t *in = NULL;
        snprintf(path, sizeof path, "%s/%s/step%d.in.safetensors", dir, name, s < steps ? s : 0);
        if (petrel_tensor_file_read(&in, path) != PETREL_OK) goto out;
        petrel_status bound = petrel_program_set_inputs_from_file(p, in);
        petrel_tensor_file_free(in);
        if (bound != PETREL_OK) goto out;
        pt_alloc_fail_at(0); /* reset the counter */
        petrel_status rs = petrel_program_execute(p);
        count = pt_alloc_fail_at(0);
        if (rs != PETREL_OK) {
            count = -1;
            goto out;
        }
    }
out:
    petrel_program_free(p);
    return count;
}

/* Every fixture once; counts into *checked / *skipped, returns failures. */
static int check_all(json_t *m, const char *dir, int *checked, int *skipped) {
    int bad = 0;
    size_t i;
    json_t *e;
    json_array_foreach(m, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        int steps = (int)json_integer_value(json_object_get(e, "steps"));
        if (!name || steps <= 0) continue;
        int64_t c = steady_allocs(dir, name, steps);
        if (c == -2) {
            (*skipped)++;
            continue;
        }
        (*checked)++;
        if (c != 0) {
            printf("%s%s: %s\n", name, backend ? " (split with the loopback device)" : "",
                   c < 0 ? "failed to run" : "execute allocated");
            if (c > 0) printf("  %lld allocations in a steady-state call\n", (long long)c);
            bad++;
        }
    }
    return bad;
}

int main(void) {
    const char *dir = "tests/fixtures";
    json_t *m = json_load_file("tests/fixtures/manifest.json", 0, NULL);
    if (!json_is_array(m)) return 1;
    int checked = 0, skipped = 0;
    int bad = check_all(m, dir, &checked, &skipped);
    pt_device_use_loopback();
    backend = "cuda";
    bad += check_all(m, dir, &checked, &skipped);
    json_decref(m);
    printf("test_noalloc: %d programs (CPU, then split) allocate nothing per call, %d with unbounded sizes skipped, "
           "%d failed: %s\n",
           checked - bad, skipped, bad, bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}
