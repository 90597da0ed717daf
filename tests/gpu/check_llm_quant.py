"""Greedy generation of the tiny LLM fixtures with quantized weights: the
program compiled for CUDA must pick the ids the same program compiled for
the CPU picks (the CPU kernels are the oracle of the quantized ops).  The
first 8 ids must be equal; later ones are reported, not failed, since a
near-tie of the logits may go either way once rounding differs.
usage: check_llm_quant.py PETREL LLM_DIR SCHEME [N_TOKENS]"""
import json
import os
import subprocess
import sys
import tempfile

MUST_MATCH = 8


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


def generate(petrel, program, prompt, n, out):
    ok, err = run([petrel, "generate", "-m", program, "-p", prompt, "-n", str(n), "--temp", "0", "--ids-out", out])
    if not ok:
        return None, err
    with open(out) as f:
        return [int(t) for t in f.read().split()], err


def main():
    petrel, d, scheme = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    ref = json.load(open(os.path.join(d, "reference.json")))
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in ref["models"]:
            progs = {}
            for be in ("cuda", "cpu"):
                progs[be] = os.path.join(tmp, f"{m['name']}.{be}.petrel")
                ok, err = run([petrel, "compile", os.path.join(d, m["file"]), "-o", progs[be], "--backend", be,
                               "--quant", scheme])
                if not ok:
                    print(f"FAIL {m['name']} {scheme}: compile for {be}: {err}")
                    fails += 1
                    break
            else:
                for c in m["cases"]:
                    tag = f"{m['name']} {scheme} '{c['prompt'][:24]}'"
                    ids = {be: generate(petrel, progs[be], c["prompt"], n, os.path.join(tmp, "ids"))
                           for be in progs}
                    (got, gerr), (want, werr) = ids["cuda"], ids["cpu"]
                    if got is None or want is None:
                        print(f"FAIL {tag}: generate: {gerr if got is None else werr}")
                        fails += 1
                        continue
                    same = 0
                    while same < min(len(got), len(want)) and got[same] == want[same]:
                        same += 1
                    # both may stop early at an end-of-text id
                    full = same == len(got) == len(want)
                    ok = full or same >= MUST_MATCH
                    print(f"{'ok  ' if ok else 'FAIL'} {tag}: {same} of {max(len(got), len(want))} ids equal"
                          + ("" if full else f" (cuda {got[same:same + 4]}..., cpu {want[same:same + 4]}...)"))
                    fails += not ok
    print(f"llm greedy {scheme}, cuda vs cpu: {'ok' if not fails else str(fails) + ' failed'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
