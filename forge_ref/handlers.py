"""Tornado handlers: thin. Authentication in ``prepare``, one ``write_error`` for every error.

Handlers receive the composed ``Gateway`` through ``initialize`` (never globals). Bodies are
streamed in (``stream_request_body``) so an oversized request is refused with 413 as soon as
its size is known, in the OpenAI error shape, instead of Tornado's bare 400.

Each counted request gets a trace (``tracing``) when something reads it; the handlers mark its
phases (``lap``), the cost points note hits, misses and costs on it, and the first flush puts
it in a ``Server-Timing`` header when that is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler, stream_request_body

from . import replay, responses, tracing, validation
from .adapters.base import Target
from .auth import display_prefix, hash_key, new_key
from .batching import Refused
from .cached_chat import CachedChat
from .crypto import mask
from .errors import (
    BadRequest,
    Forbidden,
    ForgeError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
    error_body,
)
from .lifecycle import NotReady, ShuttingDown
from .store import User

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("forge_ref.handlers")


@stream_request_body
class BaseHandler(RequestHandler):
    counted = True  # API requests count in ``requests``; /health, /ready, /_stats, /metrics do not

    def initialize(self, gw: "Gateway") -> None:
        self.gw = gw
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self.trace: tracing.Trace | tracing._NoTrace = tracing.NO_TRACE

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def prepare(self) -> None:
        if self.counted:
            self.gw.tracer.request()
            if self.gw.trace_requests:
                self.trace = tracing.begin()
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > self.gw.settings.max_body_bytes:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit is {self.gw.settings.max_body_bytes}")

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.gw.settings.max_body_bytes:
            self._too_large = True
            self._chunks = []
        elif not self._too_large:
            self._chunks.append(chunk)

    def body(self) -> bytes:
        if self._too_large:
            raise PayloadTooLarge(f"request body exceeds the limit of {self.gw.settings.max_body_bytes} bytes")
        return b"".join(self._chunks)

    def json_body(self) -> dict:
        raw = self.body()
        if not raw:
            raise BadRequest("request body is empty; send a JSON object", code="invalid_json")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("request body is not valid JSON", code="invalid_json") from None
        if not isinstance(value, dict):
            raise BadRequest("request body must be a JSON object", code="invalid_json")
        return value

    def api_key(self) -> str | None:
        auth = self.request.headers.get("Authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip() or None
        return self.request.headers.get("X-API-Key") or None

    async def user(self) -> User:
        user = await self.gw.auth.user(self.api_key())
        self.trace.lap("user")
        self.trace.note(user=user.id)
        return user

    async def owner(self) -> User:
        """The user, for a change to the account. A scoped key only uses its providers (and resets
        itself): one that could add keys or change provider keys would have no scope."""
        user = await self.user()
        if user.providers is not None:
            raise Forbidden("this key is scoped to some providers; manage the account with an unscoped key",
                            code="scoped_key")
        return user

    def require_admin(self) -> None:
        """RFC 9110: no credential is a 401 with a challenge; a credential that is not the token, a
        403. A disabled admin API is a 403 even without one: no credential could open it."""
        token = self.gw.settings.admin_token
        if not token:
            raise Forbidden("admin endpoints are disabled: set FORGE_ADMIN_TOKEN", code="admin_disabled")
        given = self.api_key()
        if given is None:
            raise Unauthorized("admin token required: send 'Authorization: Bearer <FORGE_ADMIN_TOKEN>'",
                               code="missing_admin_token")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("admin token required", code="admin_required")

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this handler implements: Tornado answers 405 for the others (its defaults)."""
        return [m for m in cls.SUPPORTED_METHODS if getattr(cls, m.lower()) is not getattr(RequestHandler, m.lower())]

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(obj))

    def flush(self, include_footers: bool = False):
        # The first flush sends the headers: the moment the response's first byte leaves.
        trace = self.trace
        if trace and trace.first_byte is None:
            trace.sent_first_byte()
            if self.gw.server_timing:
                self.set_header("Server-Timing", trace.server_timing())
        return super().flush(include_footers)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ForgeError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
            body = exc.body()
        elif isinstance(exc, HTTPError) and status_code < 500:
            code = "method_not_allowed" if status_code == 405 else None
            body = error_body(exc.log_message or self._reason, "invalid_request_error", code)
        else:
            body = error_body("internal error", "server_error", "internal_error")  # never a traceback
        self.set_header("Content-Type", "application/json")
        if status_code == 405:  # RFC 9110 (15.5.6): a 405 lists what the resource does allow
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        unread = getattr(self.request, "_body_future", None)
        if unread is not None and not unread.done():
            # Refused before the body was read (404, 405, 413): Tornado closes the connection after
            # this answer, so say so, or a keep-alive client sends its next request into a closed socket.
            self.set_header("Connection", "close")
        self.finish(body)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ForgeError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ForgeError):
            return  # expected client or upstream errors: the access log line is enough
        super().log_exception(typ, value, tb)

    def on_connection_close(self) -> None:
        self.client_gone = True
        super().on_connection_close()  # a body still arriving (cut by FORGE_BODY_TIMEOUT) ends the request


