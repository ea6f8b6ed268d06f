"""What a request says and what the mock answers: the texts, token counts and stream pieces.

Tokens are whitespace words. Without the timing model a reply is ``"Mock reply to: <last user
text>"`` split into ``--chunks`` pieces; with it, the reply is padded to the drawn length and
streamed ``--tokens-per-chunk`` tokens per piece, each piece due at its time (``timing.pace``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from .timing import Timing, pace

DEFAULT_EMBED_DIM = 8
FILLER = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
          "ut labore et dolore magna aliqua").split()
TOKEN = re.compile(r"\s*\S+")  # a word with the space before it: pieces join back to the text


def words(text: str) -> int:
    return len(text.split())


def parts_text(content: Any) -> str:
    """Text of a message content: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)
        return " ".join(out)
    return ""


def split(text: str, n: int) -> list[str]:
    """Split text into at most n non-empty pieces that join back to text."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)]


def scan(turns: Any, system: Any = None) -> tuple[int, str, bool]:
    """One pass over (is_user, content, is_tool_result) turns.

    Returns the prompt word count (system text included), the last user text,
    and whether the conversation ends with a plain user turn: only then may the
    mock call a tool, so an agent loop feeding results back gets a text answer.
    """
    count, user_text, ends_user = words(parts_text(system)), "", False
    for is_user, content, tool_result in turns:
        text = parts_text(content)
        count += words(text)
        ends_user = is_user and not tool_result
        if is_user and text:
            user_text = text
    return count, user_text, ends_user


def answer(user_text: str, tool: str | None, length: int | None = None) -> tuple[str, int]:
    """Reply text (or the tool-call arguments JSON) and its output token count.

    ``length`` pads a text reply with filler words up to that many tokens (never shorter than
    the reply itself, which must keep the user's text); tool-call arguments stay as they are.
    """
    if tool:
        out = orjson.dumps({"query": user_text}).decode()
        return out, words(out)
    out = "Mock reply to: " + user_text
    count = words(out)
    if length is not None and length > count:
        out += " " + " ".join(itertools.islice(itertools.cycle(FILLER), length - count))
        count = length
    return out, count


def wants_tool(ends_user: bool, user_text: str, tools: Any) -> bool:
    return bool(tools) and ends_user and "tool" in user_text.lower()


@lru_cache(maxsize=8192)
def embedding(text: str, dim: int) -> tuple[float, ...]:
    """Deterministic unit vector from a hash of the text (no semantics)."""
    data = text.encode()
    raw = bytearray()
    block = 0
    while len(raw) < dim:
        raw += hashlib.blake2b(data, digest_size=64, salt=block.to_bytes(16, "little")).digest()
        block += 1
    vals = [(b - 127.5) / 127.5 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vals)) or 1.0
    return tuple(v / norm for v in vals)


class Reply(NamedTuple):
    """An answer's text, its token count, its stream pieces and, with the timing model on,
    the seconds after the start at which each piece is due (None: as soon as possible)."""

    text: str
    tokens: int
    pieces: list[str]
    due: list[float] | None

    @property
    def latency(self) -> float:
        """Seconds before a non-streamed answer."""
        return self.due[-1] if self.due else 0.0

    def schedule(self, head: int, tail: int) -> list[float] | None:
        """Due times of a stream's frames: ``head`` frames go with the first piece, ``tail``
        frames with the last."""
        if self.due is None:
            return None
        return [self.due[0]] * head + self.due + [self.due[-1]] * tail


def make_reply(timing: Timing, user_text: str, tool: str | None, pieces: int) -> Reply:
    """The answer, split for streaming into ``pieces`` (1: not streamed, or not splittable).

    With the timing model on, its length and pace are drawn and a stream carries
    ``--tokens-per-chunk`` tokens per piece, so usage counts exactly what was streamed.
    """
    if not timing.on:
        text, tokens = answer(user_text, tool)
        return Reply(text, tokens, split(text, pieces), None)
    draw = timing.draw()
    text, tokens = answer(user_text, tool, draw.tokens)
    size = timing.tokens_per_chunk if pieces > 1 else tokens
    found = TOKEN.findall(text)
    groups = [found[i:i + size] for i in range(0, len(found), size)]
    return Reply(text, tokens, ["".join(g) for g in groups], pace([len(g) for g in groups], draw.ttft, draw.rate))
