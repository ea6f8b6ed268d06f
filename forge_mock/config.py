"""The mock's options, once: ``MockConfig`` fields are ``run(**kw)`` arguments and command-line flags.

``forge-ref mock-provider`` and ``python -m forge_mock`` both build their flags with
``add_arguments`` and hand ``options(args)`` to ``forge_mock.app.run``: one definition, one parser
per command. This module imports nothing heavy, so building the gateway's CLI stays cheap.

The timing model (``--ttft-ms``, ``--token-rate``, ``--output-tokens``) is on when any of those
three is given; it then paces chat answers and ``--chunks`` / ``--chunk-delay-ms`` do not apply.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple


class ConfigError(ValueError):
    """An option value, or a combination of them, that the mock cannot serve."""


class Range(NamedTuple):
    """A uniform draw between ``low`` and ``high`` inclusive (equal: a fixed value)."""

    low: float
    high: float

    def document(self) -> dict:
        return {"distribution": "uniform", "low": self.low, "high": self.high}


_RANGE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(?:-\s*(\d+(?:\.\d*)?)\s*)?")


def _range(number: type) -> Any:
    """An argparse type for ``LOW-HIGH`` or ``N`` (meaning ``N-N``) of ``number``s."""

    def parse(text: str) -> Range:
        m = _RANGE.fullmatch(text)
        try:
            low = number(m[1])
            return Range(low, number(m[2]) if m[2] else low)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not N or LOW-HIGH") from None

    parse.__name__ = f"{number.__name__} range"  # argparse names the type in its error message
    return parse


def _opt(default: Any, help: str, parse: Any = None) -> Any:
    return field(default=default, metadata={"help": help, "parse": parse})


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8001, "port to listen on (0: a free one, announced on stdout)", int)
    latency_ms: float = _opt(0.0, "delay before every answer, after counting the call", float)
    chunks: int = _opt(4, "pieces a streamed reply is split into (timing model off)", int)
    chunk_delay_ms: float = _opt(0.0, "delay between stream frames (timing model off)", float)
    ttft_ms: float = _opt(0.0, "median time to first token of a chat answer, ms (lognormal)", float)
    ttft_sigma: float = _opt(0.0, "sigma of ln(time to first token) (0: always the median)", float)
    token_rate: Range | None = _opt(None, "tokens per second after the first, LOW-HIGH (uniform per "
                                    "answer) or N (unset: every token at once)", _range(float))
    output_tokens: Range | None = _opt(None, "answer length in tokens, LOW-HIGH (uniform) or N; the "
                                       "reply text is padded with filler words (unset: its own length)",
                                       _range(int))
    tokens_per_chunk: int = _opt(1, "tokens per streamed chunk with the timing model on", int)
    models_latency_ms: Range | None = _opt(None, "delay of a model-list answer, ms, LOW-HIGH (uniform) or N",
                                           _range(float))
    models_rate_limit: int = _opt(0, "model-list calls allowed per API key and API within a sliding "
                                  "window; more get 429 with Retry-After (0: no limit)", int)
    models_rate_window: float = _opt(60.0, "that window, seconds", float)
    seed: int = _opt(0, "seed of the random draws (TTFT, token rate, length, model-list delay)", int)

    def __post_init__(self) -> None:
        for f in ("token_rate", "output_tokens", "models_latency_ms"):  # run(token_rate=(50, 100) or 75)
            value = getattr(self, f)
            if value is not None:
                object.__setattr__(self, f, Range(value, value) if isinstance(value, (int, float))
                                   else Range(*value))
        if min(self.latency_ms, self.chunk_delay_ms, self.ttft_ms, self.ttft_sigma) < 0:
            raise ConfigError("delays and sigma cannot be negative")
        if self.chunks < 1 or self.tokens_per_chunk < 1:
            raise ConfigError("--chunks and --tokens-per-chunk must be at least 1")
        for flag, r in (("--token-rate", self.token_rate), ("--output-tokens", self.output_tokens),
                        ("--models-latency-ms", self.models_latency_ms)):
            if r is not None and not 0 <= r.low <= r.high:
                raise ConfigError(f"{flag} {r.low:g}-{r.high:g}: LOW cannot be above HIGH")
        if (self.token_rate and self.token_rate.low <= 0) or (self.output_tokens and self.output_tokens.low < 1):
            raise ConfigError("--token-rate and --output-tokens must be positive")
        if self.models_rate_limit < 0 or self.models_rate_window <= 0:
            raise ConfigError("--models-rate-limit cannot be negative, --models-rate-window must be positive")
        if self.timing_model and self.chunk_delay_ms:
            raise ConfigError("--chunk-delay-ms paces streams without the timing model; with "
                              "--ttft-ms / --token-rate / --output-tokens use --token-rate")

    @property
    def timing_model(self) -> bool:
        return bool(self.ttft_ms or self.token_rate or self.output_tokens)

    def document(self) -> dict:
        """The effective timing configuration as JSON-ready data (``GET /_mock/config``)."""

        def dist(r: Range | None) -> dict | None:
            return r.document() if r else None

        return {
            "latency_ms": self.latency_ms, "chunks": self.chunks, "chunk_delay_ms": self.chunk_delay_ms,
            "timing_model": self.timing_model,
            "ttft_ms": {"distribution": "lognormal", "median": self.ttft_ms, "sigma": self.ttft_sigma},
            "token_rate": dist(self.token_rate), "output_tokens": dist(self.output_tokens),
            "tokens_per_chunk": self.tokens_per_chunk, "models_latency_ms": dist(self.models_latency_ms),
            "models_rate_limit": {"calls": self.models_rate_limit, "window_s": self.models_rate_window,
                                  "window": "sliding", "per": "API key and API"}
            if self.models_rate_limit else None,
            "seed": self.seed,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(MockConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                            type=f.metadata["parse"], help=f"{f.metadata['help']} (default {f.default})")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of the flags ``add_arguments`` made, as ``run`` keyword arguments."""
    return {f.name: getattr(args, f.name) for f in fields(MockConfig)}