class NotFoundHandler(BaseHandler):
    counted = False

    def prepare(self) -> None:
        raise NotFound(f"no route for {self.request.method} {self.request.path}", code="unknown_route")


class OpenAPIHandler(BaseHandler):
    counted = False

    def get(self) -> None:
        from .openapi import document_bytes

        self.finish(document_bytes())


class HealthHandler(BaseHandler):
    counted = False

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """Readiness, beside the liveness of /health: 503 while draining or while a service does not answer."""

    counted = False

    async def get(self) -> None:
        reason = await self.gw.lifecycle.not_ready()
        if reason is not None:
            raise NotReady(reason)
        self.send_json({"status": "ready"})


class StatsHandler(BaseHandler):
    counted = False

    def get(self) -> None:
        self.require_admin()
        self.set_header("X-Forge-Pid", str(os.getpid()))  # which process answered (multi-process tests)
        self.send_json(dict(self.gw.tracer.snapshot(self.gw.layers), cache_backend=self.gw.settings.cache_backend))

    def delete(self) -> None:
        self.require_admin()
        self.gw.tracer.reset()
        self.send_json(self.gw.tracer.snapshot(self.gw.layers))


class MetricsHandler(BaseHandler):
    counted = False

    def get(self) -> None:
        from .metrics import render

        self.require_admin()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(render(self.gw.tracer.snapshot(self.gw.layers)))


# --- users --------------------------------------------------------------------------------------


def _user_json(user: User) -> dict:
    return {"id": user.id, "name": user.name, "key_prefix": user.key_prefix}


class UsersHandler(BaseHandler):
    async def post(self) -> None:
        self.require_admin()
        name = validation.user_name(self.json_body())
        key = new_key()
        user = await self.gw.store.create_user(name, hash_key(key), display_prefix(key))
        self.send_json(dict(_user_json(user), api_key=key), status=201)


class MeHandler(BaseHandler):
    async def get(self) -> None:
        self.send_json(_user_json(await self.user()))

    async def patch(self) -> None:
        user = await self.owner()
        name = validation.user_name(self.json_body())
        if not await self.gw.store.update_user(user.id, name):
            raise NotFound("user no longer exists")
        keys = await self.gw.store.forge_keys(user.id)
        await self.gw.invalidator.user_updated(user.id, *(k.key_hash for k in keys))
        self.send_json(_user_json(replace(user, name=name)))

    async def delete(self) -> None:
        user = await self.owner()
        keys = await self.gw.store.forge_keys(user.id)  # before they go with the user: what caches hold
        await self.gw.store.delete_user(user.id)
        await self.gw.invalidator.user_deleted(user.id, *(k.key_hash for k in keys))
        self.set_status(204)
        self.finish()


class ResetKeyHandler(BaseHandler):
    """A new secret for the key that calls (its name and scope stay)."""

    async def post(self) -> None:
        user = await self.user()
        key = new_key()
        updated = await self.gw.store.reset_forge_key(user.id, user.key_hash, hash_key(key), display_prefix(key))
        if updated is None:
            raise NotFound("this key no longer exists")
        await self.gw.invalidator.forge_key_changed(user.key_hash)
        self.send_json(dict(_user_json(replace(user, key_prefix=updated.key_prefix)), api_key=key))


# --- provider keys ------------------------------------------------------------------------------


class ProviderKeysHandler(BaseHandler):
    async def get(self) -> None:
        user = await self.user()
        rows = await self.gw.store.provider_keys(user.id)
        # Masking needs the plaintext; this listing is rare and not on the proxy path.
        data = [validation.provider_json(row, mask(self.gw.crypto.decrypt(row.encrypted_key).reveal())) for row in rows]
        self.send_json({"object": "list", "data": data})

    async def post(self) -> None:
        user = await self.owner()
        spec = await validation.new_provider_key(self.json_body(), self.gw.settings.allow_private_upstreams)
        row = await self.gw.store.add_provider_key(user.id, spec.provider, spec.kind, self.gw.crypto.encrypt(spec.api_key),
                                                   spec.base_url, spec.model_mapping, spec.cache_ttl)
        await self.gw.invalidator.provider_keys_changed(user.id)
        self.send_json(validation.provider_json(row, mask(spec.api_key)), status=201)


