/*
** test_argmax.c -- petrel_program_output_argmax on the tiny Llama fixture,
** all on the CPU and split with the loopback test device (the logits then
** live on the "device" and the device's argmax runs): after a prompt of
** random ids, the argmax of every row equals the one computed here from
** the downloaded logits (lowest index on ties), -1 means the last row, and
** out-of-range rows and outputs fail with a status.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "prompt_util.h"
#include "core/core.h"
#include "runtime/device.h"

#define PROMPT 6

static void check_backend(const char *backend) {
    const char *label = backend ? "split with loopback" : "cpu";
    int64_t vocab, idx = 0;
    petrel_program_t *p = prompt_load(backend, label, &vocab);
    if (!p) return;
    CHECK(petrel_program_output_argmax(p, 0, 0, &idx) == PETREL_ERR_STATE, "%s: argmax before execute", label);
    prompt_run(p, label, vocab, PROMPT);
    /* the device's answers first: reading the logits downloads them */
    int64_t got[PROMPT], last = -2;
    for (int r = 0; r < PROMPT; r++)
        CHECK(!petrel_program_output_argmax(p, 0, r, &got[r]), "%s: argmax row %d: %s", label, r,
              petrel_program_error(p));
    CHECK(!petrel_program_output_argmax(p, 0, -1, &last), "%s: argmax row -1", label);
    CHECK(petrel_program_output_argmax(p, 0, PROMPT, &idx) == PETREL_ERR_INVALID_ARG, "%s: row past the end", label);
    CHECK(petrel_program_output_argmax(p, 0, -PROMPT - 1, &idx) == PETREL_ERR_INVALID_ARG, "%s: row before the start",
          label);
    CHECK(petrel_program_output_argmax(p, 1, 0, &idx) == PETREL_ERR_INVALID_ARG, "%s: output out of range", label);
    petrel_tensor_desc o;
    if (petrel_program_get_output(&o, p, 0, NULL) != PETREL_OK || o.dtype != PETREL_DTYPE_F32 || o.shape[1] != PROMPT) {
        CHECK(0, "%s: logits", label);
    } else {
        for (int r = 0; r < PROMPT; r++) {
            const float *row = (const float *)o.data + r * vocab;
            int64_t want = 0;
            for (int64_t v = 1; v < vocab; v++)
                if (row[v] > row[want]) want = v;
            CHECK(got[r] == want && isfinite(row[want]), "%s: row %d: argmax %lld, want %lld", label, r,
                  (long long)got[r], (long long)want);
        }
        CHECK(last == got[PROMPT - 1], "%s: row -1 gave %lld, the last row %lld", label, (long long)last,
              (long long)got[PROMPT - 1]);
    }
    petrel_program_free(p);
}

int main(void) {
    srand((unsigned)time(NULL));
    check_backend(NULL);
    pt_device_use_loopback();
    check_backend("cuda");
    printf("test_argmax: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
