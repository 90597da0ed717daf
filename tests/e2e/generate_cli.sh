#!/usr/bin/env bash
# `petrel generate` and `petrel chat` on the tiny LLM fixtures: text on
# stdout and a stats line on stderr with exit 0; greedy and seeded runs
# repeat exactly; bad flags and impossible requests exit 1 with one line
# "petrel: ..." on stderr.
set -u
petrel=$1
dir=$2                      # tests/fixtures/llm
generic=$3                  # an exported program without LLM extras
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
model=$dir/llama.pt2

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

run() {  # run CMD...: stdout -> $tmp/out, stderr -> $tmp/err, status -> $rc
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

expect_fail() {
    local what=$1; shift
    run "$@"
    if [ $rc -ne 1 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q '^petrel: ' "$tmp/err"; then
        bad "$what: rc=$rc, stderr:"; cat "$tmp/err"
    else
        ok "$what: $(cat "$tmp/err")"
    fi
}

# generate: greedy, twice the same
run "$petrel" generate -m "$model" -p "Once upon" -n 12 --temp 0
if [ $rc -eq 0 ] && [ -s "$tmp/out" ] && grep -q 'generated 12 tokens' "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then
    ok "greedy generate: $(wc -c <"$tmp/out") bytes; $(cat "$tmp/err")"
else
    bad "greedy generate: rc=$rc"; cat "$tmp/err"
fi
cp "$tmp/out" "$tmp/greedy1"
run "$petrel" generate -m "$model" -p "Once upon" -n 12 --temp 0
cmp -s "$tmp/out" "$tmp/greedy1" && ok "greedy repeats" || bad "greedy output differs between runs"

# sampled with a seed: repeats; every sampling flag accepted
flags=(--temp 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 --repeat-penalty 1.1 --presence-penalty 0.2 --repeat-last-n 16)
run "$petrel" generate -m "$dir/qwen3.pt2" -p "The sea" -n 16 --seed 7 "${flags[@]}"
cp "$tmp/out" "$tmp/seeded1"
run "$petrel" generate -m "$dir/qwen3.pt2" -p "The sea" -n 16 --seed 7 "${flags[@]}"
if [ $rc -eq 0 ] && [ -s "$tmp/out" ] && cmp -s "$tmp/out" "$tmp/seeded1" && grep -q 'seed 7' "$tmp/err"; then
    ok "seeded generate repeats"
else
    bad "seeded generate: rc=$rc"; cat "$tmp/err"
fi

# chat template, raw prompt, stop string, compiled program
run "$petrel" generate -m "$model" -p "Hi" --chat --system "Be brief." -n 8 --temp 0
[ $rc -eq 0 ] && [ -s "$tmp/out" ] && ok "generate --chat" || { bad "generate --chat: rc=$rc"; cat "$tmp/err"; }
run "$petrel" generate -m "$model" -p "Once" --raw -n 8 --temp 0
[ $rc -eq 0 ] && [ -s "$tmp/out" ] && ok "generate --raw" || { bad "generate --raw: rc=$rc"; cat "$tmp/err"; }
"$petrel" compile "$model" -o "$tmp/llama.petrel" >/dev/null 2>&1 || bad "compile"
run "$petrel" generate -m "$tmp/llama.petrel" -p "Once upon" -n 12 --temp 0
cmp -s "$tmp/out" "$tmp/greedy1" && ok "compiled program generates the same text" || bad "compiled program differs"
stop=$(grep -ao '[a-zA-Z]\{2,\}' "$tmp/greedy1" | head -1 | head -c 2)
if [ -n "$stop" ]; then
    run "$petrel" generate -m "$model" -p "Once upon" -n 12 --temp 0 --stop "$stop"
    if [ $rc -eq 0 ] && grep -q 'stop: stop string' "$tmp/err" && ! grep -qF "$stop" "$tmp/out"; then
        ok "--stop '$stop'"
    else
        bad "--stop '$stop': rc=$rc"; cat "$tmp/err"
    fi
fi

# chat over a pipe: two turns, a reset, a third turn, exit
printf 'Hello\nHow are you?\n/reset\nAgain\n/exit\nnot read\n' >"$tmp/in"
"$petrel" chat -m "$model" --temp 0 -n 6 <"$tmp/in" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c . "$tmp/out")" -ge 1 ] && grep -q 'conversation cleared' "$tmp/err"; then
    ok "chat: 3 answers, $(wc -c <"$tmp/out") bytes"
else
    bad "chat: rc=$rc"; cat "$tmp/err"
fi
# a long conversation fills the 128-token cache and starts over
for i in $(seq 1 12); do echo "Tell me about the sea and the little petrel, part $i"; done >"$tmp/in"
"$petrel" chat -m "$model" --temp 0 -n 8 <"$tmp/in" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && grep -q 'starting a new one' "$tmp/err" && ok "chat starts over when the cache is full" \
    || { bad "chat cache full: rc=$rc"; cat "$tmp/err"; }

# bad input
expect_fail "generate without -m" "$petrel" generate -p hi
expect_fail "generate without -p" "$petrel" generate -m "$model"
expect_fail "unknown flag" "$petrel" generate -m "$model" -p hi --frobnicate
expect_fail "flag without value" "$petrel" generate -m "$model" -p hi --temp
expect_fail "top-p > 1" "$petrel" generate -m "$model" -p hi --top-p 1.5
expect_fail "top-p 0" "$petrel" generate -m "$model" -p hi --top-p 0
expect_fail "negative temp" "$petrel" generate -m "$model" -p hi --temp -1
expect_fail "temp not a number" "$petrel" generate -m "$model" -p hi --temp warm
expect_fail "min-p > 1" "$petrel" generate -m "$model" -p hi --min-p 2
expect_fail "negative top-k" "$petrel" generate -m "$model" -p hi --top-k -3
expect_fail "repeat penalty 0" "$petrel" generate -m "$model" -p hi --repeat-penalty 0
expect_fail "-n not a number" "$petrel" generate -m "$model" -p hi -n many
expect_fail "-n below -1" "$petrel" generate -m "$model" -p hi -n -2
expect_fail "negative seed" "$petrel" generate -m "$model" -p hi --seed -1
expect_fail "bad backend" "$petrel" generate -m "$model" -p hi --backend tpu
expect_fail "cuda unavailable" "$petrel" generate -m "$model" -p hi --backend cuda
expect_fail "--raw with --chat" "$petrel" generate -m "$model" -p hi --raw --chat
expect_fail "--system without --chat" "$petrel" generate -m "$model" -p hi --system x
expect_fail "request over the cache" "$petrel" generate -m "$model" -p hi -n 1000
expect_fail "missing model" "$petrel" generate -m "$tmp/none.pt2" -p hi
expect_fail "model without LLM extras" "$petrel" generate -m "$generic" -p hi
expect_fail "chat bad flag" "$petrel" chat -m "$model" --top-k x
expect_fail "chat without -m" "$petrel" chat
exit $fail
