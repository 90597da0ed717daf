#!/usr/bin/env bash
# bench/cpu.sh -- the CPU benchmark table (issue #7): petrel decode/prefill
# speed of the small shapes (Qwen3-0.6B, Llama-3.2-1B; random weights, real
# configs: bench/models.py) in fp32, bf16, int8 and int4 (the quantized ones
# from the fp32 export, `petrel compile --quant`), the DRAM read bandwidth
# (bench/membw.c) and the floor it gives.  Prints the markdown table of
# every result in the work directory (bench/report.py).
#
#   bench/cpu.sh [options] [MODEL...]        (default: Qwen3-0.6B Llama-3.2-1B)
#     -o FILE          also write the table to FILE
#     --record         record the table in bench/RESULTS.md (newest first)
#     --work DIR       models and JSON results (default build/bench)
#     --formats LIST   any of fp32,bf16,int8,int4 (default all four)
#     --prompt N --gen N --prefill N[,N] --reps R --warmup W
#                      passed to `petrel bench` (defaults 128, 256, 512,2048, 3, 1)
#     --torch          also run Hugging Face eager (fp32, CPU) for the greedy-token
#                      check: 32 tokens, one run after one warm-up, no prefill rows
#     --keep-models    keep the exported/compiled model files
#     --fresh          forget earlier results in the work directory first
#
# Environment: PYTHON (default: the venv of scripts/setup_venv.sh),
# BENCH_COMMIT (the commit to name in the table when the tree has no .git).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$top/build/bench
out="" record=0 formats="fp32,bf16,int8,int4" torch=0 keep=0 fresh=0
prompt=128 gen=256 prefill=512,2048 reps=3 warmup=1
models=()
while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift 2 ;;
        --record) record=1; shift ;;
        --work) work=$2; shift 2 ;;
        --formats) formats=$2; shift 2 ;;
        --prompt) prompt=$2; shift 2 ;;
        --gen) gen=$2; shift 2 ;;
        --prefill) prefill=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --torch) torch=1; shift ;;
        --keep-models) keep=1; shift ;;
        --fresh) fresh=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "cpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) models+=("$1"); shift ;;
    esac
