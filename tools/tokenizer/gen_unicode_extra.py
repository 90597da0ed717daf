#!/usr/bin/env python3
"""Generate src/runners/llm/unicode_extra.h, which makes petrel's Unicode
libraries agree with Hugging Face `tokenizers` where their Unicode versions
differ:

1. the code points that Hugging Face's regex engine (Oniguruma, as bundled)
   puts in a property class but the system PCRE2 does not, because PCRE2
   was built with an older Unicode version.  text.c adds them to \\p{..}
   classes when it translates tokenizer.json regexes.
2. the code points whose normalization (NFC/NFD, NFKC/NFKD) Hugging Face's
   older tables do not know (they are treated as plain starters there) but
   utf8proc does.  pretokenize.c copies them verbatim and normalizes the
   text between them.

Needs the `tokenizers` package, libutf8proc and a C compiler with
libpcre2-8:

    python tools/tokenizer/gen_unicode_extra.py > src/runners/llm/unicode_extra.h
"""

import ctypes
import ctypes.util
import os
import subprocess
import sys
import tempfile

from tokenizers import Regex, normalizers, pre_tokenizers

PROPS = ["L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No"]

PROBE = r"""
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
static int enc(unsigned c, unsigned char *o) {
    if (c < 0x80) { o[0] = c; return 1; }
    if (c < 0x800) { o[0] = 0xc0 | c >> 6; o[1] = 0x80 | (c & 63); return 2; }
    if (c < 0x10000) { o[0] = 0xe0 | c >> 12; o[1] = 0x80 | ((c >> 6) & 63); o[2] = 0x80 | (c & 63); return 3; }
    o[0] = 0xf0 | c >> 18; o[1] = 0x80 | ((c >> 12) & 63); o[2] = 0x80 | ((c >> 6) & 63); o[3] = 0x80 | (c & 63);
    return 4;
}
int main(int argc, char **argv) {
    int e; PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)argv[1], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &e, &off, NULL);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    unsigned char b[4];
    for (unsigned c = 0; c < 0x110000; c++) {
        if (c >= 0xd800 && c <= 0xdfff) continue;
        if (pcre2_match(re, b, enc(c, b), 0, 0, md, NULL) >= 0) printf("%u\n", c);
    }
    return 0;
}
"""


def ranges(points):
    out = []
    for x in sorted(points):
        if out and out[-1][1] == x - 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return out


def word_chars():
    """Characters after which a single_word added token does not match."""
    from tokenizers import AddedToken, Tokenizer, models

    tok = Tokenizer(models.BPE(unk_token="<unk>", vocab={"<unk>": 0, "z": 1, "q": 2}, merges=[]))
    tok.add_tokens([AddedToken("zq", single_word=True, normalized=False)])
    zq = tok.token_to_id("zq")
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    word = set()
    for i in range(0, len(cps), 20000):
        chunk = cps[i:i + 20000]
        for c, e in zip(chunk, tok.encode_batch(["zq" + chr(c) for c in chunk], add_special_tokens=False)):
            if e.ids[0] != zq:
                word.add(c)
    return word


def normalization_unknowns():
    """Per form family: code points where utf8proc and Hugging Face differ."""
    lib = ctypes.CDLL("libutf8proc.so.2")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.free.argtypes = [ctypes.c_void_p]
    for f in ["NFC", "NFD", "NFKC", "NFKD"]:
        getattr(lib, "utf8proc_" + f).restype = ctypes.c_void_p
        getattr(lib, "utf8proc_" + f).argtypes = [ctypes.c_char_p]

    def up(form, s):
        p = getattr(lib, "utf8proc_" + form)(s.encode())
        r = ctypes.string_at(p).decode()
        libc.free(p)
        return r

    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF and c != 10]
    probes = {  # each reveals a different table: mappings, combining classes, compositions
        "alone": lambda c: chr(c),
        "after0301": lambda c: "\u0301" + chr(c),
        "before0316": lambda c: chr(c) + "\u0316",
        "nfd": lambda c: up("NFD", chr(c)),
        "nfkd": lambda c: up("NFKD", chr(c)),
    }
    marked = {}
    for form in ["NFC", "NFD", "NFKC", "NFKD"]:
        hf = getattr(normalizers, form)()
        m = set()
        for name, make in probes.items():
            strs = [make(c) for c in cps]
            joined = "\n".join(strs)
            for c, p, x, y in zip(cps, strs, hf.normalize_str(joined).split("\n"), up(form, joined).split("\n")):
                if x != y:
                    # a composition pair differs: its second character is the unknown one
                    m.update(ord(ch) for ch in (p[1:] if name in ("nfd", "nfkd") and len(p) > 1 else chr(c)))
        marked[form] = m
    canon = marked["NFC"] | marked["NFD"]
    return ranges(canon), ranges(canon | marked["NFKC"] | marked["NFKD"])


