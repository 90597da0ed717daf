#!/usr/bin/env bash
# `petrel bench` on the tiny LLM fixture (CPU, small sizes): --json gives one
# object with every field and positive timings, the human form one line per
# measurement; too-long prefill rows are skipped with a note; greedy tokens
# repeat and match the compiled program's; bad flags and impossible requests
# exit 1 with one line "petrel: ..." on stderr.
set -u
petrel=$1
dir=$2                      # tests/fixtures/llm
generic=$3                  # an exported program without LLM extras
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
model=$dir/llama.pt2        # KV cache 128 positions, chunks of 1..8 tokens
small=(--prompt 16 --gen 8 --prefill "4,8" --reps 2 --warmup 1)

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

run() {  # run CMD...: stdout -> $tmp/out, stderr -> $tmp/err, status -> $rc
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

expect_fail() {
    local what=$1; shift
    run "$@"
    if [ $rc -ne 1 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q '^petrel: ' "$tmp/err" || [ -s "$tmp/out" ]; then
        bad "$what: rc=$rc, stderr:"; cat "$tmp/err"
    else
        ok "$what: $(cat "$tmp/err")"
    fi
}

# The numbers after "NAME": in file $1 (every occurrence), one per line.
numbers() { grep -o "\"$2\": [-0-9.e+]*" "$1" | sed 's/.*: //'; }

# positive FILE NAME COUNT: NAME occurs COUNT times, each a number > 0.
positive() {
    local vals n
    vals=$(numbers "$1" "$2")
    n=$(printf '%s\n' "$vals" | grep -c .)
    if [ "$n" -ne "$3" ] || ! printf '%s\n' "$vals" | awk '!($1 > 0) { exit 1 }'; then
        bad "\"$2\": expected $3 positive value(s), got: ${vals//$'\n'/ }"
        return 1
    fi
}

# JSON: every field, positive timings, 8 tokens
run "$petrel" bench -m "$model" "${small[@]}" --json
cp "$tmp/out" "$tmp/bench1.json"
if [ $rc -ne 0 ] || [ -s "$tmp/err" ]; then
    bad "bench --json: rc=$rc"; cat "$tmp/err"
else
    good=1
    for f in model backend family prefill tokens repeatable compiled; do
        grep -q "\"$f\": " "$tmp/out" || { bad "bench --json: no \"$f\""; good=0; }
    done
    for f in vocab_size max_cache_len max_chunk weight_bytes state_bytes load_s ttft_ms decode_tok_s \
             decode_ms_per_token peak_rss_bytes; do
        positive "$tmp/out" "$f" 1 || good=0
    done
    positive "$tmp/out" tok_s 2 || good=0
    positive "$tmp/out" ms 2 || good=0
    ntok=$(sed -n 's/.*"tokens": \[\([0-9, ]*\)\].*/\1/p' "$tmp/out" | tr ',' '\n' | grep -c '[0-9]')
    [ "$ntok" -eq 8 ] || { bad "bench --json: $ntok tokens, expected 8"; good=0; }
    grep -q '"repeatable": true' "$tmp/out" || { bad "bench --json: greedy runs differ"; good=0; }
    if command -v python3 >/dev/null && ! python3 -c 'import json, sys; json.load(sys.stdin)' <"$tmp/out"; then
        bad "bench --json: not valid JSON"; good=0
    fi
    [ $good -eq 1 ] && ok "bench --json: $(tr -d '\n' <"$tmp/out" | head -c 300)..."
fi

# the same seed gives the same tokens; the compiled program gives them too
tokens() { grep -o '"tokens": \[[0-9, ]*\]' "$1"; }
run "$petrel" bench -m "$model" "${small[@]}" --json
[ $rc -eq 0 ] && [ "$(tokens "$tmp/out")" = "$(tokens "$tmp/bench1.json")" ] && ok "greedy tokens repeat" \
    || bad "greedy tokens differ between runs"
"$petrel" compile "$model" -o "$tmp/llama.petrel" >/dev/null 2>&1 || bad "compile"
run "$petrel" bench -m "$tmp/llama.petrel" "${small[@]}" --json
if [ $rc -eq 0 ] && grep -q '"compiled": true' "$tmp/out" && [ "$(tokens "$tmp/out")" = "$(tokens "$tmp/bench1.json")" ]; then
    ok "compiled program: same tokens"
else
    bad "compiled program: rc=$rc"; cat "$tmp/err"
fi
run "$petrel" bench -m "$model" "${small[@]}" --json --seed 5
[ $rc -eq 0 ] && [ "$(tokens "$tmp/out")" != "$(tokens "$tmp/bench1.json")" ] && ok "--seed changes the prompt" \
    || bad "--seed 5: rc=$rc or the same tokens as seed 0"

# a prefill longer than a chunk is skipped with a note, the rest still runs
run "$petrel" bench -m "$model" --prompt 8 --gen 4 --prefill 8,64 --reps 1 --warmup 0 --json
if [ $rc -eq 0 ] && grep -q '{"tokens": 64, "skipped": "the model takes at most 8 tokens per call' "$tmp/out" \
    && positive "$tmp/out" tok_s 1; then
    ok "prefill 64 skipped"
else
    bad "prefill 64: rc=$rc"; cat "$tmp/out" "$tmp/err"
fi

# human form: a header, one line per prefill length, TTFT, decode
run "$petrel" bench -m "$model" "${small[@]}"
if [ $rc -eq 0 ] && [ "$(wc -l <"$tmp/out")" -eq 5 ] && grep -q '^prefill 8 tokens: [0-9.]* tok/s' "$tmp/out" \
    && grep -q '^time to first token (16-token prompt): ' "$tmp/out" && grep -q '^decode: [0-9.]* tok/s' "$tmp/out"; then
    ok "human output"
else
    bad "human output: rc=$rc"; cat "$tmp/out" "$tmp/err"
fi

# --profile: the measurements, then one row per operator, times adding up
run "$petrel" bench -m "$model" "${small[@]}" --profile
if [ $rc -eq 0 ] && grep -q '^profile of the 16-token prefill (2 calls, node by node, no graphs): [0-9.]* us per call' "$tmp/out" \
    && grep -q '^profile of the decode steps ([0-9]* calls, node by node, no graphs): [0-9.]* us per call' "$tmp/out" \
    && grep -Eq '^ +[0-9.]+ +[0-9.]+ +[0-9.]+  aten\.linear\.default \(cpu\)$' "$tmp/out" \
    && awk '/^profile/ {t++; next} t && NF >= 4 && $1 ~ /^[0-9.]+$/ {p[t] += $3}
            END {exit !(t == 2 && p[1] > 99 && p[1] < 101 && p[2] > 99 && p[2] < 101)}' "$tmp/out"; then
    ok "profile"
else
    bad "profile: rc=$rc"; cat "$tmp/out" "$tmp/err"
fi

# bad input
expect_fail "--json with --profile" "$petrel" bench -m "$model" --json --profile
expect_fail "without -m" "$petrel" bench
expect_fail "unknown flag" "$petrel" bench -m "$model" --frobnicate
expect_fail "stray argument" "$petrel" bench -m "$model" extra
expect_fail "flag without value" "$petrel" bench -m "$model" --gen
expect_fail "--gen 1" "$petrel" bench -m "$model" --gen 1
expect_fail "--gen not a number" "$petrel" bench -m "$model" --gen many
expect_fail "--prompt 0" "$petrel" bench -m "$model" --prompt 0
expect_fail "--reps 0" "$petrel" bench -m "$model" --reps 0
expect_fail "negative --warmup" "$petrel" bench -m "$model" --warmup -1
expect_fail "empty --prefill" "$petrel" bench -m "$model" --prefill ""
expect_fail "--prefill trailing comma" "$petrel" bench -m "$model" --prefill 8,
expect_fail "--prefill double comma" "$petrel" bench -m "$model" --prefill 4,,8
expect_fail "--prefill 0" "$petrel" bench -m "$model" --prefill 0
expect_fail "--prefill word" "$petrel" bench -m "$model" --prefill long
expect_fail "negative seed" "$petrel" bench -m "$model" --seed -1
expect_fail "bad backend" "$petrel" bench -m "$model" --backend tpu
expect_fail "missing model" "$petrel" bench -m "$tmp/none.pt2"
expect_fail "model without LLM extras" "$petrel" bench -m "$generic"
expect_fail "prompt + gen over the cache" "$petrel" bench -m "$model" --prompt 100 --gen 100
exit $fail
