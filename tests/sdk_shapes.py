"""Checks that a translated body is what the official SDKs' own types describe, no more.

The SDKs' pydantic models accept unknown keys silently (``model_extra``) and their TypedDict
params drop them, so a golden could lean on a field the real clients never read: these helpers
make that a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pydantic


def assert_known_fields(value, path: str = "$", allowed: frozenset[str] = frozenset()) -> None:
    """Every field of a validated SDK model, at any depth, is one the SDK knows (or ``allowed``)."""
    if isinstance(value, pydantic.BaseModel):
        extra = set(value.model_extra or ()) - allowed
        assert not extra, f"{path}: fields the SDK does not know: {sorted(extra)}"
        for name in type(value).model_fields:
            assert_known_fields(getattr(value, name), f"{path}.{name}", allowed)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_known_fields(item, f"{path}[{i}]", allowed)


def drain(value):
    """Pydantic validates Iterable fields lazily: consume them so every block really is checked."""
    if isinstance(value, dict):
        return {k: drain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, Iterator)):
        return [drain(v) for v in value]
    return value


def assert_params(adapter: pydantic.TypeAdapter, body: dict) -> None:
    """``body`` validates as the SDK's request params and loses nothing doing so (TypedDicts drop
    the keys they do not know)."""
    assert drain(adapter.validate_python(body)) == body
