#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and fuzz each for a
# while: pt2 (the .pt2 reader), program (the .petrel loader), safetensors,
# tokenizer (tokenizer.json loader and encoder).  `make` must have built
# build/petrel (it compiles the program seeds).  Seeds come from the fixtures; the working corpora live in
# build-fuzz/corpus/.  A crash is written to build-fuzz/crash-*: minimize
# it, add it to tests/fuzz/corpus/<target>/, and `make test` replays it
# from then on.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, all)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=${*:-pt2 program safetensors tokenizer}
out=build-fuzz
mkdir -p "$out"
cc=${CC_FUZZ:-clang}
flags="-std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc"
libs="$(pkg-config --cflags --libs jansson libpcre2-8 libutf8proc zlib) -lm"
srcs=$(ls src/core/*.c src/ir/*.c src/pt2/*.c src/format/*.c src/runtime/*.c src/io/*.c src/compiler/*.c \
          src/backends/cpu/*.c src/backends/cpu/ops/*.c src/backends/cpu/fast/*.c src/backends/cuda/caps.c \
          src/runners/llm/*.c)

seed() {
    local t=$1 dir=$out/corpus/$t
    mkdir -p "$dir"
    cp tests/fuzz/corpus/"$t"/* "$dir"/ 2>/dev/null || true
    case $t in
    pt2)
        for f in tests/fixtures/{add_broadcast,state_cache_index_copy,sym_view,llama}_{export,aten}/model.pt2; do
            [ -f "$f" ] && cp "$f" "$dir/$(basename "$(dirname "$f")").pt2"
        done
        ;;
    program)
        for f in tests/fixtures/{add_broadcast,state_cache_index_copy,sym_view,llama}_{export,aten}/model.pt2; do
            [ -f "$f" ] && build/petrel compile "$f" -o "$dir/$(basename "$(dirname "$f")").petrel" >/dev/null
        done
        ;;
    safetensors)
        for f in tests/fixtures/{add_broadcast,llama,whisper}_aten/step0.{in,out}.safetensors; do
            [ -f "$f" ] && cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"
        done
        ;;
    tokenizer)
        for f in tests/data/tokenizers/synthetic-*.json; do
            case $f in *.expected.json) continue ;; esac
            { cat "$f"; printf '\0Hello world, ünïcödé 123 <s> text!'; } >"$dir/$(basename "$f")"
        done
        ;;
    esac
}

# .pt2 archives and program files go through the same entry point (the
# loader tells them apart); the two targets differ in their seeds.
source_of() { case $1 in pt2 | program) echo load ;; *) echo "$1" ;; esac; }

for t in $targets; do
    echo "fuzz: building fuzz_$t" >&2
    # shellcheck disable=SC2086
    $cc $flags $srcs tests/fuzz/fuzz_$(source_of "$t").c $libs -o "$out/fuzz_$t"
    seed "$t"
    echo "fuzz: running fuzz_$t for $secs s" >&2
    (cd "$out" && ./fuzz_"$t" -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=4096 -timeout=20 \
        -print_final_stats=1 corpus/"$t") 2>&1 | tail -15
done
