"""forge_mock.timing: the draws respect their distributions, and chunks are due at the token rate.

Seeded draws are deterministic, so the statistical checks below cannot flake.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest

from forge_mock.config import MockConfig
from forge_mock.timing import Draw, Timing, pace


class RecordingRng:
    """Answers every draw with a fixed value and records how it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def lognormvariate(self, mu: float, sigma: float) -> float:
        self.calls.append(("lognormvariate", mu, sigma))
        return 0.25

    def uniform(self, a: float, b: float) -> float:
        self.calls.append(("uniform", a, b))
        return 60.0

    def randint(self, a: int, b: int) -> int:
        self.calls.append(("randint", a, b))
        return 123


def test_each_draw_asks_its_distribution_with_the_configured_parameters():
    rng = RecordingRng()
    t = Timing(MockConfig(ttft_ms=400, ttft_sigma=0.5, token_rate=(50, 100), output_tokens=(100, 400),
                          models_latency_ms=(300, 800)), rng)
    assert t.on and t.draw() == Draw(0.25, 60.0, 123)
    assert t.models_delay() == pytest.approx(0.06)
    assert rng.calls == [("lognormvariate", pytest.approx(math.log(0.4)), 0.5), ("uniform", 50.0, 100.0),
                         ("randint", 100, 400), ("uniform", 300.0, 800.0)]


def test_fixed_and_unset_parameters_draw_nothing():
    rng = RecordingRng()
    t = Timing(MockConfig(ttft_ms=250), rng)   # sigma 0: always the median
    assert [t.draw() for _ in range(3)] == [Draw(0.25, None, None)] * 3
    assert t.models_delay() == 0.0 and rng.calls == []
    off = Timing(MockConfig(), rng)
    assert not off.on and off.draw() == Draw(0.0, None, None) and rng.calls == []


def test_seeded_draws_follow_the_distributions():
    t = Timing(MockConfig(ttft_ms=400, ttft_sigma=0.5, token_rate=(50, 100), output_tokens=(100, 400), seed=7))
    draws = [t.draw() for _ in range(20000)]
    ttft = [d.ttft for d in draws]
    assert statistics.median(ttft) == pytest.approx(0.4, rel=0.02)
    assert statistics.stdev(math.log(x) for x in ttft) == pytest.approx(0.5, rel=0.03)
    rates = [d.rate for d in draws]
    assert 50 <= min(rates) < 50.1 and 99.9 < max(rates) <= 100
    assert statistics.mean(rates) == pytest.approx(75, abs=0.5)
    tokens = [d.tokens for d in draws]
    assert min(tokens) == 100 and max(tokens) == 400 and all(isinstance(n, int) for n in tokens)
    assert statistics.mean(tokens) == pytest.approx(250, abs=3)


def test_the_seed_makes_runs_reproducible():
    def run(seed: int) -> list[Draw]:
        t = Timing(MockConfig(ttft_ms=400, ttft_sigma=1, token_rate=(50, 100), seed=seed))
        return [t.draw() for _ in range(5)]

    assert run(1) == run(1) and run(1) != run(2)


def test_pace_token_i_is_ready_at_ttft_plus_i_over_rate_and_a_chunk_leaves_with_its_last():
    assert pace([3, 3, 1], 0.2, 10.0) == pytest.approx([0.4, 0.7, 0.8])
    assert pace([1, 1, 1], 0.5, 4.0) == pytest.approx([0.5, 0.75, 1.0])
    assert pace([7], 0.2, 10.0) == pytest.approx([0.8])          # a whole answer: its last token
    assert pace([2, 2], 0.3, None) == [0.3, 0.3]                 # no rate: every token at once


def test_timing_draws_use_their_own_random_source():
    # A global random.seed elsewhere must not change the mock's draws.
    t1 = Timing(MockConfig(ttft_ms=100, ttft_sigma=1, seed=3))
    random.seed(99)
    t2 = Timing(MockConfig(ttft_ms=100, ttft_sigma=1, seed=3))
    random.random()
    assert t1.draw() == t2.draw()
