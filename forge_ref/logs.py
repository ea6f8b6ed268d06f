"""Logging: the structured access log, and the guarantee that no secret reaches a log line.

Access log (``FORGE_ACCESS_LOG=1``, off by default): one JSON object per request on the logger
``forge_ref.access`` at info level::

    {"rid": "2f1a-1c", "method": "POST", "path": "/v1/chat/completions", "status": 200, "ms": 1.42,
     "user": 7, "provider": "openai", "model": "gpt-4o-mini", "stream": false,
     "cache": {"user": "hit", "service": "hit", "key": "hit", "adapter": "hit"},
     "costs": {"upstream_requests": 1},
     "phases_ms": {"body": 0.01, "parse": 0.01, "user": 0.004, "service": 0.002, "key": 0.003,
                   "translate": 0.02, "upstream": 0.61, "respond": 0.03}}

Everything after ``ms`` is the request's trace (``tracing.Trace``): which layers hit or missed,
what this request itself cost, and how long each phase took (streams add ``at_ms`` with the
moments the upstream headers and the upstream end arrived). Measured cost: about 15 us per
request with the line written to a file (about 4% of a proxied request's CPU); off, no trace
is made and nothing is formatted.

Secrets: forge-ref never formats a key into a message, but libraries may (Tornado's curl client
logs every request header at debug level; Tornado's HTTP parser quotes a malformed header
value). ``configure`` therefore keeps ``tornado.curl_httpclient`` at info or above, and puts a
redacting filter on the root handlers that masks bearer tokens, Forge keys and ``sk-`` keys in
every record except the access log's own (which holds none by construction).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from typing import Any

import orjson

access = logging.getLogger("forge_ref.access")

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_ids = itertools.count(1)


def request_id() -> str:
    """Unique per process and request, cheap (no randomness): ``<pid hex>-<counter hex>``."""
    return f"{os.getpid():x}-{next(_ids):x}"


def access_line(handler: Any) -> None:
    """Tornado ``log_function``: one JSON line per request (5xx at warning level)."""
    status = handler.get_status()
    level = logging.WARNING if status >= 500 else logging.INFO
    if not access.isEnabledFor(level):
        return
    req = handler.request
    line = {"rid": None, "method": req.method, "path": req.path, "status": status,
            "ms": round(1000 * req.request_time(), 2)}
    trace = getattr(handler, "trace", None)
    if trace:
        line.update(trace.log_fields())
    if line["rid"] is None:
        line["rid"] = request_id()
    access.log(level, orjson.dumps(line).decode())


# --- redaction ----------------------------------------------------------------------------------

_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;]+"), r"\1\2[redacted]"),
    (re.compile(r"(?i)\b(x-api-key|x-goog-api-key|api[-_]?key|authorization|password|secret)"
                r"(\"?'?\s*[:=]\s*\"?'?)(?!\[redacted\])[^\s'\",;}]+"), r"\1\2[redacted]"),
    (re.compile(r"forge-[A-Za-z0-9_\-]{8,}"), "forge-[redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-[redacted]"),
]


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactSecrets(logging.Filter):
    """Masks credentials in a record's final message (and its traceback text) before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == access.name:
            return True
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure(level: str) -> None:
    """Root logging for ``forge-ref serve``: the format, the level, and the secret guards."""
    logging.basicConfig(level=level.upper(), format=_FORMAT)
    # At debug level Tornado's curl client logs every header it sends, Authorization included.
    curl_log = logging.getLogger("tornado.curl_httpclient")
    if curl_log.getEffectiveLevel() < logging.INFO:
        curl_log.setLevel(logging.INFO)
    # Tornado reports each client's fault at info level (a body timeout, a malformed request): a line
    # per connection under a flood of them. Like nginx (its client timeouts are info, its default
    # level error), forge-ref shows them at debug only; the server's own warnings are throttled.
    general = logging.getLogger("tornado.general")
    if general.getEffectiveLevel() < logging.WARNING and logging.getLogger().level > logging.DEBUG:
        general.setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
