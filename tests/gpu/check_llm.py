"""Greedy generation of the tiny LLM fixtures on the CUDA backend must give
Hugging Face's ids (tests/fixtures/llm/reference.json), from the .pt2 and
from a program compiled for CUDA.  usage: check_llm.py PETREL LLM_DIR"""
import json
import os
import subprocess
import sys
import tempfile


def generate(petrel, model, prompt, n, out):
    cmd = [petrel, "generate", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0",
           "--backend", "cuda", "--ids-out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    with open(out) as f:
        return [int(t) for t in f.read().split()], r.stderr.strip()


def main():
    petrel, d = sys.argv[1], sys.argv[2]
    ref = json.load(open(os.path.join(d, "reference.json")))
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in ref["models"]:
            src = os.path.join(d, m["file"])
            compiled = os.path.join(tmp, m["name"] + ".petrel")
            r = subprocess.run([petrel, "compile", src, "-o", compiled, "--backend", "cuda"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {m['name']}: compile: {r.stderr.strip()}")
                fails += 1
                continue
            for model in (src, compiled):
                for c in m["cases"]:
                    want = c["greedy_ids"]
                    got, err = generate(petrel, model, c["prompt"], len(want), os.path.join(tmp, "ids"))
                    tag = f"{os.path.basename(model)} '{c['prompt'][:24]}'"
                    # generation may stop early at an end-of-text id, as HF does
                    if got is not None and got == want[:len(got)] and len(got) > 0:
                        print(f"ok   {tag}: {len(got)} ids equal; {err.splitlines()[-1] if err else ''}")
                    else:
                        print(f"FAIL {tag}: got {got} want {want} ({err})")
                        fails += 1
    print(f"llm greedy on cuda: {'all equal' if not fails else str(fails) + ' failed'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
