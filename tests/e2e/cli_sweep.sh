#!/usr/bin/env bash
# Bad-input sweep over every command in `petrel help` (compile, run, inspect,
# show, tokenize, generate, chat, bench), beyond the cases cli_errors.sh,
# generate_cli.sh and bench_cli.sh already hold: unknown flags, flags
# without their value, bad numbers (negative, not a number, overflow, NaN,
# infinite, trailing junk), missing files, directories, empty, truncated
# and wrong-type files in every file argument, outputs in missing
# directories or on top of an input, a directory or a FIFO, and conflicting
# flags.  Each case must exit 1 with exactly one line "petrel: ..." on
# stderr, nothing on stdout, no file left in the output directory and every
# input untouched.
set -u
petrel=$1
tests=$2                    # the tests/ directory
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
cases=0
out=$tmp/out                # outputs go here: it must stay empty
mkdir "$out"

op=$tests/fixtures/abs_aten/model.pt2
in=$tests/fixtures/abs_aten/step0.in.safetensors
llm=$tests/fixtures/llm/llama.pt2
tok=$tests/data/tokenizers/synthetic-bytelevel.json

# expect_fail WHAT CMD...: the contract above; $stdin (default empty) is fed
# to the command.
stdin=
expect_fail() {
    local what=$1; shift
    cases=$((cases + 1))
    printf '%s' "$stdin" | timeout 120 "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    local rc=${PIPESTATUS[1]}
    local lines left
    lines=$(wc -l <"$tmp/stderr")
    left=$(ls -A "$out")
    if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q '^petrel: ' "$tmp/stderr" || [ -s "$tmp/stdout" ] || [ -n "$left" ]; then
        echo "FAIL $what: rc=$rc, stdout $(wc -c <"$tmp/stdout") bytes, left in the output directory: '$left', stderr:"
        cat "$tmp/stderr"
        fail=1
        rm -rf "${out:?}"/* "${out:?}"/.[!.]* 2>/dev/null
    fi
}

# ---- damaged and wrong-type files -------------------------------------------------------
mkdir "$tmp/dir.pt2"
: >"$tmp/empty.pt2"
: >"$tmp/empty.safetensors"
: >"$tmp/empty.json"
mkfifo "$tmp/fifo"
"$petrel" compile "$op" -o "$tmp/op.petrel" >/dev/null 2>&1 || { echo "FAIL compile $op"; fail=1; }
"$petrel" compile "$llm" -o "$tmp/llm.petrel" >/dev/null 2>&1 || { echo "FAIL compile $llm"; fail=1; }
cut_half() { head -c $(($(stat -c %s "$1") / 2)) "$1" >"$2"; }
cut_half "$llm" "$tmp/trunc.pt2"
cut_half "$tmp/llm.petrel" "$tmp/trunc.petrel"
head -c $(($(stat -c %s "$tmp/llm.petrel") - 1)) "$tmp/llm.petrel" >"$tmp/short1.petrel"
cut_half "$in" "$tmp/trunc.safetensors"
cut_half "$tok" "$tmp/trunc.json"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' >"$tmp/hugeheader.safetensors"
printf '\x04\x00\x00\x00\x00\x00\x00\x00[1]\n' >"$tmp/notobject.safetensors"
echo 'not a program' >"$tmp/text.pt2"

programs=("$tmp/missing.pt2" "$tmp/dir.pt2" "$tmp/empty.pt2" "$tmp/text.pt2" "$tmp/trunc.pt2" "$tmp/trunc.petrel"
          "$tmp/short1.petrel" "$in" "$tok")
tensors=("$tmp/missing.safetensors" "$tmp/dir.pt2" "$tmp/empty.safetensors" "$tmp/trunc.safetensors"
         "$tmp/hugeheader.safetensors" "$tmp/notobject.safetensors" "$op" "$tmp/op.petrel" "$tok")
tokenizers=("$tmp/missing.json" "$tmp/dir.pt2" "$tmp/empty.json" "$tmp/trunc.json" "$llm" "$in")

for p in "${programs[@]}"; do
    n=${p#"$tmp/"}; n=${n#"$tests/"}
    expect_fail "compile $n" "$petrel" compile "$p" -o "$out/x.petrel"
    expect_fail "run $n" "$petrel" run "$p" --inputs "$in" --outputs "$out/o.safetensors"
    expect_fail "inspect $n" "$petrel" inspect "$p"
    expect_fail "generate -m $n" "$petrel" generate -m "$p" -p hi -n 2
    expect_fail "chat -m $n" "$petrel" chat -m "$p"
    expect_fail "bench -m $n" "$petrel" bench -m "$p" --prompt 4 --gen 2 --prefill 2 --reps 1 --warmup 0
done
for t in "${tensors[@]}"; do
    n=${t#"$tmp/"}; n=${n#"$tests/"}
    expect_fail "run --inputs $n" "$petrel" run "$op" --inputs "$t" --outputs "$out/o.safetensors"
    expect_fail "show $n" "$petrel" show "$t"
done
expect_fail "run --inputs of another program" "$petrel" run "$op" --inputs "$tests/fixtures/abs_int_aten/step0.in.safetensors" \
    --outputs "$out/o.safetensors"
for t in "${tokenizers[@]}"; do
    n=${t#"$tmp/"}; n=${n#"$tests/"}
    stdin=hello expect_fail "tokenize --tokenizer $n" "$petrel" tokenize --tokenizer "$t"
done

# ---- outputs that cannot or must not be written -----------------------------------------
cp "$op" "$tmp/op.pt2"
cp "$in" "$tmp/in.safetensors"
cp "$llm" "$tmp/llm.pt2"
for o in "$tmp/nodir/x" "$out" "$tmp/fifo"; do
    n=${o#"$tmp/"}
    expect_fail "compile -o $n" "$petrel" compile "$op" -o "$o"
    expect_fail "run --outputs $n" "$petrel" run "$op" --inputs "$in" --outputs "$o"
done
expect_fail "generate --ids-out nodir/x" "$petrel" generate -m "$llm" -p hi -n 2 --temp 0 --ids-out "$tmp/nodir/ids"
expect_fail "generate --ids-out a directory" "$petrel" generate -m "$llm" -p hi -n 2 --temp 0 --ids-out "$out"
expect_fail "generate --ids-out after a failed generate" "$petrel" generate -m "$llm" -p hi -n 1000 --ids-out "$out/ids"
expect_fail "compile -o its input" "$petrel" compile "$tmp/op.pt2" -o "$tmp/op.pt2"
expect_fail "compile -o its input, another spelling" "$petrel" compile "$tmp/op.pt2" -o "$tmp/../$(basename "$tmp")/op.pt2"
expect_fail "run --outputs its program" "$petrel" run "$tmp/op.pt2" --inputs "$tmp/in.safetensors" --outputs "$tmp/op.pt2"
expect_fail "run --outputs its inputs" "$petrel" run "$tmp/op.pt2" --inputs "$tmp/in.safetensors" --outputs "$tmp/in.safetensors"
expect_fail "generate --ids-out its model" "$petrel" generate -m "$tmp/llm.pt2" -p hi -n 2 --ids-out "$tmp/llm.pt2"
[ -p "$tmp/fifo" ] || { echo "FAIL the FIFO was replaced"; fail=1; }
cmp -s "$op" "$tmp/op.pt2" && cmp -s "$in" "$tmp/in.safetensors" && cmp -s "$llm" "$tmp/llm.pt2" \
    || { echo "FAIL an input was overwritten"; fail=1; }

# ---- flags: unknown, without a value, stray arguments, conflicts --------------------------
for f in --frobnicate -x --; do
    expect_fail "compile $f" "$petrel" compile "$op" -o "$out/x.petrel" "$f"
    expect_fail "run $f" "$petrel" run "$op" --inputs "$in" --outputs "$out/o.safetensors" "$f"
    expect_fail "inspect $f" "$petrel" inspect "$f"
    expect_fail "show $f" "$petrel" show "$f"
    expect_fail "tokenize $f" "$petrel" tokenize --tokenizer "$tok" "$f"
    expect_fail "generate $f" "$petrel" generate -m "$llm" -p hi "$f"
    expect_fail "chat $f" "$petrel" chat -m "$llm" "$f"
    expect_fail "bench $f" "$petrel" bench -m "$llm" "$f"
done
for f in -o --output --backend; do expect_fail "compile $f without a value" "$petrel" compile "$op" "$f"; done
for f in --inputs --outputs --backend; do
    expect_fail "run $f without a value" "$petrel" run "$op" --inputs "$in" --outputs "$out/o.safetensors" "$f"
done
expect_fail "tokenize --tokenizer without a value" "$petrel" tokenize --tokenizer
llm_valued=(-m --model -n --max-tokens --temp --top-k --top-p --min-p --repeat-penalty --presence-penalty
            --repeat-last-n --seed --backend --system)
for f in "${llm_valued[@]}" -p --prompt --stop --ids-out; do
    expect_fail "generate $f without a value" "$petrel" generate -m "$llm" -p hi "$f"
done
for f in "${llm_valued[@]}"; do expect_fail "chat $f without a value" "$petrel" chat -m "$llm" "$f"; done
for f in -m --model --backend --prompt --gen --prefill --reps --warmup --seed; do
    expect_fail "bench $f without a value" "$petrel" bench -m "$llm" "$f"
done
expect_fail "compile: two inputs" "$petrel" compile "$op" "$op" -o "$out/x.petrel"
expect_fail "run: two programs" "$petrel" run "$op" "$op" --inputs "$in" --outputs "$out/o.safetensors"
expect_fail "run: more --outputs than --inputs" "$petrel" run "$op" --inputs "$in" --outputs "$out/a" --outputs "$out/b"
expect_fail "inspect: two programs" "$petrel" inspect "$op" "$op"
expect_fail "inspect: nothing" "$petrel" inspect
expect_fail "show: two files" "$petrel" show "$in" "$in"
expect_fail "show: nothing" "$petrel" show
expect_fail "tokenize: stray argument" "$petrel" tokenize --tokenizer "$tok" text
expect_fail "tokenize --decode --no-special" "$petrel" tokenize --tokenizer "$tok" --decode --no-special
expect_fail "tokenize --keep-special without --decode" "$petrel" tokenize --tokenizer "$tok" --keep-special
expect_fail "chat: stray argument" "$petrel" chat -m "$llm" hello
expect_fail "chat: a generate-only flag" "$petrel" chat -m "$llm" --raw
expect_fail "bench: --prompt + --gen over the cache" "$petrel" bench -m "$llm" --prompt 127 --gen 2
expect_fail "generate: 17 --stop strings" "$petrel" generate -m "$llm" -p hi \
    $(for i in $(seq 17); do printf -- '--stop s%d ' "$i"; done)
expect_fail "generate: empty --stop" "$petrel" generate -m "$llm" -p hi --stop ""
# a newline in an argument must not split the message
nl=$'a\nb'
expect_fail "inspect: a file name with a newline" "$petrel" inspect "$tmp/$nl.pt2"
expect_fail "run: a flag with a newline" "$petrel" run "$op" --inputs "$in" --outputs "$out/o.safetensors" "--$nl"
expect_fail "generate: a backend with a newline" "$petrel" generate -m "$llm" -p hi --backend "$nl"

# ---- numbers ------------------------------------------------------------------------------
bad_ints=(-5 abc "" 99999999999999999999 -99999999999999999999 18446744073709551616 nan 1.5 "1 " 0x10 1e3)
bad_floats=(abc "" nan NaN inf -inf 1e39 -1e39 "1 " 0x 1e 1,5)
for v in "${bad_ints[@]}"; do
    for f in -n --top-k --repeat-last-n --seed; do
        expect_fail "generate $f '$v'" "$petrel" generate -m "$llm" -p hi "$f" "$v"
        expect_fail "chat $f '$v'" "$petrel" chat -m "$llm" "$f" "$v"
    done
    for f in --prompt --gen --reps --warmup --seed --prefill; do
        expect_fail "bench $f '$v'" "$petrel" bench -m "$llm" "$f" "$v"
    done
    expect_fail "bench --prefill '8,$v'" "$petrel" bench -m "$llm" --prefill "8,$v"
    [[ -n $v && $v != *" "* ]] && stdin="1 $v 2" expect_fail "tokenize --decode '$v'" "$petrel" tokenize --tokenizer "$tok" --decode
done
for v in "${bad_floats[@]}"; do
    for f in --temp --top-p --min-p --repeat-penalty --presence-penalty; do
        expect_fail "generate $f '$v'" "$petrel" generate -m "$llm" -p hi "$f" "$v"
        expect_fail "chat $f '$v'" "$petrel" chat -m "$llm" "$f" "$v"
    done
done
for v in -1 -0.5 2 1.01; do expect_fail "generate --top-p $v" "$petrel" generate -m "$llm" -p hi --top-p "$v"; done
for v in -0.1 1.5; do expect_fail "generate --min-p $v" "$petrel" generate -m "$llm" -p hi --min-p "$v"; done
for v in -1 0 -0; do expect_fail "chat --repeat-penalty $v" "$petrel" chat -m "$llm" --repeat-penalty "$v"; done
expect_fail "bench --reps over the limit" "$petrel" bench -m "$llm" --reps 1001
expect_fail "bench --prefill of 17 lengths" "$petrel" bench -m "$llm" --prefill "$(seq -s, 17)"
expect_fail "bench --prefill too long" "$petrel" bench -m "$llm" --prefill "$(printf '1,%.0s' $(seq 200))1"

echo "cli_sweep: $cases cases, $([ $fail -eq 0 ] && echo ok || echo FAIL)"
exit $fail
