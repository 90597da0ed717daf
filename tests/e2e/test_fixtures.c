/*
** test_fixtures.c -- end-to-end suite: every fixture in
** tests/fixtures/manifest.json runs through the public API, call by call on
** one loaded program, and each output is compared with torch's (relative L2
** error within the fixture's tolerance; integer and bool outputs exactly).
**
** With --compile DIR each fixture is first compiled (petrel_compile) into
** DIR/<name>.petrel and the program file is run instead: results must be
** the same as torch's, as from the .pt2.
**
** With --backend B every fixture is placed on backend B (compiled for it
** with --compile); tests/gpu/run.sh runs the suite with --backend cuda.
** --loopback replaces the CUDA device by a test stand-in (runtime/loopback.c).
** usage: test_fixtures FIXTURE_DIR [--compile DIR] [--backend cpu|cuda] [--loopback] [NAME_SUBSTRING]
*/
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "petrel.h"

/* Element i of a contiguous tensor as double. */
static double load(const petrel_tensor_desc *t, int64_t i) { return petrel_tensor_get_f64(t, i); }

static bool is_float(petrel_dtype d) {
    return d == PETREL_DTYPE_F32 || d == PETREL_DTYPE_F64 || d == PETREL_DTYPE_F16 || d == PETREL_DTYPE_BF16;
}

