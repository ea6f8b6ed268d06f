"""forge_mock.ratelimit: exactly N calls per key in any window, Retry-After until one frees."""

from __future__ import annotations

from forge_mock.ratelimit import SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_exactly_limit_calls_per_key_then_the_seconds_until_the_oldest_leaves():
    clock = Clock()
    w = SlidingWindow(3, 10.0, clock)
    assert [w.hit("a") for _ in range(3)] == [0, 0, 0]
    assert w.hit("a") == 10 and w.hit("a") == 10      # refused calls do not count
    assert w.hit("b") == 0                              # per key
    clock.now += 4.2
    assert w.hit("a") == 6                              # 5.8 s left: rounded up
    clock.now += 5.8 - 1e-9
    assert w.hit("a") == 1
    clock.now = 1010.0                                  # the first call leaves the window
    assert w.hit("a") == 0 and w.hit("a") == 0 and w.hit("a") == 0
    assert w.hit("a") == 10                             # the window now holds 1010, 1010, 1010


def test_the_window_slides_call_by_call():
    clock = Clock()
    w = SlidingWindow(2, 60.0, clock)
    assert w.hit("k") == 0
    clock.now += 30
    assert w.hit("k") == 0
    assert w.hit("k") == 30
    clock.now += 30                                     # the first call is 60 s old: gone
    assert w.hit("k") == 0
    assert w.hit("k") == 30                             # the second (at +30) still holds a slot


def test_reset_forgets_every_key():
    clock = Clock()
    w = SlidingWindow(1, 60.0, clock)
    assert (w.hit("a"), w.hit("b"), w.hit("a")) == (0, 0, 60)
    w.reset()
    assert (w.hit("a"), w.hit("b"), w.hit("a")) == (0, 0, 60)
