"""Map class words of a prompt to the CLIP token positions the text encoder sees.

CAR reads one cross-attention map per class word, but the UNet attends to BPE tokens:
"Powerbank" is ``power`` + ``bank</w>``, "HandCuffs" is ``hand`` + ``cuffs</w>``, and
position 0 is the start token. Guessing one token per word silently reads the wrong
map, so the spans are computed from the tokenizer itself: exactly from its character
offsets when it has them (the fast, ``tokenizers``-backed CLIP tokenizer does), else by
tokenising each word alone and finding that id sequence in the prompt's ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def _word_char_span(prompt: str, word: str) -> tuple[int, int]:
    """Where ``word`` occurs, case-insensitively (CLIP lower-cases).

    A whole caption item (between ", " separators) wins over a whole word inside a longer
    name, so "Knife" in "Folding Knife, Knife" is the second item, not part of the first.
    """
    pattern = re.escape(word.lower())
    match = re.search(r"(?:^|(?<=,))\s*(" + pattern + r")\s*(?=,|$)", prompt.lower())
    if match is not None:
        return match.span(1)
    match = re.search(r"(?<![0-9a-z])" + pattern + r"(?![0-9a-z])", prompt.lower())
    if match is None:
        raise ValueError(f"word {word!r} does not occur in prompt {prompt!r}")
    return match.span()


def _spans_from_offsets(tokenizer: Any, prompt: str, words: Sequence[str]) -> list[list[int]]:
    enc = tokenizer(prompt, return_offsets_mapping=True, truncation=True,
                    max_length=tokenizer.model_max_length)
    offsets = enc["offset_mapping"]
    spans = []
    for word in words:
        start, end = _word_char_span(prompt, word)
        spans.append([i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start])
    return spans


def _spans_by_search(tokenizer: Any, prompt: str, words: Sequence[str]) -> list[list[int]]:
    ids = list(tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids)
    spans = []
    for word in words:
        # Tokenise the prompt up to the word: its token count is where the word starts,
        # so a word that also occurs inside another class name is not mistaken for it.
        start, _ = _word_char_span(prompt, word)
        offset = len(tokenizer(prompt[:start], add_special_tokens=False).input_ids) + 1
        sub = list(tokenizer(word, add_special_tokens=False).input_ids)
        if ids[offset:offset + len(sub)] != sub:  # context changed the BPE split: search
            offset = next((i for i in range(len(ids)) if ids[i:i + len(sub)] == sub), -1)
        span = list(range(offset, offset + len(sub))) if offset >= 0 else []
        spans.append([i for i in span if i < len(ids) - 1])
    return spans


def word_token_spans(tokenizer: Any, prompt: str, words: Sequence[str]) -> list[list[int]]:
    """Token indices (into the encoder sequence, start token = 0) of each word in ``prompt``.

    Repeated words get the same span (two boxes of one class share their word's map).
    A word truncated away by ``model_max_length`` gets an empty list; a word absent from
    the prompt raises ``ValueError``.

    >>> word_token_spans(tok, "Powerbank, Gun", ["Gun", "Powerbank", "Gun"])
    [[4], [1, 2], [4]]
    """
    cache: dict[str, list[int]] = {}
    unique = list(dict.fromkeys(words))
    try:
        found = _spans_from_offsets(tokenizer, prompt, unique)
    except (NotImplementedError, TypeError, KeyError):  # slow tokenizers have no offsets
        found = _spans_by_search(tokenizer, prompt, unique)
    cache.update(zip(unique, found, strict=True))
    return [list(cache[w]) for w in words]
