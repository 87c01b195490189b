"""Class word → CLIP token span mapping (multi-token names, repeated classes)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.data.contract import caption_for
from xsyn.generator import tokens
from xsyn.generator.tokens import word_token_spans

PIDRAY = ["Baton", "Pliers", "Hammer", "Powerbank", "Scissors", "Wrench", "Gun", "Bullet",
          "Sprayer", "HandCuffs", "Knife", "Lighter"]


def build_clip_tokenizer(folder: Path):
    """The real CLIP BPE tokenizer from the vocabulary open-clip-torch ships (offline)."""
    import open_clip.tokenizer as oct
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Path(oct.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    base = list(oct.bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_clip_tokenizer(tmp_path_factory.mktemp("clip"))


def _text(tok, prompt, span):
    ids = tok(prompt).input_ids
    return "".join(tok.convert_ids_to_tokens([ids[i] for i in span])).replace("</w>", "")


def test_multi_token_and_repeated(tok):
    prompt = caption_for(["Powerbank", "Gun", "HandCuffs", "Gun"])
    assert prompt == "Powerbank, Gun, HandCuffs"
    spans = word_token_spans(tok, prompt, ["Gun", "Powerbank", "HandCuffs", "Gun"])
    assert spans[1] == [1, 2]            # start token is 0; power + bank</w>
    assert spans[0] == spans[3] == [4]   # repeated class shares its word's span
    assert spans[2] == [6, 7]            # hand + cuffs</w>
    assert _text(tok, prompt, spans[2]) == "handcuffs"


def test_word_inside_other_name_is_not_confused(tok):
    prompt = "Folding Knife, Knife"
    span_fk, span_k = word_token_spans(tok, prompt, ["Folding Knife", "Knife"])
    assert _text(tok, prompt, span_fk) == "foldingknife"
    assert span_k == [len(tok(prompt).input_ids) - 2]  # the item "Knife", not the word inside


def test_missing_word_raises(tok):
    with pytest.raises(ValueError, match="Wrench"):
        word_token_spans(tok, "Gun, Knife", ["Wrench"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(PIDRAY), min_size=1, max_size=8), st.booleans())
def test_spans_spell_the_word(tok, classes, slow_path):
    prompt = caption_for(classes)
    if slow_path:
        spans = tokens._spans_by_search(tok, prompt, classes)
    else:
        spans = word_token_spans(tok, prompt, classes)
    assert spans == word_token_spans(tok, prompt, classes)  # both strategies agree
    for word, span in zip(classes, spans, strict=True):
        assert span and span == list(range(span[0], span[-1] + 1))
        assert _text(tok, prompt, span) == word.lower()
