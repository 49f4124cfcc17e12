"""Cross-tokenizer alignment: carry the teacher's top-k onto the student's tokens.

The teacher generated a rationale as teacher tokens, each with its top-k candidates. The student
sees the same text cut into *its* tokens. Following Fu et al. (2023), the two token sequences
are aligned by dynamic time warping whose local cost is the edit distance between token
strings; then, for each student token:

* matched with a teacher token whose string is identical and that covers the same stretch of
  text: the target is that teacher position's top-k, with each candidate mapped into the student
  vocabulary by its string (candidates the student vocabulary lacks are dropped);
* otherwise: a one-hot target on the student's own token.

"Matched" (:func:`match_tokens`) starts from Fu et al.'s rule, the DTW path's one-to-one pairs of
identical strings (the anchors), and fixes its two failures on real tokenizers:

* DTW lets a token pair with several neighbours at equal cost (``"."`` also takes the following
  ``" "``), which breaks one-to-one where both tokenizers cut the text the same way: such tokens
  were lost (Qwen2.5 -> SmolLM2 kept 77.5% of student tokens on real rationales);
* DTW is blind to position among repeated strings (``" 0 0"``, ``"0.8333"``): an anchor can pair
  a teacher ``"3"`` with a student ``"3"`` further on, a KD target from the wrong place.

So each anchor only seeds a *block*: the longest stretch of text both sides spell byte for byte
at that anchor's offset shift; as in difflib's matching blocks, the longest non-conflicting
blocks win, and inside them a student token takes the teacher token that covers exactly the same
bytes. Over one text this is exact (every student token cut like a teacher token matches, no
other does: a property test); on real rationales it matches 100% of such tokens (81.6% of
Qwen2.5 -> SmolLM2 student tokens; the rest are the format's own tokens or cut differently).

Tokens are compared as **bytes** (byte-level ``Ġ`` and Metaspace ``▁`` both become a space; byte
fallback ``<0xNN>`` becomes the byte), so a character split across byte-level tokens still
aligns. In the vocabulary map an ordinary piece always wins over the byte-fallback piece with the
same bytes: SentencePiece students with byte fallback (Llama-2, Mistral, Gemma) emit ``"5"``, not
``<0x35>``, and only bytes no ordinary piece spells (a lone UTF-8 lead byte) map to ``<0xNN>``.
With identical tokenizers (same content hash) and identical token ids the alignment is the
identity and the DP is skipped.

:func:`align_reference` is the straightforward pure-Python DP; :func:`align` is the compiled
(numba) one; tests prove them identical, including tie-breaking (diagonal, then up, then left).
Everything here is plain numpy + numba (no torch), so the trainer, the ``cotdistill align``
command and the benchmarks share one implementation.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numba
import numpy as np

from cotdistill.common.lm import tokenizer_content_hash

ABSENT = -np.inf  # logprob of a candidate the student vocabulary lacks / of one-hot's other slots


# ---- token strings ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable stand-in character -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _decoder_kinds(tokenizer: Any) -> set[str]:
    """Names of the backend decoder components (ByteLevel, Metaspace, ByteFallback, ...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return set()
    names = {type(decoder).__name__}
    text = repr(decoder)
    for name in ("ByteLevel", "Metaspace", "ByteFallback", "Replace", "WordPiece"):
        if name in text:
            names.add(name)
    return names


_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def is_byte_fallback(piece: str | None) -> bool:
    """A SentencePiece byte-fallback piece ``<0xNN>`` (one raw byte, not a character)."""
    return piece is not None and _BYTE_PIECE.fullmatch(piece) is not None


def piece_bytes(tokenizer: Any, pieces: Sequence[str | None]) -> list[bytes]:
    """Surface bytes of token pieces (from ``convert_ids_to_tokens``) for comparison.

    Byte-level pieces map back through GPT-2's byte table; ``▁`` becomes a space; ``<0xNN>``
    byte-fallback pieces become their byte; anything else is its UTF-8.
    """
    kinds = _decoder_kinds(tokenizer)
    byte_level = "ByteLevel" in kinds
    table = _byte_decoder()
    out: list[bytes] = []
    for piece in pieces:
        if piece is None:
            out.append(b"")
        elif byte_level and all(ch in table for ch in piece):
            out.append(bytes(table[ch] for ch in piece))
        elif is_byte_fallback(piece):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("▁", " ").encode("utf-8"))
    return out


