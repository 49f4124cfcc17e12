"""Cross-tokenizer alignment: the compiled DP equals the pure-Python reference; targets are right."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotdistill.common.alignment import (
    Aligner,
    TeacherTokens,
    align,
    align_reference,
    edit_distance_reference,
    match_tokens,
    one_to_one,
    token_bytes,
    vocabulary_map,
)
from cotdistill.common.lm import tokenizer_content_hash
from cotdistill.pipeline.tiny_models import reasoning_corpus, train_tokenizer

tokens = st.lists(
    st.binary(min_size=0, max_size=4).map(lambda b: bytes(x % 4 + 97 for x in b)), min_size=0, max_size=14
)


@settings(max_examples=150, deadline=None)
@given(teacher=tokens, student=tokens)
def test_compiled_alignment_equals_reference_on_random_tokens(teacher: list[bytes], student: list[bytes]) -> None:
    assert align(teacher, student) == align_reference(teacher, student)


@pytest.fixture(scope="module")
def tokenizer_pair() -> tuple[Any, Any]:
    corpus = reasoning_corpus(150)
    return train_tokenizer(corpus, "byte_bpe", 360), train_tokenizer(corpus, "metaspace_bpe", 200)


def test_compiled_alignment_equals_reference_on_real_text(
    tokenizer_pair: tuple[Any, Any], shared_data_texts: list[str]
) -> None:
    teacher, student = tokenizer_pair
    for text in shared_data_texts:
        t = token_bytes(teacher, teacher(text, add_special_tokens=False)["input_ids"])
        s = token_bytes(student, student(text, add_special_tokens=False)["input_ids"])
        assert align(t, s) == align_reference(t, s)


@pytest.fixture(scope="module")
def shared_data_texts(request: pytest.FixtureRequest) -> list[str]:
    """Synthetic-task texts plus, when the real datasets are present, GSM8K-style questions."""
    texts = [*reasoning_corpus(6, seed=3), "Ünïcode ünd ëmoji 🙂 split across bytes: naïve café."]
    try:
        data = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return texts
    for path in sorted(data.rglob("*.jsonl"))[:2]:
        with path.open(encoding="utf-8") as handle:
            for _, line in zip(range(2), handle, strict=False):
                texts.append(line[:200])  # the pure-Python reference is O(n*m) edit distances
    return texts


def test_path_is_monotone_and_covers_both_sequences() -> None:
    t = [b"The", b" cat", b" sat", b"."]
    s = [b"Th", b"e", b" cat", b" s", b"at."]
    path = align(t, s)
    assert path[0] == (0, 0) and path[-1] == (3, 4)
    assert all(b[0] - a[0] in (0, 1) and b[1] - a[1] in (0, 1) and b != a for a, b in itertools.pairwise(path))
    assert one_to_one(np.array(path), 4, 5).tolist() == [-1, -1, 1, 2, 3]  # (" s", " sat"), ("at.", ".")
    assert edit_distance_reference(b"kitten", b"sitting") == 3


def test_byte_level_and_metaspace_tokens_compare_as_bytes(tokenizer_pair: tuple[Any, Any]) -> None:
    teacher, student = tokenizer_pair
    # The byte-level tokenizer splits "ï" over two tokens; their bytes still join to UTF-8.
    # (The Metaspace tokenizer has no byte fallback, so it gets ASCII.)
    for tok, text in ((teacher, " Tom has 5 apples. naïve"), (student, " Tom has 5 apples.")):
        pieces = token_bytes(tok, tok(text, add_special_tokens=False)["input_ids"])
        assert b"".join(pieces).decode("utf-8").strip() == text.strip()


def test_vocabulary_map_matches_strings_and_handles_padded_embeddings(tokenizer_pair: tuple[Any, Any]) -> None:
    teacher, student = tokenizer_pair
    mapping = vocabulary_map(teacher, student, len(student), teacher_vocab_size=len(teacher) + 40)
    assert mapping.shape == (len(teacher) + 40,)
    assert (mapping[len(teacher) :] == -1).all()  # padded teacher rows never map
    t_bytes, s_bytes = token_bytes(teacher, range(len(teacher))), token_bytes(student, range(len(student)))
    hits = np.nonzero(mapping >= 0)[0]
    assert len(hits) > 50
    assert all(t_bytes[i] == s_bytes[mapping[i]] for i in hits)
    # Same tokenizer: identity, limited to the student's embedding rows.
    same = vocabulary_map(student, student, 150)
    assert same[:150].tolist() == list(range(150)) and (same[150:] == -1).all()
    assert tokenizer_content_hash(student) != tokenizer_content_hash(teacher)


def _teacher_sample(tok: Any, text: str, k: int = 3) -> TeacherTokens:
    ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    top = np.stack([ids, (ids + 1) % len(tok), (ids + 2) % len(tok)], 1)[:, :k]
    lps = np.log(np.array([[0.7, 0.2, 0.1]] * len(ids), dtype=np.float32))[:, :k]
    return TeacherTokens(ids, top, lps)


def test_targets_take_teacher_topk_only_for_identical_tokens_over_the_same_text(
    tokenizer_pair: tuple[Any, Any],
) -> None:
    teacher, student = tokenizer_pair
    text = " Tom starts with 12 apples. 12 + 3 = 15. --> 15 END"
    sample = _teacher_sample(teacher, text)
    s_ids = np.asarray(student(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    aligner = Aligner(teacher, student, len(student))
    ids, lps, matched = aligner.targets(s_ids, sample)
    assert ids.shape == lps.shape == (len(s_ids), 3)
    t_bytes, s_bytes = token_bytes(teacher, sample.ids), token_bytes(student, s_ids)
    t_start = np.cumsum([0] + [len(b) for b in t_bytes])
    s_start = np.cumsum([0] + [len(b) for b in s_bytes])
    # Both spell the same text here, so "matched" must mean: same bytes over the same byte span.
    same_span = {(t_start[i], t_start[i + 1]): i for i in range(len(t_bytes))}
    expected_matched = 0
    for j in range(len(s_ids)):
        i = same_span.get((s_start[j], s_start[j + 1]))
        if i is not None:
            expected_matched += 1
            assert ids[j, 0] == s_ids[j] and lps[j, 0] == pytest.approx(math.log(0.7))
            present = np.isfinite(lps[j])
            # every present candidate spells the teacher candidate's string
            for slot in np.nonzero(present)[0]:
                assert token_bytes(student, [ids[j, slot]]) == token_bytes(teacher, [sample.top_ids[i, slot]])
        else:
            assert ids[j, 0] == s_ids[j] and lps[j, 0] == 0 and not np.isfinite(lps[j, 1:]).any()
    assert matched == expected_matched > 0
    # Every one-to-one identical pair of the DTW path (Fu et al.'s rule) is among the matches.
    match = match_tokens(t_bytes, s_bytes)
    old_rule = one_to_one(np.array(align(t_bytes, s_bytes)), len(t_bytes), len(s_ids))
    for j, i in enumerate(old_rule.tolist()):
        if i >= 0 and t_bytes[i] == s_bytes[j]:
            assert match[j] == i


def test_matches_recover_identical_tokens_the_dtw_path_pairs_many_to_one() -> None:
    # DTW pairs the teacher's "." with the student's "." and " " at equal cost, which breaks
    # one-to-one; the same text under both, so the student "." still takes the teacher's ".".
    t = [b" jelly", b".", b" \n", b"We"]
    s = [b" jelly", b".", b" ", b"\n", b"We"]
    path = np.array(align(t, s))
    assert one_to_one(path, 4, 5)[1] == -1  # the DTW path alone loses it
    assert match_tokens(t, s).tolist() == [0, 1, -1, -1, 3]
    # Repeated strings at another place in the text never match across positions.
    assert match_tokens([b"1", b"11"], [b"11", b"1"]).tolist() == [-1, -1]
    # Different texts: only the stretches both share, before and after the edit, match.
    t = [b" A", b" cat", b" sat", b".", b" The", b" end"]
    s = [b" A", b" dog", b" sat", b".", b" The", b" end"]
    assert match_tokens(t, s).tolist() == [0, -1, 2, 3, 4, 5]
    assert match_tokens([], s).tolist() == [-1] * 6 and match_tokens(t, []).tolist() == []


def test_identical_tokenizers_skip_the_dp(tokenizer_pair: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _, student = tokenizer_pair
    text = " Ana has 3 pens. --> 3 END"
    sample = _teacher_sample(student, text)
    aligner = Aligner(student, student, len(student))
    import cotdistill.common.alignment as alignment

    def fail(*args: object) -> None:
        raise AssertionError("the DP ran for identical tokenizers and tokens")

    monkeypatch.setattr(alignment, "align_array", fail)
    ids, lps, matched = aligner.targets(sample.ids, sample)
    assert matched == len(sample.ids)
    assert (ids == sample.top_ids).all() and np.allclose(lps, sample.top_logprobs)
