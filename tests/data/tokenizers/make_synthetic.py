#!/usr/bin/env python3
"""Make the two small synthetic tokenizers of tests/unit/test_tokenizer.c and
their expected outputs, with Hugging Face `tokenizers` as the reference.

They cover the tokenizer.json components that Llama 3.1, Qwen3 and Gemma 3
do not use: NFKC/NFD, Lowercase, Prepend, Strip, Metaspace (pre-tokenizer and
decoder), Digits, every Split behaviour (and invert), ByteLevel with its own
regex and prefix space, the unknown token with fusing, byte fallback for only
some bytes, Roberta-style and template post-processing, the Strip decoder,
and added tokens with lstrip/rstrip/single_word/normalized.

    python make_synthetic.py      # rewrites synthetic-*.json and *.expected.json here

The output is deterministic for a given `tokenizers` version (0.23.3 made
the committed files).
"""

import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, hello there; the world is wide",
    "numbers 12 345 6789 and more numbers",
    "a-b-c well-known state-of-the-art",
    "café naïve résumé coöperate",
    "Hello Hello HELLO hello",
] * 20

TEXTS = [
    "",
    " ",
    "   ",
    "hello",
    "Hello world",
    "othello hello-world hello_there hello!",
    "The quick brown fox, 12345 jumps; over the-lazy dog",
    "[MASK]",
    "a [MASK] b",
    "a   [MASK]   b",
    "[MASK][MASK] x",
    "x<sep>   y",
    "<sep>",
    "ﬁx the ﬁle",
    "café € 你好 naïve",
    "😀 emoji 😀😀",
    "tabs\tand\nnew\r\nlines",
    "single singles asingle single.",
    "<|user|>hi <|user|>  there",
    "ab-cd ab-cdx xab-cd",
    "x;y ; z;;w",
    "a-b--c- -d",
    "Ⅻ ² ½ ３",
    "``quoted'' text",
    "\u00a0nbsp\u2003em\u3000ideo",
]


def metaspace_tokenizer():
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace("``", '"')]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    # byte fallback for only the bytes of "é" and "€": other unknown
    # characters become (fused) <unk>
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    for b in [0xC3, 0xA9, 0xE2, 0x82, 0xAC]:
        vocab[f"<0x{b:02X}>"] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(state))
    tok.add_special_tokens(
        [
            AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False, special=True),
            AddedToken("<sep>", rstrip=True, normalized=False, special=True),
        ]
    )
    tok.add_tokens(
        [
            AddedToken("hello", single_word=True, normalized=True),
            AddedToken("ﬁx", normalized=True),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Metaspace(replacement="\u2581", prepend_scheme="first"),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    return tok


def bytelevel_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Strip(left=False, right=True),
                                           normalizers.Prepend("^")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(";", behavior="removed"),
            pre_tokenizers.Split("-", behavior="merged_with_next"),
            pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="contiguous", invert=True),
            pre_tokenizers.Split(",", behavior="merged_with_previous"),
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens([AddedToken("<|user|>", lstrip=True, normalized=False, special=True)])
    tok.add_tokens(
        [
            AddedToken("ab-cd", normalized=False),
            AddedToken("single", single_word=True, normalized=False),
        ]
    )
    tok.post_processor = processors.Sequence(
        [processors.ByteLevel(trim_offsets=True), processors.RobertaProcessing(("</s>", 2), ("<s>", 0))]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def main():
    for name, make in [("synthetic-metaspace", metaspace_tokenizer), ("synthetic-bytelevel", bytelevel_tokenizer)]:
        tok = make()
        path = os.path.join(HERE, name + ".json")
        tok.save(path)
        tok = Tokenizer.from_file(path)  # expectations from the file as saved
        cases = []
        for text in TEXTS:
            ids = tok.encode(text).ids
            cases.append(
                {
                    "text": text,
                    "ids": ids,
                    "ids_plain": tok.encode(text, add_special_tokens=False).ids,
                    "decoded": tok.decode(ids),
                    "decoded_keep": tok.decode(ids, skip_special_tokens=False),
                }
            )
        with open(os.path.join(HERE, name + ".expected.json"), "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")
        print(f"{name}: {len(cases)} cases, vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
