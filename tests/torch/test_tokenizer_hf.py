#!/usr/bin/env python3
"""Torch tier: `petrel tokenize` against Hugging Face `tokenizers` on
generated Unicode text, for the Llama 3.1, Qwen3 and Gemma 3 tokenizers in
tests/data/tokenizers.

Texts are random mixes of ASCII words, contractions, accented and combining
characters (NFC matters for Qwen), CJK, Hangul, Arabic, emoji with joiners,
digit runs, punctuation, runs of every kind of whitespace (\\t \\n \\r\\n,
NBSP, U+0085, U+2028, U+3000 ...) and the tokenizer's own special and added
tokens.  For each text:

    $PETREL tokenize --tokenizer T            == Tokenizer.encode(text).ids
    $PETREL tokenize --tokenizer T --no-special == encode(text, add_special_tokens=False).ids

and for id lists (HF's own ids, and random ids that cut UTF-8 sequences):

    $PETREL tokenize --tokenizer T --decode [--keep-special] == Tokenizer.decode(ids[, skip_special_tokens=False])

Prints one line per tokenizer and every mismatch; exits 1 if any.

    PETREL=build/petrel test_tokenizer_hf.py [--seed N] [--count N] [--jobs N]
"""

import argparse
import gzip
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "tokenizers")
TOKENIZERS = ["llama3_1", "qwen3", "gemma3"]
TIMEOUT = 120

WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer petrel inference runtime "
         "Hello World THE Don't I'm we'll they've she'd it's IT'S O'Neil rock'n'roll").split()
ACCENTED = "café naïve résumé coöperate Ångström Øresund façade jalapeño Ελληνικά русский язык Ærø".split()
# decomposed forms: NFC composes them (Qwen normalizes, the others must not)
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u1100\u1161\u11a8", "A\u030a"]
CJK = ["你好", "世界", "我想在apple工作", "東京都", "日本語のテキスト", "한국어", "안녕하세요", "ｶﾀｶﾅ", "ＡＢＣ１２３"]
OTHER = ["مرحبا بالعالم", "שלום", "नमस्ते", "สวัสดี", "ქართული", "ﬁ ﬂ", "ſ", "'ſ", "Ⅻ", "½", "²"]
EMOJI = ["😀", "🦙", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷", "😶‍🌫️", "✅", "🚀"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "—", "–", "«»", "“”", "''", "``", "¿¡", "€", "©"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u0085", "\u2028", "\u2029",
          "\u3000", "\u2003", "\u200b", "\u202f", "\u205f", "\u1680", "\x0b", "\x0c", " \t \n"]


def gen_text(rng: random.Random, specials: list) -> str:
    parts = []
    for _ in range(rng.randint(1, 60)):
        r = rng.random()
        if r < 0.25:
            parts.append(rng.choice(WORDS))
        elif r < 0.32:
            parts.append(rng.choice(ACCENTED))
        elif r < 0.37:
            parts.append(rng.choice(WORDS) + rng.choice(COMBINING))
        elif r < 0.45:
            parts.append(rng.choice(CJK))
        elif r < 0.50:
            parts.append(rng.choice(OTHER))
        elif r < 0.56:
            parts.append(rng.choice(EMOJI) * rng.randint(1, 3))
        elif r < 0.63:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif r < 0.72:
            parts.append(rng.choice(PUNCT) * rng.randint(1, 4))
        elif r < 0.78 and specials:
            parts.append(rng.choice(specials))
        elif r < 0.82:
            parts.append(chr(rng.randint(0x20, 0x2FFF)))  # anything in the BMP's lower part
        else:
            parts.append(rng.choice(SPACES) * rng.randint(1, 3))
        if rng.random() < 0.6:
            parts.append(" " if rng.random() < 0.8 else rng.choice(SPACES))
    text = "".join(parts)
    # no lone surrogates: the text must be valid UTF-8
    return text.encode("utf-8", "replace").decode("utf-8")


