"""The tokenizer of an LLM fixture, for the GPU checks that export
random-weight models (any real tokenizer serves them: their inputs are
random ids).  Run from the repository root."""
import json
import zipfile


def fixture_tokenizer(name, path):
    """Write tests/fixtures/llm/NAME.pt2's tokenizer.json to path; return
    its largest token id (vocabulary and added tokens)."""
    with zipfile.ZipFile(f"tests/fixtures/llm/{name}.pt2") as z:
        member = next(n for n in z.namelist() if n.endswith("extra/tokenizer.json"))
        open(path, "wb").write(z.read(member))
    t = json.load(open(path))
    return max(list(t["model"]["vocab"].values()) + [a["id"] for a in t["added_tokens"]])
