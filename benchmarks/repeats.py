"""Repetitions of a job (``run --repeat N``): grouping their result files, and the median and range of
every figure derived from them.

The repetitions of a job are the result files of one run with the same target, profile,
configuration and variant, written with ``settings.repeats`` above 1. ``group`` merges each such
set into one document of the same shape, in which a number that differs between repetitions is a
``Spread``: its value in each repetition, by repetition index. Arithmetic on spreads pairs values
of the same repetition (a plain number goes with every one), so the ratio of two jobs is taken
within each repetition, whose jobs ran next to each other, and its median and range are those of
the per-repetition ratios. A result without repetitions passes through unchanged, so a report of
such results reads exactly as before.

    docs = group(load_raw("results"))
    f"{doc['locust']['rps']:.0f}"           # "1520 (1490 to 1580)"; "1520" without repetitions
    each(lambda r: "met" if r >= 0.85 else "missed", ratio)   # "met", "missed", or a Spread of both
    settle(verdicts)                         # the verdict if every repetition agrees, else "not settled"
"""

from __future__ import annotations

import operator
import statistics
from typing import Any, Callable

NOT_SETTLED = "not settled"


class Spread:
    """One figure over the repetitions of a job: ``values`` maps repetition index to value (at least two
    distinct values; ``spread()`` makes one)."""

    __slots__ = ("values",)
    __hash__ = None

    def __init__(self, values: dict[int, Any]) -> None:
        self.values = dict(sorted(values.items()))

    @property
    def median(self):
        return statistics.median(self.values.values())

    @property
    def lo(self):
        return min(self.values.values())

    @property
    def hi(self):
        return max(self.values.values())

    def format(self, fmt: Callable[[Any], str]) -> str:
        """``median (lo to hi)``, each number formatted by ``fmt``; just the median if the range vanishes in
        that format."""
        median, lo, hi = fmt(self.median), fmt(self.lo), fmt(self.hi)
        return median if lo == hi else f"{median} ({lo} to {hi})"

    def __format__(self, spec: str) -> str:
        return self.format(lambda v: format(v, spec))

    def __str__(self) -> str:
        return format(self, "")

    def __repr__(self) -> str:
        return f"Spread({self.values!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spread) and self.values == other.values

    def __bool__(self) -> bool:
        return any(self.values.values())

    def __float__(self) -> float:
        return float(self.median)

    def __neg__(self):
        return each(operator.neg, self)

    def __abs__(self):
        return each(abs, self)


def _binary(op: Callable[[Any, Any], Any]) -> tuple[Callable, Callable]:
    return (lambda self, other: each(op, self, other)), (lambda self, other: each(op, other, self))


Spread.__add__, Spread.__radd__ = _binary(operator.add)
Spread.__sub__, Spread.__rsub__ = _binary(operator.sub)
Spread.__mul__, Spread.__rmul__ = _binary(operator.mul)
Spread.__truediv__, Spread.__rtruediv__ = _binary(operator.truediv)


def spread(values: dict[int, Any]):
    """The figure of ``values`` (repetition -> value; a None value is left out): one value if they all
    agree, else a ``Spread``; None if there is none."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return None
    first = next(iter(values.values()))
    return first if all(v == first for v in values.values()) else Spread(values)


def each(fn: Callable[..., Any], *args):
    """``fn`` applied repetition by repetition; plain arguments go with every repetition. Spreads of
    different repetitions (which ``group`` never pairs) are taken value by value over all pairs."""
    spreads = [a.values for a in args if isinstance(a, Spread)]
    if not spreads:
        return fn(*args)
    keys = set(spreads[0]).intersection(*spreads[1:])
    if keys:
        return spread({k: fn(*(a.values[k] if isinstance(a, Spread) else a for a in args)) for k in sorted(keys)})
    values, n = [fn(*combo) for combo in _combos(args)], 0
    return spread({(n := n + 1): v for v in values})


def _combos(args: tuple) -> list[tuple]:
    out: list[tuple] = [()]
    for a in args:
        out = [c + (v,) for c in out for v in (a.values.values() if isinstance(a, Spread) else [a])]
    return out


def settle(verdict) -> str:
    """A verdict over repetitions: the one they all reached, else ``not settled``."""
    return NOT_SETTLED if isinstance(verdict, Spread) else verdict


def repetition(doc: dict) -> tuple[int, int]:
    """(index, count) of a result's repetition; (1, 1) for results written without ``--repeat``."""
    settings = doc.get("settings") or {}
    return settings.get("repeat") or 1, settings.get("repeats") or 1


def job_key(doc: dict) -> str:
    """What the repetitions of one job share (run, target, profile, configuration, variant); a result
    written without repetitions is a job of its own, named by its file."""
    if repetition(doc)[1] > 1:
        return "/".join(str(doc.get(k)) for k in ("run_id", "target", "profile", "config", "variant"))
    return f"file:{doc.get('_file') or id(doc)}"


def group(docs: list[dict]) -> list[dict]:
    """One document per job, in the order of each job's first file: a single result as it is, the
    repetitions of a job merged (``_files`` lists their files, ``_file`` is the first)."""
    groups: dict[str, list[dict]] = {}
    for doc in docs:
        groups.setdefault(job_key(doc), []).append(doc)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        merged = merge({repetition(d)[0]: d for d in members})
        merged["_file"], merged["_files"] = members[0].get("_file"), [d.get("_file") for d in members]
        out.append(merged)
    return out


def merge(values: dict[int, Any]):
    """Documents by repetition as one: dicts key by key, equally long lists item by item, numbers as
    ``spread``; anything else (text, lists that differ in length) from the last repetition."""
    items = list(values.values())
    if all(isinstance(v, dict) for v in items):
        keys = list(dict.fromkeys(k for v in items for k in v))
        return {k: merge({i: v[k] for i, v in values.items() if k in v}) for k in keys}
    if all(isinstance(v, list) for v in items) and len({len(v) for v in items}) == 1:
        return [merge({i: v[n] for i, v in values.items()}) for n in range(len(items[0]))]
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in items):
        return spread(values)
    return items[-1]


def medians(doc):
    """``doc`` with every ``Spread`` replaced by its median (for figures, which draw one bar per job)."""
    if isinstance(doc, Spread):
        return doc.median
    if isinstance(doc, dict):
        return {k: medians(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [medians(v) for v in doc]
    return doc