def token_bytes(tokenizer: Any, ids: Sequence[int] | np.ndarray) -> list[bytes]:
    """Surface bytes of each token id (ids outside the tokenizer give b"")."""
    n = len(tokenizer)
    ids_list = [int(i) for i in ids]
    pieces = tokenizer.convert_ids_to_tokens([i if 0 <= i < n else 0 for i in ids_list])
    out = piece_bytes(tokenizer, pieces)
    return [b if 0 <= i < n else b"" for b, i in zip(out, ids_list, strict=True)]


def text_tokens(tokenizer: Any, text: str) -> tuple[np.ndarray, list[bytes]]:
    """Token ids (int64) of ``text`` (no special tokens) and each token's surface bytes.

    A Metaspace tokenizer that prepends ``▁`` to the first word (SentencePiece's dummy prefix:
    Llama-2, Mistral, T5) spells ``"Tom"`` as ``"▁Tom"``; that space is not in the text, so it is
    taken off the first token here and the bytes concatenate back to ``text.encode()`` whenever
    the tokenizer itself is lossless on the text.
    """
    ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    spelled = token_bytes(tokenizer, ids)
    raw = text.encode("utf-8")
    if spelled and spelled[0].startswith(b" ") and b"".join(spelled) == b" " + raw:
        spelled[0] = spelled[0][1:]
    return ids, spelled


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers tokenize identically (sizes first: hashing a large one takes seconds)."""
    return a is b or (len(a) == len(b) and tokenizer_content_hash(a) == tokenizer_content_hash(b))


def vocabulary_map(
    teacher: Any, student: Any, student_vocab_size: int, teacher_vocab_size: int | None = None
) -> np.ndarray:
    """For each teacher id, the student id with the same surface bytes, or -1.

    Returns int64 (V_teacher,), V_teacher = max(len(teacher), teacher_vocab_size) so padded
    embedding rows (ids the tokenizer never produces) map to -1. Student ids at or above
    ``student_vocab_size`` (the student's embedding rows) are never produced.

    Where several student pieces spell the same bytes, the ordinary piece wins over the
    byte-fallback one (Gemma has both ``"5"`` and ``<0x35>`` and only ever emits ``"5"``; mapping
    the teacher's ``"5"`` onto ``<0x35>`` trained the student towards a token it never reads,
    KD loss 8.9 against 2.3 for SFT), then the lowest id (the base token over added duplicates).
    """
    size = max(len(teacher), teacher_vocab_size or 0)
    if same_tokenizer(teacher, student):
        mapping = np.arange(size, dtype=np.int64)
        mapping[min(len(teacher), student_vocab_size) :] = -1
        return mapping
    pieces, spelled = vocabulary_bytes(student)
    by_bytes: dict[bytes, int] = {}
    fallback: dict[bytes, int] = {}
    for sid in range(min(len(student), student_vocab_size)):
        (fallback if is_byte_fallback(pieces[sid]) else by_bytes).setdefault(spelled[sid], sid)
    for b, sid in fallback.items():
        by_bytes.setdefault(b, sid)  # only bytes no ordinary piece spells (a lone UTF-8 byte)
    mapping = np.full(size, -1, dtype=np.int64)
    for tid, b in enumerate(vocabulary_bytes(teacher)[1]):
        if b:
            mapping[tid] = by_bytes.get(b, -1)
    return mapping


def vocabulary_bytes(tokenizer: Any) -> tuple[list[str], list[bytes]]:
    """Pieces and surface bytes of every id of a tokenizer (cached per tokenizer object)."""
    try:
        return _VOCAB_BYTES[tokenizer]
    except (KeyError, TypeError):
        pass
    ids = list(range(len(tokenizer)))
    pieces = [p if p is not None else "" for p in tokenizer.convert_ids_to_tokens(ids)]
    found = (pieces, piece_bytes(tokenizer, pieces))
    with contextlib.suppress(TypeError):
        _VOCAB_BYTES[tokenizer] = found
    return found


_VOCAB_BYTES: weakref.WeakKeyDictionary[Any, tuple[list[str], list[bytes]]] = weakref.WeakKeyDictionary()


# ---- the alignment DP ---------------------------------------------------------------------


def edit_distance_reference(a: bytes, b: bytes) -> int:
    """Levenshtein distance (unit insert/delete/substitute), the textbook DP."""
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[len(b)]


def align_reference(teacher: Sequence[bytes], student: Sequence[bytes]) -> list[tuple[int, int]]:
    """DTW alignment path of two token-string sequences; the straightforward pure-Python DP.

    ``D[i][j] = ed(t_i, s_j) + min(D[i-1][j-1], D[i-1][j], D[i][j-1])``; the path runs from (0, 0)
    to (n-1, m-1); ties prefer the diagonal, then up (i-1), then left (j-1).
    Returns the (teacher index, student index) pairs of the path, in order.
    """
    n, m = len(teacher), len(student)
    if n == 0 or m == 0:
        return []
    inf = float("inf")
    d = [[inf] * (m + 1) for _ in range(n + 1)]
    d[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = edit_distance_reference(teacher[i - 1], student[j - 1])
            d[i][j] = cost + min(d[i - 1][j - 1], d[i - 1][j], d[i][j - 1])
    path = []
    i, j = n, m
    while True:
        path.append((i - 1, j - 1))
        if i == 1 and j == 1:
            break
        diag, up, left = d[i - 1][j - 1], d[i - 1][j], d[i][j - 1]
        best = min(diag, up, left)
        if diag == best:
            i, j = i - 1, j - 1
        elif up == best:
            i -= 1
        else:
            j -= 1
    path.reverse()
    return path


def _pack(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated bytes (uint8) and offsets (int64, len+1) of byte strings."""
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    if strings:
        np.cumsum([len(s) for s in strings], out=offsets[1:])
    flat = np.frombuffer(b"".join(strings), dtype=np.uint8) if strings else np.zeros(0, np.uint8)
    return flat, offsets


@numba.njit(cache=True, nogil=True)
def _edit_distance(
    a: np.ndarray, a0: int, a1: int, b: np.ndarray, b0: int, b1: int, row: np.ndarray
) -> int:  # pragma: no cover - compiled
    lb = b1 - b0
    for j in range(lb + 1):
        row[j] = j
    for i in range(1, a1 - a0 + 1):
        diag = row[0]
        row[0] = i
        ai = a[a0 + i - 1]
        for j in range(1, lb + 1):
            up = row[j]
            sub = diag + (1 if ai != b[b0 + j - 1] else 0)
            best = up + 1
            if row[j - 1] + 1 < best:
                best = row[j - 1] + 1
            if sub < best:
                best = sub
            row[j] = best
            diag = up
    return row[lb]


@numba.njit(cache=True, nogil=True)
def _costs(ua: np.ndarray, uo: np.ndarray, va: np.ndarray, vo: np.ndarray) -> np.ndarray:  # pragma: no cover
    """(U, V) float64 edit distances between every distinct teacher and student string."""
    longest = 1
    for j in range(vo.shape[0] - 1):
        if vo[j + 1] - vo[j] + 1 > longest:
            longest = vo[j + 1] - vo[j] + 1
    row = np.empty(longest, dtype=np.int64)
    cost = np.empty((uo.shape[0] - 1, vo.shape[0] - 1), dtype=np.float64)
    for u in range(uo.shape[0] - 1):
        for v in range(vo.shape[0] - 1):
            cost[u, v] = _edit_distance(ua, uo[u], uo[u + 1], va, vo[v], vo[v + 1], row)
    return cost


@numba.njit(cache=True, nogil=True)
def _dtw(t_kind: np.ndarray, s_kind: np.ndarray, cost: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """DTW path over token kinds (index of each token's string in ``cost``'s rows / columns)."""
    n = t_kind.shape[0]
    m = s_kind.shape[0]
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        row_cost = cost[t_kind[i - 1]]
        for j in range(1, m + 1):
            best = d[i - 1, j - 1]
            if d[i - 1, j] < best:
                best = d[i - 1, j]
            if d[i, j - 1] < best:
                best = d[i, j - 1]
            d[i, j] = row_cost[s_kind[j - 1]] + best
    path = np.empty((n + m, 2), dtype=np.int64)
    k = 0
    i, j = n, m
    while True:
        path[k, 0] = i - 1
        path[k, 1] = j - 1
        k += 1
        if i == 1 and j == 1:
            break
        diag, up, left = d[i - 1, j - 1], d[i - 1, j], d[i, j - 1]
        best = min(diag, min(up, left))
        if diag == best:
            i -= 1
            j -= 1
        elif up == best:
            i -= 1
        else:
            j -= 1
    return path[:k][::-1].copy()


def _kinds(strings: Sequence[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """Index of each string among the distinct ones (first-seen order), and the distinct strings."""
    index: dict[bytes, int] = {}
    kinds = np.fromiter((index.setdefault(x, len(index)) for x in strings), dtype=np.int64, count=len(strings))
    return kinds, list(index)


def _dtw_path(teacher: Sequence[bytes], student: Sequence[bytes]) -> np.ndarray:
    """The DTW path (P, 2); edit distances are computed once per pair of *distinct* strings
    (tokens repeat: on GSM8K rationales ~23% of the token pairs are distinct, ~3x faster)."""
    t_kind, t_strings = _kinds(teacher)
    s_kind, s_strings = _kinds(student)
    return np.asarray(_dtw(t_kind, s_kind, _costs(*_pack(t_strings), *_pack(s_strings))))


def align(teacher: Sequence[bytes], student: Sequence[bytes]) -> list[tuple[int, int]]:
    """Same result as :func:`align_reference`, compiled: (teacher index, student index) pairs."""
    return [(int(i), int(j)) for i, j in align_array(teacher, student)]


def align_array(teacher: Sequence[bytes], student: Sequence[bytes]) -> np.ndarray:
    """The DTW path as an int64 array (P, 2) of (teacher index, student index)."""
    if not teacher or not student:
        return np.zeros((0, 2), dtype=np.int64)
    return _dtw_path(teacher, student)


def one_to_one(path: np.ndarray, n_teacher: int, n_student: int) -> np.ndarray:
    """For each student token, the teacher index it is aligned with one-to-one, else -1.

    path: (P, 2) alignment pairs. Returns int64 (n_student,).
    """
    out = np.full(n_student, -1, dtype=np.int64)
    if len(path) == 0:
        return out
    t_count = np.bincount(path[:, 0], minlength=n_teacher)
    s_count = np.bincount(path[:, 1], minlength=n_student)
    single = (t_count[path[:, 0]] == 1) & (s_count[path[:, 1]] == 1)
    out[path[single, 1]] = path[single, 0]
    return out


@numba.njit(cache=True, nogil=True)
def _anchors(
    path: np.ndarray, ta: np.ndarray, to: np.ndarray, sa: np.ndarray, so: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """(S,) teacher index of each student token aligned one-to-one with an identical string, else -1."""
    n = to.shape[0] - 1
    m = so.shape[0] - 1
    t_count = np.zeros(n, dtype=np.int64)
    s_count = np.zeros(m, dtype=np.int64)
    for p in range(path.shape[0]):
        t_count[path[p, 0]] += 1
        s_count[path[p, 1]] += 1
    out = np.full(m, -1, dtype=np.int64)
    for p in range(path.shape[0]):
        i = path[p, 0]
        j = path[p, 1]
        if t_count[i] != 1 or s_count[j] != 1:
            continue
        length = so[j + 1] - so[j]
        if to[i + 1] - to[i] != length:
            continue
        same = True
        for b in range(length):
            if ta[to[i] + b] != sa[so[j] + b]:
                same = False
                break
        if same:
            out[j] = i
    return out


@numba.njit(cache=True, nogil=True)
def _token_at(to: np.ndarray, start: int, end: int) -> int:  # pragma: no cover - compiled
    """Index of the teacher token spanning exactly bytes [start, end), else -1 (empty tokens skipped)."""
    n = to.shape[0] - 1
    i = int(np.searchsorted(to, start))
    while i < n and to[i] == start and to[i + 1] == start:
        i += 1
    if i < n and to[i] == start and to[i + 1] == end:
        return i
    return -1


@numba.njit(cache=True, nogil=True)
def _conflict(a0: int, a1: int, ad: int, b0: int, b1: int, bd: int) -> bool:  # pragma: no cover - compiled
    """Whether blocks [a0, a1) and [b0, b1) of student bytes (at shifts ad, bd into the teacher's)
    overlap in the student's text, overlap in the teacher's, or come in another order."""
    if a0 < b1 and b0 < a1:
        return True
    if a0 + ad < b1 + bd and b0 + bd < a1 + ad:
        return True
    return (a0 < b0) != (a0 + ad < b0 + bd)


@numba.njit(cache=True, nogil=True)
def _span_matches(
    anchors: np.ndarray, ta: np.ndarray, to: np.ndarray, sa: np.ndarray, so: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """(S,) teacher index of each student token with the same bytes over the same stretch of text.

    1. Seeds: each anchor (a one-to-one identical DTW pair) says "student byte x is teacher byte
       x + d"; so do the start of both texts (d = 0) and their ends (d = len(T) - len(S)) when
       their first / last bytes agree.
    2. Each seed grows into a block: the longest run of bytes identical under its shift d.
    3. Longest blocks first, a block is kept unless it overlaps a kept one in either text or
       crosses it (order must agree), as difflib's matching blocks. A stray anchor (DTW pairs
       repeated strings blind to position) only seeds a short block that loses to the right one.
    4. Inside kept blocks, a student token takes the teacher token spanning exactly its bytes + d.
    """
    n = to.shape[0] - 1
    m = so.shape[0] - 1
    lt = to[n]
    ls = so[m]
    seeds = np.nonzero(anchors >= 0)[0]
    k = seeds.shape[0]
    seed_s = np.empty(k + 2, dtype=np.int64)
    seed_d = np.empty(k + 2, dtype=np.int64)
    count = 0
    for a in range(k):
        j = seeds[a]
        if so[j + 1] > so[j]:
            seed_s[count] = so[j]
            seed_d[count] = to[anchors[j]] - so[j]
            count += 1
    if lt > 0 and ls > 0 and ta[0] == sa[0]:
        seed_s[count] = 0
        seed_d[count] = 0
        count += 1
    if lt > 0 and ls > 0 and ta[lt - 1] == sa[ls - 1]:
        seed_s[count] = ls - 1
        seed_d[count] = lt - ls
        count += 1
    # Grow each seed; seeds already inside the last block of the same shift add nothing.
    order = np.argsort((seed_d[:count] + ls) * (ls + 1) + seed_s[:count])
    block_a = np.empty(count, dtype=np.int64)
    block_b = np.empty(count, dtype=np.int64)
    block_d = np.empty(count, dtype=np.int64)
    nb = 0
    last_d = lt + ls + 1
    last_end = -1
    for o in range(count):
        x = seed_s[order[o]]
        d = seed_d[order[o]]
        if d == last_d and x < last_end:
            continue
        lo = x
        while lo > 0 and lo - 1 + d >= 0 and ta[lo - 1 + d] == sa[lo - 1]:
            lo -= 1
        hi = x
        while hi < ls and hi + d < lt and hi + d >= 0 and ta[hi + d] == sa[hi]:
            hi += 1
        if hi > lo:
            block_a[nb] = lo
            block_b[nb] = hi
            block_d[nb] = d
            nb += 1
        last_d = d
        last_end = hi
    # Keep the longest blocks that neither overlap nor cross the ones kept before them.
    by_length = np.argsort(-(block_b[:nb] - block_a[:nb]), kind="mergesort")
    kept = np.zeros(nb, dtype=np.bool_)
    for o in range(nb):
        b = by_length[o]
        ok = True
        for c in range(nb):
            if kept[c] and _conflict(block_a[b], block_b[b], block_d[b], block_a[c], block_b[c], block_d[c]):
                ok = False
                break
        kept[b] = ok
    match = np.full(m, -1, dtype=np.int64)
    for b in range(nb):
        if not kept[b]:
            continue
        j = np.searchsorted(so, block_a[b])
        while j < m and so[j + 1] <= block_b[b]:
            if so[j + 1] > so[j] and so[j] >= block_a[b]:
                match[j] = _token_at(to, so[j] + block_d[b], so[j + 1] + block_d[b])
            j += 1
    return match


@dataclass(frozen=True)
class TokenAlignment:
    """How a student token sequence lines up with a teacher token sequence.

    ``path``: (P, 2) int64 DTW pairs (teacher index, student index). ``one_to_one``: (S,) the
    teacher index each student token is aligned one-to-one with in the path (any strings), else
    -1. ``anchors``: (S,) the same for identical strings only (Fu et al.'s rule). ``match``: (S,)
    the teacher index whose top-k the student token takes (the anchors plus the tokens recovered
    by span), else -1.
    """

    path: np.ndarray
    one_to_one: np.ndarray
    anchors: np.ndarray
    match: np.ndarray

    @property
    def coverage(self) -> float:
        """Fraction of student tokens that take a teacher distribution."""
        return float((self.match >= 0).mean()) if len(self.match) else 0.0

    @property
    def one_to_one_fraction(self) -> float:
        """Fraction of student tokens aligned one-to-one (whatever their strings) in the DTW path."""
        return float((self.one_to_one >= 0).mean()) if len(self.one_to_one) else 0.0


def align_tokens(teacher: Sequence[bytes], student: Sequence[bytes]) -> TokenAlignment:
    """DTW path, one-to-one pairs and KD matches of two token-string sequences."""
    m = len(student)
    if not teacher or not student:
        empty = np.full(m, -1, dtype=np.int64)
        return TokenAlignment(np.zeros((0, 2), dtype=np.int64), empty, empty.copy(), empty.copy())
    ta, to = _pack(teacher)
    sa, so = _pack(student)
    path = _dtw_path(teacher, student)
    anchors = _anchors(path, ta, to, sa, so)
    match = _span_matches(anchors, ta, to, sa, so)
    return TokenAlignment(path, one_to_one(path, len(teacher), m), anchors, match)


def match_tokens(teacher: Sequence[bytes], student: Sequence[bytes]) -> np.ndarray:
    """(S,) int64: for each student token the teacher index whose top-k it takes, else -1."""
    return align_tokens(teacher, student).match


# ---- KD targets ---------------------------------------------------------------------------


@dataclass
class TeacherTokens:
    """One teacher sample's generated tokens: ids (T,), top-k ids (T, k), top-k logprobs (T, k)."""

    ids: np.ndarray
    top_ids: np.ndarray
    top_logprobs: np.ndarray


class Aligner:
    """Maps teacher top-k onto student tokens for one (teacher tokenizer, student tokenizer) pair."""

    def __init__(
        self,
        teacher_tokenizer: Any,
        student_tokenizer: Any,
        student_vocab_size: int,
        teacher_vocab_size: int | None = None,
    ) -> None:
        self.teacher = teacher_tokenizer
        self.student = student_tokenizer
        self.same = same_tokenizer(teacher_tokenizer, student_tokenizer)
        self.vocab = vocabulary_map(teacher_tokenizer, student_tokenizer, student_vocab_size, teacher_vocab_size)
        self.student_vocab_size = student_vocab_size
        self._student_bytes: dict[int, bytes] = {}
        self._teacher_bytes: dict[int, bytes] = {}

    def _bytes(self, tokenizer: Any, cache: dict[int, bytes], ids: np.ndarray) -> list[bytes]:
        missing = [int(i) for i in set(ids.tolist()) if int(i) not in cache]
        if missing:
            cache.update(zip(missing, token_bytes(tokenizer, missing), strict=True))
        return [cache[int(i)] for i in ids]

    def map_candidates(self, top_ids: np.ndarray, top_logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Teacher candidates (T, k) -> student ids (T, k) int64 and logprobs float32 (-inf if absent)."""
        inside = (top_ids >= 0) & (top_ids < len(self.vocab))
        mapped = np.where(inside, self.vocab[np.clip(top_ids, 0, len(self.vocab) - 1)], -1)
        present = mapped >= 0
        return np.where(present, mapped, 0).astype(np.int64), np.where(present, top_logprobs, ABSENT).astype(np.float32)

    def targets(
        self, student_ids: np.ndarray, teacher: TeacherTokens, *, one_hot_unmatched: bool = True
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """KD targets for a student token sequence that spells (about) the teacher's text.

        student_ids: (S,) the student's tokens. Returns ``(ids (S, k) int64, logprobs (S, k)
        float32, n_matched)``: matched tokens carry the mapped teacher top-k, the others a
        one-hot on their own id (logprob 0 in slot 0, -inf elsewhere), or, with
        ``one_hot_unmatched=False``, no candidate at all (all -inf: no loss there; on-policy
        training must not push the student towards its own unscored tokens).
        """
        k = teacher.top_ids.shape[1]
        s = len(student_ids)
        ids = np.zeros((s, k), dtype=np.int64)
        lps = np.full((s, k), ABSENT, dtype=np.float32)
        if one_hot_unmatched:
            ids[:, 0] = student_ids
            lps[:, 0] = 0.0
        if k == 0 or s == 0 or len(teacher.ids) == 0:
            return ids, lps, 0
        if self.same and len(teacher.ids) == s and np.array_equal(teacher.ids, student_ids):
            match = np.arange(s, dtype=np.int64)  # identical tokenizers and tokens: no DP needed
        else:
            t_bytes = self._bytes(self.teacher, self._teacher_bytes, teacher.ids)
            s_bytes = self._bytes(self.student, self._student_bytes, student_ids)
            match = match_tokens(t_bytes, s_bytes)
        rows = np.nonzero(match >= 0)[0]
        if len(rows):
            mids, mlps = self.map_candidates(teacher.top_ids[match[rows]], teacher.top_logprobs[match[rows]])
            usable = np.isfinite(mlps).any(-1)  # a row with no candidate in the student vocab stays one-hot
            rows, mids, mlps = rows[usable], mids[usable], mlps[usable]
            ids[rows], lps[rows] = mids, mlps
        return ids, lps, len(rows)


# ---- inspection (`cotdistill align`) --------------------------------------------------------


def _shown(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def alignment_report(teacher: Any, student: Any, text: str, student_text: str | None = None) -> dict[str, Any]:
    """What KD would do with ``text``: each tokenizer's tokens, the aligned pairs, and coverage.

    The teacher's tokens spell ``text``; the student's spell ``student_text`` (default the same
    text; the trainer's case is a rendered completion around the teacher's rationale). Every pair
    of the DTW path is listed, plus any match the span recovery added off the path; ``kd`` marks
    the student tokens that take the teacher's top-k at that teacher position, and
    ``student_id_of_teacher_token`` is where the vocabulary map sends the teacher's own token
    (for a KD pair it must be the student's own id: otherwise the targets point elsewhere, as
    Gemma's ``<0xNN>`` did).
    """
    t_ids, t_bytes = text_tokens(teacher, text)
    s_ids, s_bytes = text_tokens(student, text if student_text is None else student_text)
    vocab = vocabulary_map(teacher, student, len(student))
    found = align_tokens(t_bytes, s_bytes)
    s_pieces, t_pieces = vocabulary_bytes(student)[0], vocabulary_bytes(teacher)[0]
    kd = {(int(i), j) for j, i in enumerate(found.match.tolist()) if i >= 0}
    pairs = sorted({(int(i), int(j)) for i, j in found.path} | kd, key=lambda p: (p[1], p[0]))
    rows = []
    for i, j in pairs:
        mapped = int(vocab[t_ids[i]])
        rows.append(
            {
                "teacher": i,
                "student": j,
                "teacher_id": int(t_ids[i]),
                "student_id": int(s_ids[j]),
                "teacher_token": _shown(t_bytes[i]),
                "student_token": _shown(s_bytes[j]),
                "teacher_piece": t_pieces[t_ids[i]],
                "student_piece": s_pieces[s_ids[j]],
                "kd": (i, j) in kd,
                "student_id_of_teacher_token": mapped if mapped >= 0 else None,
            }
        )
    matched = int((found.match >= 0).sum())
    agree = sum(int(vocab[t_ids[i]] == s_ids[j]) for i, j in kd)
    n_s = len(s_ids)
    mapped_ids = vocab[vocab >= 0]
    return {
        "teacher": {"tokens": len(t_ids), "vocab_size": len(teacher)},
        "student": {"tokens": n_s, "vocab_size": len(student)},
        "same_tokenizer": same_tokenizer(teacher, student),
        "coverage": {
            "student_tokens": n_s,
            "with_teacher_distribution": matched,
            "fraction": matched / n_s if n_s else 0.0,
            "one_to_one_fraction": found.one_to_one_fraction,
            "dtw_one_to_one_identical": int((found.anchors >= 0).sum()),
            "recovered_by_span": matched - int((found.anchors >= 0).sum()),
            "teacher_token_maps_to_student_token": agree / matched if matched else None,
        },
        "vocabulary": {
            "teacher_ids_mapped_fraction": float((vocab >= 0).mean()) if len(vocab) else 0.0,
            "mapped_to_byte_fallback": int(sum(is_byte_fallback(s_pieces[k]) for k in mapped_ids.tolist())),
        },
        "pairs": rows,
    }
