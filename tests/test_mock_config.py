"""forge_mock.config: one option table for both entry points, parsed, checked and documented."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from forge_mock.config import ConfigError, MockConfig, Range, add_arguments, options

README = (Path(__file__).parents[1] / "README.md").read_text()


def parse(*argv: str) -> MockConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return MockConfig(**options(parser.parse_args(argv)))


def test_defaults_leave_the_timing_model_off():
    c = parse()
    assert c == MockConfig() and not c.timing_model
    assert c.document() == {
        "latency_ms": 0.0, "chunks": 4, "chunk_delay_ms": 0.0, "timing_model": False,
        "ttft_ms": {"distribution": "lognormal", "median": 0.0, "sigma": 0.0},
        "token_rate": None, "output_tokens": None, "tokens_per_chunk": 1,
        "models_latency_ms": None, "models_rate_limit": None, "seed": 0}


def test_ranges_parse_as_low_high_or_one_fixed_value():
    c = parse("--ttft-ms", "400", "--ttft-sigma", "0.6", "--token-rate", "50-100", "--output-tokens", "250",
              "--tokens-per-chunk", "5", "--models-latency-ms", "300 - 800", "--models-rate-limit", "10",
              "--models-rate-window", "30", "--seed", "42")
    assert c.token_rate == Range(50.0, 100.0) and c.output_tokens == Range(250, 250)
    assert isinstance(c.output_tokens.low, int) and c.models_latency_ms == Range(300.0, 800.0)
    assert c.timing_model
    assert c.document() == {
        "latency_ms": 0.0, "chunks": 4, "chunk_delay_ms": 0.0, "timing_model": True,
        "ttft_ms": {"distribution": "lognormal", "median": 400.0, "sigma": 0.6},
        "token_rate": {"distribution": "uniform", "low": 50.0, "high": 100.0},
        "output_tokens": {"distribution": "uniform", "low": 250, "high": 250},
        "tokens_per_chunk": 5,
        "models_latency_ms": {"distribution": "uniform", "low": 300.0, "high": 800.0},
        "models_rate_limit": {"calls": 10, "window_s": 30.0, "window": "sliding", "per": "API key and API"},
        "seed": 42}


def test_keyword_arguments_take_tuples_and_numbers_for_ranges():
    c = MockConfig(token_rate=(50, 100), output_tokens=300)
    assert c.token_rate == Range(50, 100) and c.output_tokens == Range(300, 300)


@pytest.mark.parametrize("argv", [["--token-rate", "fast"], ["--output-tokens", "1.5"],
                                  ["--token-rate", "-5"], ["--output-tokens", "10-"]])
def test_unparseable_ranges_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2 and "is not N or LOW-HIGH" in capsys.readouterr().err


@pytest.mark.parametrize("kw, message", [
    ({"token_rate": (100, 50)}, "--token-rate 100-50: LOW cannot be above HIGH"),
    ({"token_rate": 0}, "must be positive"),
    ({"output_tokens": 0}, "must be positive"),
    ({"tokens_per_chunk": 0}, "--tokens-per-chunk must be at least 1"),
    ({"ttft_sigma": -1}, "cannot be negative"),
    ({"models_rate_limit": 5, "models_rate_window": 0}, "--models-rate-window must be positive"),
    ({"ttft_ms": 300, "chunk_delay_ms": 10}, "--chunk-delay-ms paces streams without the timing model"),
])
def test_impossible_combinations_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        MockConfig(**kw)


def test_every_flag_has_help_and_a_place_in_the_readme():
    for f in fields(MockConfig):
        flag = "--" + f.name.replace("_", "-")
        assert f.metadata["help"] and flag in README, flag
