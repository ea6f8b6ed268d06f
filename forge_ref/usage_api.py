"""``GET /v1/usage`` (the caller's) and ``GET /v1/admin/usage`` (every user's, or one's): usage rows
summed per provider, model and/or day in one SQL statement (``Store.usage_stats``), counted as a
``db_queries``.

This process's buffered rows are flushed first, so a caller sees its own requests at once; rows
buffered by other processes appear after their flush (``FORGE_USAGE_FLUSH_INTERVAL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import BadRequest
from .handlers import BaseHandler
from .sql import USAGE_DIMS

GROUPS = tuple(USAGE_DIMS)  # user, provider, model, day: the order of columns and of sorting


@dataclass(frozen=True, slots=True)
class UsageQuery:
    since: float  # unix seconds, inclusive
    until: float  # exclusive
    group_by: tuple[str, ...]
    user: int | None = None  # the admin's filter


def _instant(name: str, value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise BadRequest(f"'{name}' must be an ISO 8601 date or time, such as 2025-01-31 or 2025-01-31T12:00:00Z "
                         "(UTC unless it names an offset)", param=name, code="invalid_value") from None


def parse_query(args: dict[str, list[bytes]], *, admin: bool) -> UsageQuery:
    """``since`` (default: the beginning), ``until`` (default: no end), ``group_by`` (default
    ``provider,model``; ``user`` too for the admin) and the admin's ``user`` filter."""
    known = {"since", "until", "group_by"} | ({"user"} if admin else set())
    unknown = set(args) - known
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))[:200]}; "
                         f"known: {', '.join(sorted(known))}", code="unknown_parameter")
    values: dict[str, str] = {}
    for name, given in args.items():
        if len(given) > 1:
            raise BadRequest(f"'{name}' is given more than once", param=name, code="invalid_value")
        try:
            values[name] = given[0].decode().strip()
        except UnicodeDecodeError:
            raise BadRequest(f"'{name}' is not UTF-8", param=name, code="invalid_value") from None
    since = _instant("since", values["since"]) if values.get("since") else 0.0
    until = _instant("until", values["until"]) if values.get("until") else float("inf")
    if since >= until:
        raise BadRequest("'since' must be before 'until'", param="since", code="invalid_value")
    allowed = GROUPS if admin else GROUPS[1:]
    asked = {g.strip() for g in (values.get("group_by") or "provider,model").split(",")}
    if not asked <= set(allowed):
        raise BadRequest(f"'group_by' is a comma-separated list of {', '.join(allowed)}", param="group_by",
                         code="invalid_value")
    user = values.get("user") or None
    if user is not None and not (user.isascii() and user.isdigit() and len(user) <= 18):
        raise BadRequest("'user' must be a user id", param="user", code="invalid_value")
    return UsageQuery(since, until, tuple(g for g in allowed if g in asked), None if user is None else int(user))


class UsageHandler(BaseHandler):
    async def get(self) -> None:
        user = await self.user()
        await self.answer(user.id, parse_query(self.request.query_arguments, admin=False))

    async def answer(self, user_id: int | None, query: UsageQuery) -> None:
        await self.gw.usage.flush()
        rows = await self.gw.store.usage_stats(user_id, query.since, query.until, query.group_by)
        for row in rows:
            row["latency_p50_ms"] = round(row["latency_p50_ms"], 3)
        self.send_json({"object": "list", "data": rows})


class AdminUsageHandler(UsageHandler):
    async def get(self) -> None:
        self.require_admin()
        query = parse_query(self.request.query_arguments, admin=True)
        await self.answer(query.user, query)
