"""Incremental text with stop strings: nothing of a stop string is ever emitted."""

from __future__ import annotations

from cotdistill.common.lm.detokenize import IncrementalText

VOCAB = {i: ch for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz -->#END")}
IDS = {ch: i for i, ch in VOCAB.items()}


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


def feed(text: str, stop: tuple[str, ...], prompt: str = "") -> tuple[list[str], bool, str]:
    inc = IncrementalText(decode, [IDS[c] for c in prompt], stop)
    pieces, stopped = [], False
    for ch in text:
        new, stopped = inc.add(IDS[ch])
        pieces.append(new)
        if stopped:
            break
    if not stopped:
        pieces.append(inc.flush())
    return pieces, stopped, inc.text


def test_without_stop_strings_every_token_is_emitted_at_once() -> None:
    pieces, stopped, text = feed("abc", ())
    assert pieces[:3] == ["a", "b", "c"] and not stopped and text == "abc"


def test_stop_string_is_cut_and_never_streamed() -> None:
    pieces, stopped, text = feed("ab -- cd --> x END", ("-->",))
    assert stopped and text == "ab -- cd "
    assert "".join(pieces) == "ab -- cd "
    assert all(">" not in p for p in pieces)


def test_possible_stop_prefix_is_held_back_then_released() -> None:
    inc = IncrementalText(decode, [], ("END",))
    assert inc.add(IDS["a"]) == ("a", False)
    assert inc.add(IDS["E"]) == ("", False)  # could become END
    assert inc.add(IDS["N"]) == ("", False)
    assert inc.add(IDS["x"]) == ("ENx", False)  # it did not
    assert inc.flush() == ""


def test_held_back_text_is_flushed_when_generation_ends_otherwise() -> None:
    pieces, stopped, text = feed("abE", ("END",))
    assert not stopped and "".join(pieces) == "abE" and text == "abE"


def test_the_earliest_of_several_stop_strings_wins() -> None:
    _, stopped, text = feed("ab#cdEND", ("END", "#"))
    assert stopped and text == "ab"


def test_prompt_context_keeps_a_leading_space() -> None:
    # With a decoder that drops a leading space at the start of a text, context restores it.
    def strip_decode(ids: list[int]) -> str:
        return decode(ids).lstrip(" ")

    inc = IncrementalText(strip_decode, [IDS["q"]], ())
    assert inc.add(IDS[" "]) == (" ", False)
    assert inc.add(IDS["a"]) == ("a", False)