class ProviderKeyHandler(BaseHandler):
    async def put(self, provider: str) -> None:
        user = await self.owner()
        provider = provider.lower()
        changes, api_key = await validation.provider_key_changes(self.json_body(), self.gw.settings.allow_private_upstreams)
        if api_key is not None:
            changes["encrypted_key"] = self.gw.crypto.encrypt(api_key)
        row = await self.gw.store.update_provider_key(user.id, provider, changes)
        if row is None:
            raise NotFound(f"no provider key named {provider!r}", code="provider_not_found")
        await self.gw.invalidator.provider_keys_changed(user.id)
        shown = mask(api_key) if api_key is not None else mask(self.gw.crypto.decrypt(row.encrypted_key).reveal())
        self.send_json(validation.provider_json(row, shown))

    async def delete(self, provider: str) -> None:
        user = await self.owner()
        if not await self.gw.store.delete_provider_key(user.id, provider.lower()):
            raise NotFound(f"no provider key named {provider!r}", code="provider_not_found")
        await self.gw.invalidator.provider_keys_changed(user.id)
        self.set_status(204)
        self.finish()


# --- the proxy ----------------------------------------------------------------------------------


class ModelsHandler(BaseHandler):
    async def get(self) -> None:
        user = await self.user()
        service = await self.gw.services.get(user.id)
        self.trace.lap("service")
        data = await self.gw.models.list(service, user.providers)
        self.trace.lap("models")
        self.send_json({"object": "list", "data": data})


class ProxyHandler(BaseHandler):
    """Shared by chat and embeddings: authenticate, route, decrypt, translate, forward."""

    client_gone = False
    recorded = False  # this request's usage row is written

    def prepare(self) -> None:
        super().prepare()
        self.gw.lifecycle.track(asyncio.current_task())  # cut, if still running at the shutdown timeout

    def _body(self, validate) -> dict:
        """The JSON body, validated; the time since ``prepare`` was spent receiving it."""
        self.trace.lap("body")
        body = validate(self.json_body())
        self.trace.lap("parse")
        return body

    async def _target(self, body: dict) -> tuple[User, Any, Target]:
        user = await self.user()
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise BadRequest("'model' is required: a string such as 'openai/gpt-4o-mini'", param="model",
                             code="missing_model")
        trace = self.trace
        service = await self.gw.services.get(user.id)
        trace.lap("service")
        row, upstream_model = service.route(model)
        if user.providers is not None and row.provider not in user.providers:  # before any decryption or call
            raise Forbidden(f"this key may not use provider {row.provider!r}", code="provider_not_allowed",
                            param="model")
        target = Target(row.base_url, service.key(row).reveal(), upstream_model, model)
        # The key layer hit when this request decrypted nothing (lazily now, or eagerly at a build).
        trace.layer("key", "decryptions" not in trace.costs)
        trace.lap("key")
        trace.note(provider=row.provider, model=upstream_model, stream=body.get("stream") is True)
        return user, row, target

    def _adapter(self, kind: str):
        adapter, client, owned = self.gw.adapters.get(kind)
        self.trace.layer("adapter", not owned)
        return adapter, client, owned

    @staticmethod
    def _translate(fn, *args):
        """Run an adapter translation; a field of the wrong type (``"tools": 5``) is the client's 400, not a 500."""
        try:
            return fn(*args)
        except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:
            raise BadRequest(f"the request has a field of the wrong type or shape for this provider "
                             f"({type(exc).__name__})", code="invalid_request_body") from None

    async def _send(self, client, adapter, req, user: User, row: Any, target: Target, started: float) -> bytes:
        """One upstream call (not streaming); a failure status is recorded and raised mapped."""
        self.trace.lap("translate")
        resp = await self._unless_cut(client.send(req))
        self.trace.lap("upstream")
        if resp.status >= 300:  # a 3xx is not followed (SSRF) and not a success
            self._record(user, row, target, resp.status, started)
            raise adapter.error(resp.status, resp.body, resp.headers)
        return resp.body

    async def _unless_cut(self, pending: Any) -> Any:
        """Await an upstream call; if the shutdown cut cancels it, answer 503 ``shutting_down``."""
        try:
            return await pending
        except asyncio.CancelledError:
            if not self.gw.lifecycle.absorb_cut():
                raise
            raise ShuttingDown() from None

    def _record(self, user: User, row: Any, target: Target, status: int, started: float,
                prompt: int | None = None, completion: int | None = None) -> None:
        self.recorded = True
        self.gw.usage.record(user.id, row.provider, target.model, status, prompt, completion,
                             (time.perf_counter() - started) * 1000)

    @contextlib.contextmanager
    def _upstream_failures(self, user: User, row: Any, target: Target, started: float):
        """From the upstream call on, a failure (timeout, refused, a stream that never opens, an
        unusable answer) is a usage row with the status the client gets, unless one is written."""
        try:
            yield
        except ForgeError as exc:
            if not self.recorded:
                self._record(user, row, target, exc.status, started)
            raise


