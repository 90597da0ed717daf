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
**
** With --quant SCHEME (petrel compile --quant; needs --compile DIR, and
** --quant-embedding quantizes embeddings too) each fixture is compiled
** with quantized weights for the backend and run there and on the CPU, and
** the backend's outputs are compared with the CPU's on the same inputs:
** torch has no reference for quantized weights, the CPU kernels are their
** oracle.  Tolerance: the fixture's, at least 1e-3.
** usage: test_fixtures FIXTURE_DIR [--compile DIR] [--backend cpu|cuda] [--loopback]
**                      [--quant SCHEME [--quant-embedding]] [NAME_SUBSTRING]...
** (the fixtures whose name contains one of the substrings; all without)
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
static const char *quant;   /* --quant: NULL = float weights */
static bool quant_embedding;

/* White-box hook (runtime/device.h): --loopback stands a host-memory test
 * device in for CUDA, so `--backend cuda` mixes both sides on any machine. */
void pt_device_use_loopback(void);

/* Compile the fixture's model (path) into DIR/<name><suffix>.petrel for
 * backend `be` (with --quant's weights), then load it for `be`; with ref
 * (needs DIR) load the same file for the CPU too. */
static bool load_program(const char *path, const char *compile_dir, const char *name, const char *suffix,
                         const char *be, petrel_program_t **prog, petrel_program_t **ref, char *why, size_t cap) {
    char out[1024];
    if (compile_dir) {
        snprintf(out, sizeof out, "%s/%s%s.petrel", compile_dir, name, suffix);
        petrel_compile_opts co = {.backend = be, .quant = quant, .quant_embedding = quant_embedding};
        if (petrel_compile(NULL, path, out, &co) != PETREL_OK) {
            snprintf(why, cap, "compile%s: %s", suffix, petrel_last_error());
            return false;
        }
        path = out;
    }
    petrel_load_opts lo = {.backend = be}, lc = {.backend = "cpu"};
    if (petrel_program_load(prog, path, &lo) != PETREL_OK) {
        snprintf(why, cap, "load%s: %s", suffix, petrel_last_error());
        return false;
    }
    if (ref && petrel_program_load(ref, path, &lc) != PETREL_OK) {
        snprintf(why, cap, "load%s for the cpu: %s", suffix, petrel_last_error());
        petrel_program_free(*prog);
        *prog = NULL;
        return false;
    }
    return true;
}

/* Run one step (inputs from `in`) on p; false with a reason on failure. */
static bool run_step(petrel_program_t *p, petrel_tensor_file_t *in, int s, char *why, size_t cap) {
    if (petrel_program_set_inputs_from_file(p, in) != PETREL_OK || petrel_program_execute(p) != PETREL_OK) {
        snprintf(why, cap, "step %d: %s", s, petrel_program_error(p));
        return false;
    }
    return true;
}

/* Runs the fixture's steps and compares every output with torch's, or
 * with --quant with the CPU run of the same quantized program file (ref:
 * the same weights quantized -- a backend may keep float what its kernels
 * cannot take -- loaded for the CPU). */
static bool run_fixture(const char *dir, const char *name, int steps, double tol, const char *compile_dir,
                        char *why, size_t cap) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/model.pt2", dir, name);
    petrel_program_t *prog = NULL, *ref = NULL;
    if (!load_program(path, compile_dir, name, quant ? ".q" : "", backend, &prog, quant ? &ref : NULL, why, cap))
        return false;
    if (quant && tol < 1e-3) tol = 1e-3;
    bool ok = true;
    for (int s = 0; ok && s < steps; s++) {
        petrel_tensor_file_t *in = NULL, *want = NULL;
        snprintf(path, sizeof path, "%s/%s/step%d.in.safetensors", dir, name, s);
        if (petrel_tensor_file_read(&in, path) != PETREL_OK) {
            snprintf(why, cap, "%s", petrel_last_error());
            ok = false;
        }
        snprintf(path, sizeof path, "%s/%s/step%d.out.safetensors", dir, name, s);
        if (ok && !ref && petrel_tensor_file_read(&want, path) != PETREL_OK) {
            snprintf(why, cap, "%s", petrel_last_error());
            ok = false;
        }
        ok = ok && run_step(prog, in, s, why, cap) && (!ref || run_step(ref, in, s, why, cap));
        for (int i = 0; ok && i < petrel_program_num_outputs(prog); i++) {
            char on[32];
            snprintf(on, sizeof on, "output_%d", i);
            petrel_tensor_desc w, g;
            petrel_value_kind kind, rkind;
            if (ref ? petrel_program_get_output(&w, ref, i, &rkind) != PETREL_OK || rkind != PETREL_VALUE_TENSOR
                    : petrel_tensor_file_get(&w, want, on) != PETREL_OK)
                continue; /* None (and with --quant scalar) outputs */
            if (petrel_program_get_output(&g, prog, i, &kind) != PETREL_OK) {
                snprintf(why, cap, "step %d: %s", s, petrel_program_error(prog));
                ok = false;
                break;
            }
            char r[256];
            if (!compare(&g, &w, tol, r, sizeof r)) {
                snprintf(why, cap, "step %d output %d%s: %s", s, i, ref ? " (vs the CPU)" : "", r);
                ok = false;
            }
        }
        petrel_tensor_file_free(in);
        petrel_tensor_file_free(want);
    }
    petrel_program_free(prog);
    petrel_program_free(ref);
    return ok;
}

int main(int argc, char **argv) {
    static const char *usage = "usage: test_fixtures FIXTURE_DIR [--compile DIR] [--backend cpu|cuda] [--loopback] "
                               "[--quant SCHEME [--quant-embedding]] [NAME_SUBSTRING]...\n";
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *compile_dir = NULL, *only[16];
    int nonly = 0;
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "--compile") && a + 1 < argc) compile_dir = argv[++a];
        else if (!strcmp(argv[a], "--backend") && a + 1 < argc) backend = argv[++a];
        else if (!strcmp(argv[a], "--loopback")) pt_device_use_loopback();
        else if (!strcmp(argv[a], "--quant") && a + 1 < argc) quant = argv[++a];
        else if (!strcmp(argv[a], "--quant-embedding")) quant_embedding = true;
        else if (nonly < (int)(sizeof only / sizeof only[0])) only[nonly++] = argv[a];
        else {
            fprintf(stderr, "at most %d name substrings\n%s", (int)(sizeof only / sizeof only[0]), usage);
            return 2;
        }
    }
    if ((quant || quant_embedding) && (!quant || !compile_dir)) {
        fprintf(stderr, "--quant needs --compile DIR (and --quant-embedding needs --quant)\n%s", usage);
        return 2;
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
        bool wanted = nonly == 0;
        for (int k = 0; k < nonly && !wanted; k++) wanted = strstr(name, only[k]) != NULL;
        if (!wanted) continue;
        char why[1024] = "";
        if (run_fixture(argv[1], name, steps, tol, compile_dir, why, sizeof why)) {
            pass++;
        } else {
            fail++;
            printf("FAIL %-40s %s\n", name, why);
        }
    }
    json_decref(m);
    printf("fixtures%s%s%s%s%s%s: %d passed, %d failed\n", compile_dir ? " (compiled)" : "", quant ? " quantized " : "",
           quant ? quant : "", quant_embedding ? " with embeddings" : "", backend ? " on " : "", backend ? backend : "",
           pass, fail);
    return fail ? 1 : 0;
}