def run_petrel(petrel: str, path: str, args: list, stdin: bytes) -> tuple:
    try:
        p = subprocess.run([petrel, "tokenize", "--tokenizer", path] + args, input=stdin, capture_output=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT}s"
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {p.stderr.decode(errors='replace').strip()}"
    return p.stdout, None


def check_tokenizer(petrel: str, name: str, seed: int, count: int, jobs: int) -> tuple:
    path = os.path.join(DATA, f"{name}.tokenizer.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        hf = Tokenizer.from_str(f.read())
    added = [t.content for t in hf.get_added_tokens_decoder().values()]
    rng = random.Random(f"{seed}-{name}")
    # prefer the tokens people write (chat markers), but draw from all
    specials = [t for t in added if not t.startswith("<unused") and "reserved" not in t] or added
    texts = [gen_text(rng, specials) for _ in range(count)]
    texts += ["", " ", "\n", "  leading and trailing  ", specials[0] + specials[-1] if specials else "x"]

    jobs_list = []
    for i, text in enumerate(texts):
        want = hf.encode(text).ids
        jobs_list.append((f"text {i} encode", [], text.encode(), " ".join(map(str, want)) + "\n", text))
        if i % 4 == 0:
            want = hf.encode(text, add_special_tokens=False).ids
            jobs_list.append((f"text {i} --no-special", ["--no-special"], text.encode(),
                              " ".join(map(str, want)) + "\n", text))
        if i % 3 == 0:
            ids = hf.encode(text).ids
            jobs_list.append((f"text {i} --decode", ["--decode"], " ".join(map(str, ids)).encode(),
                              hf.decode(ids), text))
            jobs_list.append((f"text {i} --decode --keep-special", ["--decode", "--keep-special"],
                              " ".join(map(str, ids)).encode(), hf.decode(ids, skip_special_tokens=False), text))
    vocab = hf.get_vocab_size()
    for k in range(max(2, count // 5)):
        # random ids, byte tokens included: partial UTF-8 must decode like HF
        ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 40))]
        jobs_list.append((f"random ids {k} --decode", ["--decode"], " ".join(map(str, ids)).encode(),
                          hf.decode(ids), str(ids)))

    def one(job):
        label, args, stdin, want, text = job
        out, err = run_petrel(petrel, path, args, stdin)
        if err:
            return f"{label}: petrel {err}\n      input: {text!r}"[:2000]
        got = out.decode("utf-8", errors="surrogateescape")
        if got != want:
            return (f"{label}: mismatch\n      input: {text!r}\n      hf:     {want!r}\n      petrel: {got!r}")[:3000]
        return None

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        problems = [p for p in pool.map(one, jobs_list) if p]
    return len(jobs_list), problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, help="text seed (default: a new one, printed)")
    ap.add_argument("--count", type=int, default=40, help="random texts per tokenizer")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="petrel processes at a time")
    ap.add_argument("--only", nargs="+", choices=TOKENIZERS, help="only these tokenizers")
    a = ap.parse_args(argv)

    petrel = os.environ.get("PETREL")
    if not petrel or not os.access(petrel, os.X_OK):
        print("test_tokenizer_hf: set PETREL to the petrel binary", file=sys.stderr)
        return 2
    petrel = os.path.abspath(petrel)
    seed = a.seed if a.seed is not None else int(time.time() * 1000) % 1_000_000_007
    print(f"test_tokenizer_hf: seed {seed} (replay with --seed {seed})", flush=True)
    failed = 0
    for name in a.only or TOKENIZERS:
        t0 = time.time()
        n, problems = check_tokenizer(petrel, name, seed, a.count, a.jobs)
        for p in problems:
            print(f"FAIL  {name}: {p}", flush=True)
        failed += len(problems)
        print(f"{'ok  ' if not problems else 'FAIL'}  {name}: {n - len(problems)}/{n} checks match "
              f"Hugging Face tokenizers ({time.time() - t0:.0f}s)", flush=True)
    if failed:
        print(f"test_tokenizer_hf: {failed} mismatch(es)")
        return 1
    print("test_tokenizer_hf: all checks match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
