/*
** test_feed.c -- petrel_program_feed_argmax / petrel_program_fed_result on
** the tiny Llama fixture, all on the CPU and split with the loopback test
** device: greedy decoding that feeds each step's argmax (and the position,
** grown by one) into the next step gives the same tokens and the same last
** logits as the loop that reads each argmax and binds the inputs from the
** host, with up to two steps in flight; binding an input after a feed
** takes the host's value again; misuse fails with a status.
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
#define STEPS 12

static int in_ids, in_pos;

static void set_step(petrel_program_t *p, int64_t token, int64_t pos) {
    petrel_tensor_desc ti = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, 1}, .data = &token};
    petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {1}, .data = &pos};
    CHECK(!petrel_program_set_input(p, in_ids, &ti) && !petrel_program_set_input(p, in_pos, &tp), "bind: %s",
          petrel_program_error(p));
}

static void prompt(petrel_program_t *p, const int64_t *ids) {
    int64_t pos[PROMPT];
    for (int i = 0; i < PROMPT; i++) pos[i] = i;
    petrel_tensor_desc ti = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, PROMPT}, .data = (void *)ids};
    petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {PROMPT}, .data = pos};
    CHECK(!petrel_program_reset_state(p) && !petrel_program_set_input(p, in_ids, &ti) &&
              !petrel_program_set_input(p, in_pos, &tp) && !petrel_program_execute(p),
          "prompt: %s", petrel_program_error(p));
}

/* The last row of the last execute's logits. */
static void last_logits(petrel_program_t *p, int64_t vocab, float *out) {
    petrel_tensor_desc o;
    if (petrel_program_get_output(&o, p, 0, NULL) != PETREL_OK || o.dtype != PETREL_DTYPE_F32) {
        CHECK(0, "logits: %s", petrel_program_error(p));
        return;
    }
    memcpy(out, (const float *)o.data + (o.shape[1] - 1) * vocab, (size_t)vocab * sizeof *out);
}

