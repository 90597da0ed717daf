#!/usr/bin/env python3
"""Build the demo model's training text and tokenizer from Debian packages.

Sources (install with `apt-get install fortunes fortunes-min jargon-text`):
  - the fortune cookie files of `fortunes` / `fortunes-min`
    (/usr/share/games/fortunes; BSD fortune database),
  - the Jargon File of `jargon-text` (public domain).
Writes OUT/corpus.txt (documents separated by blank lines) and trains a
byte-level BPE tokenizer with Hugging Face `tokenizers`, written to
tools/demo_model/tokenizer.json.

    prepare.py --out DIR [--vocab 2048]
"""
import argparse
import html
import os
import re
from html.parser import HTMLParser

HERE = os.path.dirname(os.path.abspath(__file__))
FORTUNES = "/usr/share/games/fortunes"
JARGON = "/usr/share/doc/jargon-text/jargon.html"
# fortune files that are mostly English prose (not ASCII art or code)
FORTUNE_FILES = ["fortunes", "literature", "people", "wisdom", "humorists", "science", "kids", "education",
                 "food", "love", "work", "politics", "pets", "men-women", "goedel", "computers", "definitions",
                 "law", "medicine", "miscellaneous", "news", "platitudes", "riddles", "songs-poems", "sports",
                 "startrek", "zippy", "cookie", "linux", "magic", "paradoxum", "translate-me", "linuxcookie"]


class Text(HTMLParser):
    """Plain text of an HTML page, one line per block element."""

    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag in ("p", "br", "dt", "dd", "li", "h1", "h2", "h3", "pre", "div"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def fortunes() -> list:
    docs = []
    for name in FORTUNE_FILES:
        path = os.path.join(FORTUNES, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for cookie in f.read().split("\n%\n"):
                text = cookie.strip()
                if 20 <= len(text) <= 2000:
                    docs.append(text)
    return docs


def jargon() -> list:
    p = Text()
    with open(JARGON, encoding="utf-8", errors="replace") as f:
        p.feed(f.read())
    text = html.unescape("".join(p.parts))
    paras = [re.sub(r"[ \t]+", " ", x).strip() for x in re.split(r"\n\s*\n", text)]
    return [x for x in paras if len(x) >= 40]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=2048)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    docs = fortunes() + jargon()
    corpus = os.path.join(a.out, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([corpus], trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(os.path.join(HERE, "tokenizer.json"))
    n = sum(len(d) for d in docs)
    print(f"{len(docs)} documents, {n / 1e6:.2f} MB of text -> {corpus}; tokenizer vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
