"""Incremental detokenization with stop strings, for decoders that sample token by token.

The model server streams with it and the evaluator's checkpoint backend (``decode``) ends and
cuts completions with it, so a stop string ends a completion at the same token in both.

Text is re-decoded from the token ids each step (a few prompt tokens of context keep the leading
space a SentencePiece/Metaspace decoder would otherwise drop), so multi-token characters and
merges come out right. Text that could still turn into a stop string, or ends in a partial UTF-8
character, is held back until it is safe: a streamed client never sees part of a stop string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cotdistill.common.lm.tokens import CONTEXT_TOKENS, continuation

REPLACEMENT = "\ufffd"


class IncrementalText:
    """The visible text of one completion as tokens arrive.

    ``decode`` maps token ids to text (special tokens skipped). ``add(token)`` returns the newly
    visible text and whether a stop string ended the completion; ``flush()`` returns what was held
    back once the completion ends for another reason (EOS, length).
    """

    def __init__(self, decode: Callable[[list[int]], str], prompt_ids: Sequence[int], stop: Sequence[str]) -> None:
        self._decode = decode
        self._context = list(prompt_ids[-CONTEXT_TOKENS:])
        self._base = decode(self._context) if self._context else ""
        self._stop = tuple(stop)
        self._ids: list[int] = []
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """Visible text so far (what was returned by add/flush)."""
        return self._text[: self._emitted]

    def _full_text(self) -> str:
        return continuation(self._decode, self._context, self._ids, self._base)

    def add(self, token_id: int) -> tuple[str, bool]:
        """Add one generated token; returns (new visible text, stopped by a stop string)."""
        self._ids.append(token_id)
        self._text = self._full_text()
        if self._stop:
            longest = max(len(s) for s in self._stop)
            start = max(0, self._emitted - longest + 1)
            hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                end = max(min(hits), self._emitted)
                new = self._text[self._emitted : end]
                self._emitted = end
                self.stopped = True
                return new, True
        safe = len(self._text)
        while safe > self._emitted and self._text[safe - 1] == REPLACEMENT:
            safe -= 1  # a multi-byte character still being assembled
        hold = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, safe - self._emitted), hold, -1):
                if self._text[safe - k : safe] == s[:k]:
                    hold = k
                    break
        safe -= hold
        if safe <= self._emitted:
            return "", False
        new = self._text[self._emitted : safe]
        self._emitted = safe
        return new, False

    def flush(self) -> str:
        """The held-back text, once the completion ended without a stop string."""
        if self.stopped:
            return ""
        new = self._text[self._emitted :]
        self._emitted = len(self._text)
        return new
