"""The provider timing model: how long an answer takes to start and to stream, drawn per answer.

Token ``i`` (from 0) of an answer is ready at ``ttft + i / rate``: time to first token from a
lognormal (median ``--ttft-ms``, sigma ``--ttft-sigma``), rate uniform in ``--token-rate`` and
fixed for the answer. A streamed chunk leaves with its last token, a whole (non-streamed) answer
with the last token of all. Every draw comes from one ``random.Random(--seed)``, or the one given.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from .config import MockConfig


class Draw(NamedTuple):
    """One answer's timing: seconds to the first token, tokens per second (None: all at once),
    and its length in tokens (None: the reply text's own)."""

    ttft: float
    rate: float | None
    tokens: int | None


class Timing:
    def __init__(self, config: MockConfig, rng: random.Random | None = None) -> None:
        self.on = config.timing_model
        self.tokens_per_chunk = config.tokens_per_chunk
        self.rng = rng if rng is not None else random.Random(config.seed)
        self._ttft = (math.log(config.ttft_ms / 1000.0) if config.ttft_ms else None, config.ttft_sigma)
        self._rate = config.token_rate
        self._tokens = config.output_tokens
        self._models = config.models_latency_ms

    def draw(self) -> Draw:
        mu, sigma = self._ttft
        ttft = 0.0 if mu is None else math.exp(mu) if not sigma else self.rng.lognormvariate(mu, sigma)
        rate = self.rng.uniform(*self._rate) if self._rate else None
        tokens = self.rng.randint(int(self._tokens.low), int(self._tokens.high)) if self._tokens else None
        return Draw(ttft, rate, tokens)

    def models_delay(self) -> float:
        """Seconds before a model-list answer (0 without ``--models-latency-ms``)."""
        return self.rng.uniform(*self._models) / 1000.0 if self._models else 0.0


def pace(chunk_tokens: list[int], ttft: float, rate: float | None) -> list[float]:
    """Seconds after the start at which each chunk of that many tokens is due."""
    due, ready = [], 0
    for n in chunk_tokens:
        ready += n
        due.append(ttft + (ready - 1) / rate if rate else ttft)
    return due
