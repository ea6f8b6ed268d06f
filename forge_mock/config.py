"""The mock's options, once: ``MockConfig`` fields are ``run(**kw)`` arguments and command-line flags.

``forge-ref mock-provider`` and ``python -m forge_mock`` both build their flags with
``add_arguments`` and hand ``options(args)`` to ``forge_mock.app.run``: one definition, one parser
per command. This module imports nothing heavy, so building the gateway's CLI stays cheap.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """An option value, or a combination of them, that the mock cannot serve."""


def _opt(default: Any, help: str, parse: Any = None) -> Any:
    return field(default=default, metadata={"help": help, "parse": parse})


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8001, "port to listen on (0: a free one, announced on stdout)", int)
    latency_ms: float = _opt(0.0, "delay before every answer, after counting the call", float)
    chunks: int = _opt(4, "pieces a streamed reply is split into", int)
    chunk_delay_ms: float = _opt(0.0, "delay between stream frames", float)

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.chunk_delay_ms < 0:
            raise ConfigError("delays cannot be negative")
        if self.chunks < 1:
            raise ConfigError("--chunks must be at least 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(MockConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                            type=f.metadata["parse"], help=f"{f.metadata['help']} (default {f.default})")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of the flags ``add_arguments`` made, as ``run`` keyword arguments."""
    return {f.name: getattr(args, f.name) for f in fields(MockConfig)}
