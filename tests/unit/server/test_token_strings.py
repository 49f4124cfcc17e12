"""Token strings, bytes and offsets spell the text exactly, for byte-level and SentencePiece tokenizers."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from cotdistill.common.token_strings import TokenStrings, offsets
from cotdistill.pipeline.tiny_models import reasoning_corpus, train_tokenizer

TEXTS = [
    "Tom has 3 apples.  Tom buys  2 more. ###",
    " leading space, café ünïcødé — 漢字 😀 end",
    "x",
    "tabs\tand\nnewlines ### --> 5 END",
]


@cache
def _tokenizer(kind: str) -> Any:
    return train_tokenizer(reasoning_corpus(60), kind, 360 if kind == "byte_bpe" else 200)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["byte_bpe", "metaspace_bpe"])
@pytest.mark.parametrize("text", TEXTS)
def test_pieces_spell_the_decoded_text_from_the_start_and_in_context(kind: str, text: str) -> None:
    tok = _tokenizer(kind)
    strings = TokenStrings(tok)
    assert strings.exact  # both decoders are handled from the vocabulary, not by re-decoding
    ids = tok(text, add_special_tokens=True)["input_ids"]
    pieces = strings.pieces(ids)
    assert "".join(p.text for p in pieces) == strings.decode(ids)
    for piece, offset in zip(pieces, offsets(pieces), strict=True):
        if piece.text:
            assert strings.decode(ids)[offset : offset + len(piece.text)] == piece.text
    # A continuation (generated tokens after a prompt) keeps every leading space.
    split = max(1, len(ids) // 2)
    cont = strings.pieces(ids[split:], ids[:split])
    assert "".join(p.text for p in cont) == strings.decode(ids)[len(strings.decode(ids[:split])) :]


def test_byte_level_pieces_of_a_multibyte_character() -> None:
    tok = _tokenizer("byte_bpe")
    strings = TokenStrings(tok)
    ids = tok("😀", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4  # a 4-byte character, one byte token each in this small vocabulary
    pieces = strings.pieces(ids)
    assert [p.token for p in pieces[:3]] == ["bytes:\\xf0", "bytes:\\x9f", "bytes:\\x98"]
    assert [p.text for p in pieces] == ["", "", "", "😀"]
    assert b"".join(p.raw for p in pieces) == "😀".encode()


def test_metaspace_leading_space_is_kept_in_context_and_dropped_at_the_start() -> None:
    tok = _tokenizer("metaspace_bpe")
    strings = TokenStrings(tok)
    ids = tok("Tom has", add_special_tokens=False)["input_ids"]
    assert [p.token for p in strings.pieces(ids)] == ["Tom", " has"]
    assert strings.standalone(ids[0]) == " Tom"  # a candidate out of context: as vLLM shows it
    assert [p.token for p in strings.pieces(ids[1:], ids[:1])] == [" has"]


def test_special_tokens_take_no_room_in_the_text() -> None:
    tok = _tokenizer("metaspace_bpe")
    strings = TokenStrings(tok)
    pieces = strings.pieces([tok.bos_token_id, *tok("Tom", add_special_tokens=False)["input_ids"]])
    assert pieces[0].token == "<s>" and pieces[0].text == ""
    assert "".join(p.text for p in pieces) == "Tom"
