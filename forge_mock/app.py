"""The mock's Tornado app: the three API prefixes, ``/_mock/stats`` and ``/_mock/config``, and how
to serve it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import tornado.httpserver
import tornado.netutil
import tornado.web

from . import anthropic, gemini, images, openai
from .base import JSON_CT, MockApp
from .config import ConfigError, MockConfig, add_arguments, options


class Stats(tornado.web.RequestHandler):
    """``GET``: calls per endpoint since the start or the last ``DELETE``, which resets them, and the
    model-list rate limit's windows (so one benchmark job's calls do not limit the next one's)."""

    application: MockApp

    def get(self) -> None:
        app = self.application
        self.set_header("Content-Type", JSON_CT)
        self.finish(orjson.dumps({"calls": app.calls, "total": app.total_calls()}))

    def delete(self) -> None:
        calls = self.application.calls
        for k in calls:
            calls[k] = 0
        if self.application.models_limit is not None:
            self.application.models_limit.reset()
        self.set_header("Content-Type", JSON_CT)
        self.finish(orjson.dumps({"calls": calls, "total": 0}))


class Config(tornado.web.RequestHandler):
    """``GET``: the effective timing configuration (``MockConfig.document``), for result files."""

    def initialize(self, body: bytes) -> None:
        self.body = body

    def get(self) -> None:
        self.set_header("Content-Type", JSON_CT)
        self.finish(self.body)


def make_app(config: MockConfig | None = None, **seams: Any) -> MockApp:
    """Build the mock application. ``seams`` (``rng``, ``clock``, ``sleep``) go to ``MockApp``."""
    config = config or MockConfig()
    routes = [*images.ROUTES, *openai.ROUTES,  # images before openai's catch-all
              *anthropic.ROUTES, *gemini.ROUTES, (r"/_mock/stats", Stats),
              (r"/_mock/config", Config, {"body": orjson.dumps(config.document())})]
    return MockApp(routes, config, **seams)


async def serve(config: MockConfig, *, announce: bool = True) -> None:
    """Serve forever. Port 0 picks a free port; the announced line has the real one."""
    app = make_app(config)
    sockets = tornado.netutil.bind_sockets(config.port, config.host, backlog=1024)  # bursts of new connections
    server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=300)
    server.add_sockets(sockets)
    if announce:
        bound = sockets[0].getsockname()[1]
        print(f"mock-provider listening on http://{config.host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()


def run(**kwargs) -> None:
    """Serve until interrupted. Keyword arguments are ``MockConfig`` fields; a bad value raises
    ``ConfigError`` before anything is bound."""
    config = MockConfig(**kwargs)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> None:
    """``python -m forge_mock``: the same flags as ``forge-ref mock-provider``."""
    parser = argparse.ArgumentParser(prog="python -m forge_mock",
                                     description="Fake OpenAI/Anthropic/Gemini upstream.")
    add_arguments(parser)
    try:
        run(**options(parser.parse_args(argv)))
    except ConfigError as exc:
        parser.error(str(exc))
