"""The baseline forge-ref is held against: the same Tornado and upstream client, nothing else.

No authentication, no database, no translation: ``POST /v1/chat/completions`` (and
``/v1/embeddings``) is forwarded as is to ``UPSTREAM + /chat/completions`` over the shared
client from ``forge_ref.upstream.make_upstream``, and the answer is returned as is. What
forge-ref costs above this is what its own work costs.

    python -m benchmarks.bare_proxy --port 8002 --upstream http://127.0.0.1:8001/openai/v1 --client curl [--loop uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError

from forge_ref.adapters.base import UpstreamRequest
from forge_ref.app import run_on_loop
from forge_ref.settings import Settings
from forge_ref.upstream import CLIENTS, make_upstream

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class Forward(tornado.web.RequestHandler):
    def initialize(self, upstream, base: str, path: str) -> None:
        self.upstream = upstream
        self.url = base + path

    async def post(self) -> None:
        headers = {"Content-Type": "application/json"}
        auth = self.request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth
        req = UpstreamRequest("POST", self.url, headers, self.request.body)
        if b'"stream": true' in self.request.body or b'"stream":true' in self.request.body:
            stream = await self.upstream.open_stream(req)
            # Without TCP_NODELAY, Nagle + the client's delayed ACK hold small SSE frames on a
            # keep-alive connection until the stream ends (measured: every frame at the end).
            self.request.connection.stream.set_nodelay(True)
            self.set_status(stream.status)
            self.set_header("Content-Type", stream.headers.get("content-type", "text/event-stream"))
            try:
                async for chunk in stream:
                    self.write(chunk)
                    await self.flush()
            except StreamClosedError:
                stream.close()
                return
            self.finish()
            return
        resp = await self.upstream.send(req)
        self.set_status(resp.status)
        for name, value in resp.headers.items():
            if name not in _HOP_BY_HOP and name in ("content-type", "retry-after"):
                self.set_header(name, value)
        self.finish(resp.body)


class Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"status": "ok"})


def make_app(upstream, base: str) -> tornado.web.Application:
    base = base.rstrip("/")
    kw = {"upstream": upstream, "base": base}
    return tornado.web.Application([
        (r"/v1/chat/completions", Forward, dict(kw, path="/chat/completions")),
        (r"/v1/embeddings", Forward, dict(kw, path="/embeddings")),
        (r"/health", Health),
    ], log_function=lambda handler: None, compress_response=False)


async def serve(host: str, port: int, upstream_url: str, client: str) -> None:
    upstream = make_upstream(client, max_connections=200, connect_timeout=5.0, read_timeout=120.0)
    server = HTTPServer(make_app(upstream, upstream_url), idle_connection_timeout=300)
    server.listen(port, host)
    print(f"bare-proxy listening on http://{host}:{port} -> {upstream_url} ({client})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    upstream.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bare_proxy", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8002)
    p.add_argument("--upstream", required=True, help="upstream base URL, e.g. http://127.0.0.1:8001/openai/v1")
    p.add_argument("--client", choices=sorted(CLIENTS), default="curl")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default=Settings.event_loop,
                   help="event loop (default: forge-ref's own default, so the two are compared on the same loop)")
    a = p.parse_args(argv)
    run_on_loop(a.loop, serve(a.host, a.port, a.upstream, a.client))


if __name__ == "__main__":
    main()
