"""Provider adapters by kind, and the ``adapters`` layer: shared instances or one per request."""

from __future__ import annotations

import importlib
from typing import Callable

from ..tracing import Tracer
from ..upstream import UpstreamClient
from .base import Adapter

KINDS = {"openai": "OpenAIAdapter", "anthropic": "AnthropicAdapter", "gemini": "GeminiAdapter"}
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


def adapter_class(kind: str) -> type:
    return getattr(importlib.import_module(f".{kind}", __package__), KINDS[kind])


class AdapterRegistry:
    """With the layer on, one stateless adapter per kind and the one shared upstream client.

    With it off, every request builds its adapter and a fresh upstream client (and so a new
    connection pool), the pattern the layer exists to avoid; the caller closes it afterwards.
    """

    def __init__(self, *, shared: bool, upstream: UpstreamClient,
                 make_upstream: Callable[[], UpstreamClient], tracer: Tracer) -> None:
        self.shared = shared
        self.upstream = upstream
        self._make_upstream = make_upstream
        self._tracer = tracer
        self._classes = {kind: adapter_class(kind) for kind in KINDS}
        self._instances = {kind: cls() for kind, cls in self._classes.items()} if shared else {}

    def get(self, kind: str) -> tuple[Adapter, UpstreamClient, bool]:
        """(adapter, client, owned): close ``client`` after the request when ``owned``."""
        if self.shared:
            return self._instances[kind], self.upstream, False
        self._tracer.count("adapters_built")
        return self._classes[kind](), self._make_upstream(), True