class ChatHandler(CachedChat, ProxyHandler):
    """OpenAI's chat completions; the hooks (``validate``, ``codec``, ``_ingress``, ``_answer``,
    ``_cache_scope``) let another API's shape share the path (``messages.MessagesHandler``).
    Requests that opt in to the response cache go through ``CachedChat``."""

    validate = staticmethod(validation.chat_body)
    codec = replay.CHAT  # the API's shape for the response cache: assembling and replaying answers
    response_cache = True  # False: a path that shares this one but whose answers the codecs cannot replay

    async def post(self) -> None:
        started = time.perf_counter()
        body = self._body(self.validate)
        spec = responses.take_spec(body)
        user, row, target = await self._target(body)
        layer = self.gw.responses if self.response_cache else None
        policy = layer.policy(self.request.headers.get("Cache-Control"), spec, row) if layer is not None else None
        if policy is not None:
            await self._through_cache(layer, policy, body, user, row, target, started)
            return
        self._cache_state(responses.BYPASS)
        adapter, client, owned = self._adapter(row.kind)
        try:
            adapter, body = self._ingress(adapter, row, body)
            if body.get("stream"):
                self.gw.streams.acquire(user.id)  # 429 over FORGE_MAX_STREAMS_PER_KEY, before any upstream call
                try:
                    await self._stream(adapter, client, body, user, row, target, started)
                finally:
                    self.gw.streams.release(user.id)
            else:
                req = self._translate(adapter.chat_request, target, body)
                with self._upstream_failures(user, row, target, started):
                    data = await self._send(client, adapter, req, user, row, target, started)
                    out, prompt, completion = self._answer(adapter, target, data)
                self._record(user, row, target, 200, started, prompt, completion)
                self.trace.lap("respond")
                self.finish(out)
        finally:
            if owned:
                client.close()

    def _ingress(self, adapter, row, body: dict) -> tuple[Any, dict]:
        """The adapter and body the request goes through: here the kind's own, as sent."""
        return adapter, body

    def _answer(self, adapter, target: Target, data: bytes) -> tuple[bytes, int | None, int | None]:
        """The upstream answer as the client's response body, with its prompt and completion tokens."""
        out = adapter.chat_response(target, data)
        usage = out.get("usage") if isinstance(out.get("usage"), dict) else {}
        return orjson.dumps(out), usage.get("prompt_tokens"), usage.get("completion_tokens")

    def _cache_scope(self) -> Any:
        """What besides the body makes answers differ (the API's shape): part of the cache key."""
        return self.codec.scope

    def _open_sse(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        # Nagle would hold each chunk after the first on a keep-alive connection until the stream
        # ends (measured: 30 ms); Tornado resets nodelay between requests, so set it per stream.
        self.request.connection.stream.set_nodelay(True)
        self.set_header("X-Accel-Buffering", "no")

    async def _stream(self, adapter, client, body, user, row, target, started) -> None:
        trace = self.trace
        translator = self._translate(adapter.chat_stream, target, body)
        req = self._translate(adapter.chat_request, target, body)
        trace.lap("translate")
        with self._upstream_failures(user, row, target, started):
            stream = await self._unless_cut(client.open_stream(req))
            trace.point("upstream_headers")
            if stream.status >= 300:
                data = await stream.read_all()
                self._record(user, row, target, stream.status, started)
                raise adapter.error(stream.status, data, stream.headers)
        self._open_sse()
        status = 200
        first = True
        cut = False
        try:
            async for chunk in stream:
                if first:  # Server-Timing on a stream: up to the first byte
                    trace.lap("upstream")
                    first = False
                frames = translator.feed(chunk)
                if frames:
                    self.write(b"".join(frames))
                    await self.flush()
                if self.client_gone:
                    break
            else:
                self.write(b"".join(translator.close()))
        except UpstreamError as exc:
            # Headers are sent: the failure travels inside the stream, then the stream ends cleanly.
            status = exc.status
            self.write(self.codec.failure(exc))
        except StreamClosedError:
            self.client_gone = True
        except asyncio.CancelledError:
            if not self.gw.lifecycle.absorb_cut():
                raise
            # Still running at the shutdown timeout: end the stream the way an upstream failure does.
            cut, status = True, ShuttingDown.status
            self.write(self.codec.failure(ShuttingDown()))
        if self.client_gone or cut:
            stream.close()  # stop reading (and paying for) a generation nobody receives
        if self.client_gone:
            status = 499
        trace.point("upstream_end")
        result = translator.result
        self._record(user, row, target, status, started, result.prompt_tokens, result.completion_tokens)
        if not self.client_gone:
            self.finish()


class EmbeddingsHandler(ProxyHandler):
    async def post(self) -> None:
        started = time.perf_counter()
        body = self._body(validation.embeddings_body)
        user, row, target = await self._target(body)
        batcher = self.gw.embeddings_batcher
        share = batcher.join(user.id, row, target, body, self.trace) if batcher is not None else None
        if share is None:
            out = await self._alone(body, user, row, target, started)
        else:
            out = await self._batched(share, user, row, target, started)
        usage = out.get("usage") if isinstance(out.get("usage"), dict) else {}
        self._record(user, row, target, 200, started, usage.get("prompt_tokens"), None)
        self.trace.lap("respond")
        self.finish(orjson.dumps(out))

    async def _alone(self, body: dict, user: User, row: Any, target: Target, started: float) -> dict:
        adapter, client, owned = self._adapter(row.kind)
        try:
            req = self._translate(adapter.embeddings_request, target, body)
            with self._upstream_failures(user, row, target, started):
                data = await self._send(client, adapter, req, user, row, target, started)
                return adapter.embeddings_response(target, data, body)
        finally:
            if owned:
                client.close()

    async def _batched(self, share, user: User, row: Any, target: Target, started: float) -> dict:
        """This request's part of a merged call (``batching``); the wait for it is the ``batch`` phase."""
        with self._upstream_failures(user, row, target, started):
            try:
                out = await share
            except Refused as refused:
                self._record(user, row, target, refused.status, started)
                raise refused.error from None
        self.trace.lap("upstream")
        return out


def routes(gw: "Gateway") -> list:
    from .keys_api import KeyHandler, KeysHandler
    from .legacy import CompletionsHandler, ImageEditsHandler, ImagesHandler  # they build on ChatHandler
    from .messages import CountTokensHandler, MessagesHandler  # it builds on ChatHandler
    from .usage_api import AdminUsageHandler, UsageHandler

    kw = {"gw": gw}
    return [
        (r"/v1/chat/completions", ChatHandler, kw),
        (r"/v1/messages", MessagesHandler, kw),
        (r"/v1/messages/count_tokens", CountTokensHandler, kw),
        (r"/v1/embeddings", EmbeddingsHandler, kw),
        (r"/v1/completions", CompletionsHandler, kw),
        (r"/v1/images/generations", ImagesHandler, kw),
        (r"/v1/images/edits", ImageEditsHandler, kw),
        (r"/v1/models", ModelsHandler, kw),
        (r"/v1/users", UsersHandler, kw),
        (r"/v1/users/me", MeHandler, kw),
        (r"/v1/users/me/reset-key", ResetKeyHandler, kw),
        (r"/v1/users/me/keys", KeysHandler, kw),
        (r"/v1/users/me/keys/(?P<key_id>[^/]+)", KeyHandler, kw),
        (r"/v1/usage", UsageHandler, kw),
        (r"/v1/admin/usage", AdminUsageHandler, kw),
        (r"/v1/provider-keys", ProviderKeysHandler, kw),
        (r"/v1/provider-keys/([^/]+)", ProviderKeyHandler, kw),
        (r"/health", HealthHandler, kw),
        (r"/ready", ReadyHandler, kw),
        (r"/_stats", StatsHandler, kw),
        (r"/metrics", MetricsHandler, kw),
        (r"/openapi.json", OpenAPIHandler, kw),
    ]
