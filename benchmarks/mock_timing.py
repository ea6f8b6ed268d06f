"""The mock's timing model as benchmark options: ``--mock-ttft-ms`` ... for ``run`` and ``production``.

One definition: the flags are made from ``forge_mock.config.MockConfig``'s own fields (help and
parsing included), prefixed ``--mock-``, and the values are checked by ``MockConfig`` itself before
anything starts. The result is a dict of ``MockConfig`` fields, which ``targets.start_mock`` turns
back into ``forge-ref mock-provider`` flags.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from forge_mock.config import ConfigError, MockConfig

FIELDS = ("ttft_ms", "ttft_sigma", "token_rate", "output_tokens", "tokens_per_chunk", "models_latency_ms",
          "models_rate_limit", "models_rate_window", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    spec = {f.name: f for f in fields(MockConfig)}
    group = parser.add_argument_group("the mock provider's timing model (see forge-ref mock-provider --help)")
    for name in FIELDS:
        f = spec[name]
        group.add_argument("--mock-" + name.replace("_", "-"), dest="mock_" + name, type=f.metadata["parse"],
                           default=None, help=f.metadata["help"])


def check(timing: dict) -> dict:
    """``timing`` (MockConfig fields, None = unset) without the unset ones, or SystemExit if the mock
    would refuse it."""
    timing = {k: v for k, v in timing.items() if v is not None}
    unknown = sorted(set(timing) - set(FIELDS))
    if unknown:
        raise SystemExit(f"unknown mock timing option(s) {unknown}; choose from {', '.join(FIELDS)}")
    try:
        MockConfig(**timing)
    except ConfigError as exc:
        raise SystemExit(f"mock timing: {exc}") from None
    return timing


def from_args(args: argparse.Namespace) -> dict:
    return check({name: getattr(args, "mock_" + name) for name in FIELDS})