done
[ ${#models[@]} -gt 0 ] || models=(Qwen3-0.6B Llama-3.2-1B)
say() { echo "cpu.sh: $*" >&2; }
py=${PYTHON:-$("$top/scripts/setup_venv.sh")/bin/python}
known=$("$py" "$top/bench/models.py" list)
for m in "${models[@]}"; do
    grep -qx -- "$m" <<<"$known" || { echo "cpu.sh: unknown model '$m' (have: ${known//$'\n'/ })" >&2; exit 2; }
done

# the KV cache holds the longest prefill and prompt + gen; one chunk takes the longest prefill
cache=2048 chunk=$prompt
for n in ${prefill//,/ } $((prompt + gen)); do [ "$n" -gt "$cache" ] && cache=$n; done
for n in ${prefill//,/ }; do [ "$n" -gt "$chunk" ] && chunk=$n; done
bench_args=(--prompt "$prompt" --gen "$gen" --prefill "$prefill" --reps "$reps" --warmup "$warmup")

say "building petrel (make)"
make -C "$top" --no-print-directory >/dev/null
petrel=$top/build/petrel
[ $fresh -eq 1 ] && rm -rf "$work"
mkdir -p "$work"

# ---- the run's environment -----------------------------------------------------------
cc -O3 -march=native -fopenmp "$top/bench/membw.c" -o "$work/membw"
bw=$("$work/membw" 2 | awk '{print $2}')
say "DRAM read bandwidth: $((bw / 1000000000)) GB/s"
if [ -n "${BENCH_COMMIT:-}" ]; then
    commit=$BENCH_COMMIT   # a copy of the tree without .git
else
    commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -n "$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit (+ uncommitted changes)"
fi
cpu_name=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
machine="$cpu_name, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB"
MACHINE=$machine COMMIT=$commit BW=$bw THREADS=$(nproc) LOAD="$(cut -d' ' -f1-3 /proc/loadavg)" "$py" - "$work" <<'EOF'
import datetime, json, os, sys
env = {"kind": "cpu", "date": datetime.date.today().isoformat(), "machine": os.environ["MACHINE"],
       "commit": os.environ["COMMIT"], "bw_bytes_s": float(os.environ["BW"]),
       "bw_what": f"DRAM read with {os.environ['THREADS']} threads over 2 GB, best of 6, bench/membw.c",
       "notes": [f"load average before the run: {os.environ['LOAD']}"]}
json.dump(env, open(os.path.join(sys.argv[1], "env.json"), "w"), indent=1)
EOF
tok=$work/tokenizer.json   # any tokenizer will do: the prompts are random ids
[ -f "$tok" ] || "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]);
open(sys.argv[2], "wb").write(z.read(next(n for n in z.namelist() if n.endswith("extra/tokenizer.json"))))' \
    "$top/tests/fixtures/llm/llama.pt2" "$tok"
quant=0
"$petrel" help 2>&1 | grep -q -- '--quant' && quant=1

# export M DTYPE FILE: the random-weight model as a .pt2 (once).
export_model() {
    [ -f "$3" ] && return 0
    say "$1: export ($2)"
    "$py" "$top/bench/models.py" config "$1" "$work/$1.config.json"
    "$py" "$top/python/petrel_export.py" --config "$work/$1.config.json" --random-weights --seed 0 \
        --tokenizer "$tok" --dtype "$2" --max-cache-len "$cache" --max-chunk "$chunk" -o "$3" >/dev/null 2>"$work/err.txt"
}

# ---- per model -----------------------------------------------------------------------
for m in "${models[@]}"; do
    for f in ${formats//,/ }; do
        rm -f "$work/petrel-$m-$f.json" "$work/skip-$m-$f.txt"
        case $f in
            fp32|int8|int4) dtype=float32 src=$work/$m-fp32.pt2 ;;
            bf16) dtype=bfloat16 src=$work/$m-bf16.pt2 ;;
            *) echo "cpu.sh: unknown format '$f'" >&2; exit 2 ;;
        esac
        if [ "$f" != fp32 ] && [ "$f" != bf16 ] && [ $quant -eq 0 ]; then
            echo "n/a (not built yet)" >"$work/skip-$m-$f.txt"
            continue
        fi
        if ! export_model "$m" $dtype "$src"; then
            echo "export failed: $(tail -c 200 "$work/err.txt")" >"$work/skip-$m-$f.txt"
            continue
        fi
        prog=$work/$m-$f.petrel
        qflag=()
        case $f in int8|int4) qflag=(--quant "$f") ;; esac
        say "$m: compile $f"
        if ! "$petrel" compile "$src" -o "$prog" "${qflag[@]}" >/dev/null 2>"$work/err.txt"; then
            echo "compile failed: $(head -c 200 "$work/err.txt")" >"$work/skip-$m-$f.txt"
            continue
        fi
        say "$m: bench $f"
        if ! "$petrel" bench -m "$prog" "${bench_args[@]}" --json >"$work/petrel-$m-$f.json" 2>"$work/err.txt"; then
            echo "failed: $(head -c 200 "$work/err.txt")" >"$work/skip-$m-$f.txt"
            rm -f "$work/petrel-$m-$f.json"
        fi
        [ $keep -eq 1 ] || rm -f "$prog"
    done
    if [ $torch -eq 1 ]; then
        touch "$work/torch-check"
        say "$m: torch eager (fp32) for the greedy-token check"
        "$py" "$top/bench/torch_bench.py" --model "$m" --device cpu --dtype float32 --modes eager \
            --max-cache-len "$cache" --prompt "$prompt" --gen $((gen < 32 ? gen : 32)) --prefill none \
            --reps 1 --warmup 1 --json "$work/torch-$m.json" || say "$m: torch_bench failed"
    fi
    [ $keep -eq 1 ] || rm -f "$work/$m"-*.pt2
done

# other work on the machine slows every number: say how busy it was
"$py" - "$work" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, os, sys
path = os.path.join(sys.argv[1], "env.json")
env = json.load(open(path))
env["notes"][0] += f", after it: {sys.argv[2]} ({os.cpu_count()} cores)"
if os.path.exists(os.path.join(sys.argv[1], "torch-check")):
    env["notes"].append("torch eager rows (fp32, CPU): 32 tokens, one run after one warm-up, "
                        "for the greedy-token check, not a tuned baseline")
json.dump(env, open(path, "w"), indent=1)
EOF
args=("$work")
[ -n "$out" ] && args+=(--out "$out")
[ $record -eq 1 ] && args+=(--insert "$top/bench/RESULTS.md")
"$py" "$top/bench/report.py" "${args[@]}"