static void check_backend(const char *backend) {
    const char *label = backend ? "split with loopback" : "cpu";
    int64_t vocab, idx;
    petrel_program_t *p = prompt_load(backend, label, &vocab);
    if (!p) return;
    in_ids = petrel_program_find_input(p, "input_ids"), in_pos = petrel_program_find_input(p, "cache_position");
    float *want_l = malloc((size_t)vocab * sizeof *want_l), *got_l = malloc((size_t)vocab * sizeof *got_l);
    if (!want_l || !got_l) {
        CHECK(0, "out of memory");
        return;
    }
    CHECK(petrel_program_feed_argmax(p, 0, -1, in_ids, in_pos) == PETREL_ERR_STATE, "%s: feed before execute",
          label);
    CHECK(petrel_program_fed_result(p, &idx) == PETREL_ERR_STATE, "%s: a result before any feed", label);
    int64_t ids[PROMPT];
    for (int i = 0; i < PROMPT; i++) ids[i] = rand() % vocab;

    /* the host loop */
    int64_t want[STEPS + 1];
    prompt(p, ids);
    CHECK(!petrel_program_output_argmax(p, 0, -1, &want[0]), "%s: argmax", label);
    for (int k = 0; k < STEPS; k++) {
        set_step(p, want[k], PROMPT + k);
        CHECK(!petrel_program_execute(p), "%s: step %d: %s", label, k, petrel_program_error(p));
        CHECK(!petrel_program_output_argmax(p, 0, -1, &want[k + 1]), "%s: argmax", label);
    }
    last_logits(p, vocab, want_l);

    /* the same, fed: each step enqueued before the host reads the one
     * before (one or two in flight); the position fed too, or bound from
     * the host (on loopback a host node reads the position: that takes the
     * host's path) */
    for (int v = 0; v < 4; v++) {
        int depth = 1 + (v & 1);
        bool feed_pos = v < 2;
        int64_t got[STEPS + 1];
        prompt(p, ids);
        CHECK(petrel_program_feed_argmax(p, 0, -1, in_ids, in_pos) == PETREL_ERR_INVALID_ARG,
              "%s: feeding a 6-token input", label);
        CHECK(!petrel_program_output_argmax(p, 0, -1, &got[0]), "%s: argmax", label);
        set_step(p, got[0], PROMPT);
        int n = 0, waiting = 0;
        for (int k = 0; k < STEPS; k++) {
            if (k > 0 && !feed_pos) {
                int64_t pos = PROMPT + k;
                petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {1}, .data = &pos};
                CHECK(!petrel_program_set_input(p, in_pos, &tp), "%s: bind the position", label);
            }
            /* a position hint changes no result, right or wrong */
            CHECK(!petrel_program_hint_position(p, v & 2 ? 0 : PROMPT + k), "%s: hint", label);
            CHECK(!petrel_program_execute(p), "%s: fed step %d: %s", label, k, petrel_program_error(p));
            if (k == STEPS - 1) break;
            CHECK(!petrel_program_feed_argmax(p, 0, -1, in_ids, feed_pos ? in_pos : -1), "%s: feed %d: %s", label, k,
                  petrel_program_error(p));
            if (++waiting == depth) {
                CHECK(!petrel_program_fed_result(p, &got[++n]), "%s: result: %s", label, petrel_program_error(p));
                waiting--;
            }
        }
        while (waiting-- > 0) CHECK(!petrel_program_fed_result(p, &got[++n]), "%s: result", label);
        CHECK(!petrel_program_output_argmax(p, 0, -1, &got[++n]), "%s: argmax", label);
        CHECK(n == STEPS, "%s: %d tokens", label, n);
        for (int k = 0; k <= STEPS; k++)
            CHECK(got[k] == want[k], "%s, variant %d: token %d is %lld, the host loop's %lld", label, v, k,
                  (long long)got[k], (long long)want[k]);
        last_logits(p, vocab, got_l);
        double num = 0, den = 0;
        for (int64_t j = 0; j < vocab; j++) {
            num += ((double)got_l[j] - want_l[j]) * ((double)got_l[j] - want_l[j]);
            den += (double)want_l[j] * want_l[j];
        }
        CHECK(den > 0 && sqrt(num / den) <= 1e-6, "%s, variant %d: last logits differ (rel L2 %g)", label, v,
              den > 0 ? sqrt(num / den) : -1.0);
    }

    /* binding after a feed: the host's value, not the fed one */
    prompt(p, ids);
    set_step(p, want[0], PROMPT);
    CHECK(!petrel_program_execute(p), "%s: step", label);
    CHECK(!petrel_program_feed_argmax(p, 0, -1, in_ids, in_pos), "%s: feed", label);
    CHECK(!petrel_program_fed_result(p, &idx) && idx == want[1], "%s: fed %lld, want %lld", label, (long long)idx,
          (long long)want[1]);
    int64_t other = (want[1] + 1) % vocab;
    set_step(p, other, PROMPT + 1);
    CHECK(!petrel_program_execute(p), "%s: step", label);
    last_logits(p, vocab, got_l);
    prompt(p, ids);
    set_step(p, want[0], PROMPT);
    CHECK(!petrel_program_execute(p), "%s: step", label);
    set_step(p, other, PROMPT + 1);
    CHECK(!petrel_program_execute(p), "%s: step", label);
    last_logits(p, vocab, want_l);
    CHECK(!memcmp(got_l, want_l, (size_t)vocab * sizeof *got_l), "%s: a bound input after a feed", label);

    /* misuse, and PETREL_FEED_MAX results waiting */
    int64_t last = -2;
    CHECK(!petrel_program_output_argmax(p, 0, -1, &last), "%s: argmax", label);
    CHECK(petrel_program_feed_argmax(p, 0, -1, in_ids, in_ids) == PETREL_ERR_INVALID_ARG, "%s: next == step",
          label);
    CHECK(petrel_program_feed_argmax(p, 1, -1, in_ids, in_pos) == PETREL_ERR_INVALID_ARG, "%s: output 1", label);
    CHECK(petrel_program_feed_argmax(p, 0, 1, in_ids, in_pos) == PETREL_ERR_INVALID_ARG, "%s: row 1 of 1", label);
    CHECK(petrel_program_hint_position(NULL, 1) == PETREL_ERR_INVALID_ARG, "%s: hint without a program", label);
    CHECK(!petrel_program_hint_position(p, -1), "%s: hint: unknown", label);
    for (int k = 0; k < PETREL_FEED_MAX; k++)
        CHECK(!petrel_program_feed_argmax(p, 0, -1, in_ids, -1), "%s: feed %d", label, k);
    CHECK(petrel_program_feed_argmax(p, 0, -1, in_ids, -1) == PETREL_ERR_STATE, "%s: one feed too many", label);
    for (int k = 0; k < PETREL_FEED_MAX; k++)
        CHECK(!petrel_program_fed_result(p, &idx) && idx == last, "%s: result %d: %lld, want %lld", label, k,
              (long long)idx, (long long)last);
    CHECK(petrel_program_fed_result(p, &idx) == PETREL_ERR_STATE, "%s: no result left", label);
    free(want_l);
    free(got_l);
    petrel_program_free(p);
}

int main(void) {
    srand((unsigned)time(NULL));
    check_backend(NULL);
    pt_device_use_loopback();
    check_backend("cuda");
    printf("test_feed: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