/* Compare one output; on mismatch write a reason into `why`. */
static bool compare(const petrel_tensor_desc *got, const petrel_tensor_desc *want, double tol, char *why, size_t cap) {
    if (got->dtype != want->dtype) {
        snprintf(why, cap, "dtype %s, expected %s", petrel_dtype_name(got->dtype), petrel_dtype_name(want->dtype));
        return false;
    }
    int64_t n = petrel_tensor_numel(want);
    if (got->rank != want->rank || petrel_tensor_numel(got) != n) {
        snprintf(why, cap, "rank %d numel %lld, expected rank %d numel %lld", got->rank,
                 (long long)petrel_tensor_numel(got), want->rank, (long long)n);
        return false;
    }
    for (int d = 0; d < want->rank; d++)
        if (got->shape[d] != want->shape[d]) {
            snprintf(why, cap, "size %d is %lld, expected %lld", d, (long long)got->shape[d], (long long)want->shape[d]);
            return false;
        }
    if (!is_float(want->dtype)) {
        if (n && memcmp(got->data, want->data, (size_t)n * petrel_dtype_size(want->dtype)) != 0) {
            for (int64_t i = 0; i < n; i++)
                if (load(got, i) != load(want, i)) {
                    snprintf(why, cap, "element %lld is %g, expected %g", (long long)i, load(got, i), load(want, i));
                    break;
                }
            return false;
        }
        return true;
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = load(got, i), b = load(want, i);
        if (isnan(b) && isnan(a)) continue; /* torch produced NaN here too */
        if (isnan(a) || isnan(b)) {
            snprintf(why, cap, "element %lld is %g, expected %g", (long long)i, a, b);
            return false;
        }
        if (isinf(b) || isinf(a)) {
            if (a != b) {
                snprintf(why, cap, "element %lld is %g, expected %g", (long long)i, a, b);
                return false;
            }
            continue;
        }
        num += (a - b) * (a - b);
        den += b * b;
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    if (!(err <= tol)) {
        snprintf(why, cap, "relative L2 error %.3g > %.1g", err, tol);
        return false;
    }
    return true;
}

static const char *backend; /* --backend: NULL = the default placement */

/* White-box hook (runtime/device.h): --loopback stands a host-memory test
 * device in for CUDA, so `--backend cuda` mixes both sides on any machine. */
void pt_device_use_loopback(void);

static bool run_fixture(const char *dir, const char *name, int steps, double tol, const char *compile_dir,
                        char *why, size_t cap) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/model.pt2", dir, name);
    if (compile_dir) {
        char out[1024];
        snprintf(out, sizeof out, "%s/%s.petrel", compile_dir, name);
        petrel_compile_opts co = {.backend = backend};
        if (petrel_compile(NULL, path, out, &co) != PETREL_OK) {
            snprintf(why, cap, "compile: %s", petrel_last_error());
            return false;
        }
        snprintf(path, sizeof path, "%s", out);
    }
    petrel_program_t *prog = NULL;
    petrel_load_opts lo = {.backend = backend};
    if (petrel_program_load(&prog, path, &lo) != PETREL_OK) {
        snprintf(why, cap, "load: %s", petrel_last_error());
        return false;
    }
    bool ok = true;
    for (int s = 0; ok && s < steps; s++) {
        petrel_tensor_file_t *in = NULL, *want = NULL;
        snprintf(path, sizeof path, "%s/%s/step%d.in.safetensors", dir, name, s);
        if (petrel_tensor_file_read(&in, path) != PETREL_OK) {
            snprintf(why, cap, "%s", petrel_last_error());
            ok = false;
        }
        snprintf(path, sizeof path, "%s/%s/step%d.out.safetensors", dir, name, s);
        if (ok && petrel_tensor_file_read(&want, path) != PETREL_OK) {
            snprintf(why, cap, "%s", petrel_last_error());
            ok = false;
        }
        if (ok && petrel_program_set_inputs_from_file(prog, in) != PETREL_OK) {
            snprintf(why, cap, "step %d: %s", s, petrel_program_error(prog));
            ok = false;
        }
        if (ok && petrel_program_execute(prog) != PETREL_OK) {
            snprintf(why, cap, "step %d: %s", s, petrel_program_error(prog));
            ok = false;
        }
        for (int i = 0; ok && i < petrel_program_num_outputs(prog); i++) {
            char on[32];
            snprintf(on, sizeof on, "output_%d", i);
            petrel_tensor_desc w, g;
            petrel_value_kind kind;
            if (petrel_tensor_file_get(&w, want, on) != PETREL_OK) continue; /* None outputs */
            if (petrel_program_get_output(&g, prog, i, &kind) != PETREL_OK) {
                snprintf(why, cap, "step %d: %s", s, petrel_program_error(prog));
                ok = false;
                break;
            }
            char r[256];
            if (!compare(&g, &w, tol, r, sizeof r)) {
                snprintf(why, cap, "step %d output %d: %s", s, i, r);
                ok = false;
            }
        }
        petrel_tensor_file_free(in);
        petrel_tensor_file_free(want);
    }
    petrel_program_free(prog);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_fixtures FIXTURE_DIR [--compile DIR] [--backend cpu|cuda] [NAME_SUBSTRING]\n");
        return 2;
    }
    const char *compile_dir = NULL, *only = NULL;
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "--compile") && a + 1 < argc) compile_dir = argv[++a];
        else if (!strcmp(argv[a], "--backend") && a + 1 < argc) backend = argv[++a];
        else if (!strcmp(argv[a], "--loopback")) pt_device_use_loopback();
        else only = argv[a];
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", argv[1]);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!json_is_array(m)) {
        fprintf(stderr, "%s: %s\n", path, m ? "not a list" : je.text);
        return 1;
    }
    int pass = 0, fail = 0;
    size_t i;
    json_t *e;
    json_array_foreach(m, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        int steps = (int)json_integer_value(json_object_get(e, "steps"));
        double tol = json_number_value(json_object_get(e, "tol"));
        if (!name || steps <= 0 || !(tol > 0)) {
            fprintf(stderr, "%s: entry %zu is malformed\n", path, i);
            fail++;
            continue;
        }
        if (only && !strstr(name, only)) continue;
        char why[1024] = "";
        if (run_fixture(argv[1], name, steps, tol, compile_dir, why, sizeof why)) {
            pass++;
        } else {
            fail++;
            printf("FAIL %-40s %s\n", name, why);
        }
    }
    json_decref(m);
    printf("fixtures%s%s%s: %d passed, %d failed\n", compile_dir ? " (compiled)" : "", backend ? " on " : "",
           backend ? backend : "", pass, fail);
    return fail ? 1 : 0;
}
