"""Where a sampled response ends: at its first EOS, at the first of the task's stop strings, or at the
length limit.

Why stop strings: a base model (the paper configs start from Llama-3-8B with no SFT) rarely writes EOS
after "Final answer: 18"; it goes on with a new "Question: ... Solution: ..." block until
`max_new_tokens`. Generation stops at the task's stop strings (`Task.stop_strings`; Hugging Face
`stop_strings`, vLLM `stop`), and `end_response` cuts every response there before anything reads it,
so the grader, the RMs, pair building and the loss all see the same cut response:

- The stop string is excluded, from the text and from the tokens (vLLM and TRL return text without it).
- The tokens kept are the policy's own samples: every token whose decoded text lies wholly before the
  stop. A token that straddles the stop's start (" Question" for the stop "Question:") is dropped; if
  its part before the stop is more than whitespace (a tokenizer that merged "18" with what follows),
  that part is re-encoded and kept when it decodes back exactly, so no answer text is lost. Trailing
  whitespace before the stop is dropped with its token.
- EOS is appended. The response did end there, and a response that ended by itself carries its EOS
  too: TRL's DPOTrainer appends EOS to every completion it trains on. With NLL on the chosen responses
  (the paper's DPO+NLL) the policy learns to end where the answer ends, so later samples stop by EOS
  and cost fewer tokens. The EOS is the one token of a cut response that the policy did not sample.
- The text graded and scored is the decoded kept tokens (special tokens skipped), so the text and the
  tokens trained on always agree.

Hugging Face matches a stop string across the end of the prompt too (vLLM only in the response): a stop
that the prompt's last characters could begin (e.g. "\n\nQuestion:" after a prompt ending in "\n") can halt
generation without a stop in the response, which is then kept whole as a truncated one. The tasks'
defaults cannot: no prompt ends with the start of its stop strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Tokenizer(Protocol):
    """What the cut needs of a Hugging Face tokenizer."""

    eos_token_id: int | None

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


ENDINGS = ("eos", "stop", "length")


@dataclass(frozen=True)
class Ending:
    """One response as the step uses it.

    `tokens`: the response trained on (cut; EOS last when it ended by EOS or at a stop string);
    `generated`: the tokens the policy generated for it (through its EOS, through the last token of
    the stop string, or up to the length limit), the generation cost; `reason`: one of `ENDINGS`."""

    tokens: list[int]
    generated: int
    reason: str


def first_stop(text: str, stop_strings: Sequence[str]) -> int | None:
    """The character position where the earliest of the stop strings starts in `text`; None if none does."""
    found = [position for position in (text.find(stop) for stop in stop_strings) if position >= 0]
    return min(found) if found else None


def _smallest(low: int, high: int, holds: Callable[[int], bool]) -> int:
    """The smallest i in [low, high] for which `holds(i)`, given that holds(high) and that holds is monotone."""
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def cut_at_stop(tokens: list[int], stop_strings: Sequence[str], tokenizer: Tokenizer) -> tuple[list[int], int] | None:
    """(the tokens before the first stop string, the number of tokens through the stop's last one), or
    None when the decoded tokens contain no stop string. Binary searches over prefixes: O(log n) decodes."""
    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    if not stop_strings or first_stop(decode(tokens), stop_strings) is None:
        return None
    through = _smallest(1, len(tokens), lambda i: first_stop(decode(tokens[:i]), stop_strings) is not None)
    text = decode(tokens[:through])
    before = text[: first_stop(text, stop_strings)]
    # the longest prefix of whole tokens that decodes to a prefix of `before`: the first i whose next token
    # leaves it (tokens[:through] does, since it holds the stop)
    kept = _smallest(0, through - 1, lambda i: not before.startswith(decode(tokens[: i + 1])))
    response = tokens[:kept]
    rest = before[len(decode(response)):]
    if rest.strip():  # a straddling token carried answer text: re-encode that part, if it round-trips
        extra = tokenizer.encode(rest, add_special_tokens=False)
        if decode(response + extra) == before:
            response = response + extra
    return response, through


def end_response(tokens: list[int], tokenizer: Tokenizer, stop_strings: Sequence[str] = ()) -> Ending:
    """Cut one generated sequence at its first EOS, then at the first stop string in what precedes it
    (see the module docstring: what is kept, and why EOS is appended)."""
    eos = tokenizer.eos_token_id
    ended = eos is not None and eos in tokens
    body = tokens[: tokens.index(eos)] if ended else list(tokens)
    tail = [eos] if eos is not None else []
    cut = cut_at_stop(body, stop_strings, tokenizer)
    if cut is not None:
        response, generated = cut
        return Ending(response + tail, generated, "stop")
    if ended:
        return Ending(body + tail, len(body) + 1, "eos")
    return Ending(body, len(body), "length")