def main():
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(PROBE)
        subprocess.run(["cc", "-O2", src, "-o", exe, "-lpcre2-8"], check=True)
        pcre_version = subprocess.run(["pkg-config", "--modversion", "libpcre2-8"], capture_output=True,
                                      text=True).stdout.strip()
        def pcre_set(pattern):
            out = subprocess.run([exe, pattern], capture_output=True, text=True, check=True).stdout
            return {int(x) for x in out.split()}

        rows = []
        for p in PROPS:
            split = pre_tokenizers.Split(Regex(r"\P{%s}+" % p), behavior="removed")
            onig = {ord(ch) for piece, _ in split.pre_tokenize_str(text) for ch in piece}
            pcre = pcre_set(r"^\p{%s}$" % p)
            if pcre - onig:
                print(f"warning: \\p{{{p}}}: {len(pcre - onig)} code points only PCRE2 has", file=sys.stderr)
            rows.append((p, ranges(onig - pcre)))
        # Rust's char::is_numeric (the Digits pre-tokenizer), against \p{N}
        digits = pre_tokenizers.Digits(individual_digits=True)
        numeric = {ord(p) for p, _ in digits.pre_tokenize_str(text)
                   if len(p) == 1 and len(digits.pre_tokenize_str("a" + p + "b")) == 3}
        rows.append(("rust_numeric", ranges(numeric - pcre_set(r"^\p{N}$"))))
        # the regex crate's \w (single_word added tokens), against the class text.c uses
        word = word_chars()
        rows.append(("rust_word", ranges(word - pcre_set(r"^[\p{Alphabetic}\p{L}\p{M}\p{Nd}\p{Pc}\x{200c}\x{200d}]$"))))
    import tokenizers
    print("/*")
    print("** unicode_extra.h -- generated by tools/tokenizer/gen_unicode_extra.py; do not edit.")
    print("**")
    print(f"** Code points in each Unicode property class for Hugging Face tokenizers")
    print(f"** {tokenizers.__version__} (Oniguruma) but not for PCRE2 {pcre_version}, as \\x{{..}} class")
    print("** ranges; text.c appends them to \\p{..} when translating regexes.  rust_numeric")
    print("** and rust_word do the same for Rust's char::is_numeric (Digits) and the")
    print("** regex crate's \\w (single_word tokens).  Then the")
    print("** code points whose normalization Hugging Face's tables do not know but")
    print("** utf8proc's do; pretokenize.c leaves them alone.")
    print("*/")
    print("#ifndef PETREL_LLM_UNICODE_EXTRA_H")
    print("#define PETREL_LLM_UNICODE_EXTRA_H")
    print()
    print("#include <stdint.h>")
    print()
    print("static const struct { const char *prop; const char *extra; } tk_unicode_extra[] = {")
    for p, rs in rows:
        body = "".join(f"\\\\x{{{a:x}}}" if a == b else f"\\\\x{{{a:x}}}-\\\\x{{{b:x}}}" for a, b in rs)
        lines = []
        while body:
            cut = min(len(body), 76)
            if cut < len(body):
                cut = body.rfind("\\\\x", 0, cut)
            lines.append(body[:cut])
            body = body[cut:]
        print(f'    {{"{p}",')
        if not lines:
            print('     ""},')
        for i, line in enumerate(lines):
            print(f'     "{line}"' + ("},"if i == len(lines) - 1 else ""))
    print("};")
    canon, compat = normalization_unknowns()
    for name, rs, what in [("tk_norm_canon_unknown", canon, "NFC/NFD"), ("tk_norm_compat_unknown", compat, "NFKC/NFKD")]:
        print()
        print(f"/* Code points Hugging Face's {what} tables do not know (sorted ranges). */")
        print(f"static const uint32_t {name}[][2] = {{")
        line = "   "
        for a, b in rs:
            item = f" {{0x{a:x}, 0x{b:x}}},"
            if len(line) + len(item) > 100:
                print(line)
                line = "   "
            line += item
        print(line)
        print("};")
    print()
    print("#endif /* PETREL_LLM_UNICODE_EXTRA_H */")


if __name__ == "__main__":
    main()
