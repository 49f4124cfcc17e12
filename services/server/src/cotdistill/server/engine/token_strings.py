"""Token strings for logprobs: each token as it appears in the text, its bytes, its offset.

OpenAI's logprobs list each token's string so that the strings, joined, are the text and
``text_offset`` points into it. ``tokenizer.decode([id])`` does not give that: a SentencePiece
(Metaspace) tokenizer drops the leading space of ``▁The`` ("The" for " The"), and a byte-level
token that holds half of a multi-byte character decodes to U+FFFD. So strings come from the
token's own bytes (the vocabulary piece through the tokenizer's byte map), decoded incrementally
as UTF-8, exactly as the text is decoded:

* a token's ``text`` is what it adds to the text: joined they equal the decoded text;
* a token that only holds part of a character adds nothing yet; its logprob string is OpenAI's
  ``bytes:\\xe2\\x80`` form and the token that completes the character carries it;
* special tokens the decoder skips (BOS) add nothing; their string is their literal (``<s>``).

Tokenizers whose decoder is not byte-exact from the vocabulary (WordPiece, custom) fall back to
decoding growing prefixes, which is slower but agrees with ``decode`` by construction.
"""

from __future__ import annotations

import codecs
import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_REPLACEMENT = "\ufffd"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what byte-level BPE vocabularies are written in)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}


def bytes_label(raw: bytes) -> str:
    """OpenAI's string for a token that is not whole UTF-8 characters: ``bytes:\\xe2\\x80``."""
    return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


@dataclass(frozen=True)
class TokenPiece:
    """One token of a text.

    Attributes:
        text: what the token adds to the decoded text ("" for a skipped special token or a
            token holding only part of a character).
        token: the string logprobs show: ``text``, or ``bytes:\\x..`` for a partial character,
            or the literal of a special token.
        raw: the token's own bytes (for chat logprobs' ``bytes``).
    """

    text: str
    token: str
    raw: bytes


@dataclass(frozen=True)
class _Decoder:
    """What the tokenizer's decoder does, when it is byte-exact from vocabulary pieces."""

    byte_level: bool  # GPT-2 style: pieces are bytes written through BYTE_DECODER's alphabet
    marker: str | None  # SentencePiece style: this character stands for a space
    byte_fallback: bool  # <0xNN> pieces are raw bytes
    strip_first_space: bool  # the decoder drops the leading space of the first token


def _describe_decoder(tokenizer: Any) -> _Decoder | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        spec = json.loads(backend.to_str()).get("decoder") or {}
    except Exception:  # a tokenizer that cannot serialize itself: use the generic path
        return None
    steps = spec.get("decoders", []) if spec.get("type") == "Sequence" else [spec]
    byte_level = marker = None
    byte_fallback = strip = False
    for step in steps:
        kind = step.get("type")
        if kind == "ByteLevel":
            byte_level = True
        elif kind == "Metaspace":
            marker = step.get("replacement", "▁")
            strip = strip or step.get("prepend_scheme", "always") in ("first", "always")
        elif kind == "Replace":
            pattern = (step.get("pattern") or {}).get("String")
            if step.get("content") != " " or not pattern:
                return None
            marker = pattern
        elif kind == "ByteFallback":
            byte_fallback = True
        elif kind == "Fuse":
            pass
        elif kind == "Strip":
            if step.get("content") != " " or step.get("stop", 0) or step.get("start", 0) > 1:
                return None
            strip = strip or step.get("start", 0) == 1
        else:
            return None
    if byte_level and (marker or byte_fallback):
        return None
    if not byte_level and marker is None:
        return None
    return _Decoder(bool(byte_level), marker, byte_fallback, strip)


class TokenStrings:
    """Token strings and bytes for one tokenizer (build once per engine; cheap per token)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._decoder = _describe_decoder(tokenizer)
        self._special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._raw: dict[int, bytes] = {}

    @property
    def exact(self) -> bool:
        """Whether token bytes come from the vocabulary (else from decoding prefixes)."""
        return self._decoder is not None

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special

    def raw_bytes(self, token_id: int) -> bytes:
        """The bytes this token stands for (a special token: its literal)."""
        cached = self._raw.get(token_id)
        if cached is not None:
            return cached
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        piece = "" if piece is None else str(piece)
        dec = self._decoder
        if token_id in self._special or dec is None:
            raw = (piece if token_id in self._special else str(self.tokenizer.decode([token_id]))).encode()
        elif dec.byte_level and all(c in BYTE_DECODER for c in piece):
            raw = bytes(BYTE_DECODER[c] for c in piece)
        elif dec.byte_fallback and (m := _BYTE_PIECE.match(piece)):
            raw = bytes([int(m.group(1), 16)])
        else:
            raw = (piece.replace(dec.marker, " ") if dec.marker else piece).encode()
        self._raw[token_id] = raw
        return raw

    def standalone(self, token_id: int) -> str:
        """The token's string out of context (top-logprob candidates): leading space kept."""
        raw = self.raw_bytes(token_id)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return bytes_label(raw)

    def tracker(self, context_ids: Sequence[int] = ()) -> PieceTracker:
        """Pieces of tokens that follow ``context_ids`` (empty: the start of a text)."""
        return PieceTracker(self, context_ids)

    def pieces(self, ids: Sequence[int], context_ids: Sequence[int] = ()) -> list[TokenPiece]:
        tracker = self.tracker(context_ids)
        return [tracker.add(t) for t in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` as the server decodes completions (special tokens skipped, no clean-up)."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))


class PieceTracker:
    """Turns a stream of token ids into :class:`TokenPiece` (streaming and whole responses alike)."""

    def __init__(self, strings: TokenStrings, context_ids: Sequence[int]) -> None:
        self._s = strings
        dec = strings._decoder
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        # At the start of a text a SentencePiece decoder drops the first token's leading space.
        self._strip_next = (
            dec is not None and dec.strip_first_space and not any(not strings.is_special(t) for t in context_ids)
        )
        # Generic path: decode growing prefixes after the context.
        self._context = list(context_ids)[-4:]
        self._ids: list[int] = []
        self._base = strings.decode(self._context) if self._context and dec is None else ""
        self._emitted = 0

    def add(self, token_id: int) -> TokenPiece:
        s = self._s
        if s.is_special(token_id):
            literal = s.raw_bytes(token_id)
            return TokenPiece("", literal.decode("utf-8", "replace"), literal)
        if s.exact:
            return self._add_exact(token_id)
        return self._add_generic(token_id)

    def _add_exact(self, token_id: int) -> TokenPiece:
        raw = self._s.raw_bytes(token_id)
        data = raw
        if self._strip_next:
            self._strip_next = False
            if data.startswith(b" "):
                data = data[1:]
        text = self._utf8.decode(data)
        if text:
            return TokenPiece(text, text, raw)
        return TokenPiece("", self._s.standalone(token_id), raw)

    def _add_generic(self, token_id: int) -> TokenPiece:
        self._ids.append(token_id)
        full = self._s.decode(self._context + self._ids)
        full = full[len(self._base) :] if full.startswith(self._base) else self._s.decode(self._ids)
        safe = len(full)
        while safe > self._emitted and full[safe - 1] == _REPLACEMENT:
            safe -= 1  # a character still being assembled
        text = full[self._emitted : safe] if safe > self._emitted else ""
        self._emitted = max(self._emitted, safe)
        raw = text.encode() if text else self._s.raw_bytes(token_id)
        return TokenPiece(text, text if text else bytes_label(raw), raw)


_CACHE: weakref.WeakKeyDictionary[Any, TokenStrings] = weakref.WeakKeyDictionary()


def token_strings(tokenizer: Any) -> TokenStrings:
    """The (cached) :class:`TokenStrings` of a tokenizer."""
    try:
        found = _CACHE.get(tokenizer)
    except TypeError:  # not weak-referenceable: build one each time
        return TokenStrings(tokenizer)
    if found is None:
        found = TokenStrings(tokenizer)
        _CACHE[tokenizer] = found
    return found


def offsets(pieces: Sequence[TokenPiece], start: int = 0) -> list[int]:
    """``text_offset`` of each piece: where its text starts in the whole text."""
    out = []
    for piece in pieces:
        out.append(start)
        start += len(piece.text)
    return out
