"""Anthropic's Messages API as ingress, for the kinds that do not speak it: an Anthropic request
as an OpenAI chat request, which the kind's own adapter then translates as any other.

    client --Anthropic--> to_openai --OpenAI--> the kind's adapter --provider-->

It is ``adapters/anthropic.py``'s request mapping run backwards and reads that module's tables
instead of writing them again; the answers come back through ``to_anthropic``. Anthropic-kind
providers never come here: they get the body as sent (``forge_ref.messages``).

Features OpenAI's chat API has no place for are dropped where they only tune the answer
(``thinking``, ``top_k``, ``cache_control``, a tool result's ``is_error``, earlier turns'
thinking blocks) and refused with a 400 where dropping them would change what the model is
given (documents, images inside tool results, server tools).
"""

from __future__ import annotations

import orjson

from ..errors import BadRequest
from .anthropic import TOOL_CHOICE

TOOL_CHOICES = {spec["type"]: choice for choice, spec in TOOL_CHOICE.items()}  # any -> required, ...


def _unsupported(what: str) -> BadRequest:
    return BadRequest(f"{what} cannot be translated to OpenAI chat; only anthropic-kind providers take it",
                      param="messages", code="unsupported_content")


def _blocks(content) -> list[dict]:
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise BadRequest("content must be a string or a list of content blocks", param="messages")
    return content


def _text(blocks, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if any(b.get("type") != "text" for b in _blocks(blocks)):
        raise BadRequest(f"{where} takes only text blocks", param=where)
    return "\n\n".join(b["text"] for b in blocks if b["text"])


def _image(block: dict) -> dict:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source.get("type") == "url":
        url = source["url"]
    else:
        raise _unsupported(f"an image source of type {source.get('type')!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict) -> dict:
    content = block.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        if any(b.get("type") != "text" for b in _blocks(content)):
            raise _unsupported("a tool_result with non-text content")
        content = [{"type": "text", "text": b["text"]} for b in content]
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content}


def _user(content) -> list[dict]:
    """One user turn: its tool results first (OpenAI wants them right after the calls), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out, parts = [], []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "tool_result":
            out.append(_tool_result(block))
        elif kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(block))
        else:
            raise _unsupported(f"a {kind!r} block")
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content) -> list[dict]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}]
    texts, calls = [], []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise _unsupported(f"a {kind!r} block")
    if not texts and not calls:
        return []
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tools(body: dict) -> dict:
    if not body.get("tools"):
        return {}
    tools = []
    for tool in body["tools"]:
        if tool.get("type") not in (None, "custom"):
            raise BadRequest(f"server tool {tool['type']!r} works only with anthropic-kind providers", param="tools",
                             code="unsupported_tool")
        fn = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            fn["description"] = tool["description"]
        tools.append({"type": "function", "function": fn})
    out: dict = {"tools": tools}
    choice = body.get("tool_choice")
    if choice:
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif kind in TOOL_CHOICES:
            out["tool_choice"] = TOOL_CHOICES[kind]
        else:
            raise BadRequest(f"unsupported tool_choice type: {kind!r}", param="tool_choice")
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    return out


def to_openai(body: dict) -> dict:
    """An Anthropic Messages request (validated: ``validation.messages_body``) as an OpenAI chat request."""
    messages = []
    if body.get("system"):
        messages.append({"role": "system", "content": _text(body["system"], "system")})
    for turn in body["messages"]:
        messages.extend((_user if turn["role"] == "user" else _assistant)(turn.get("content")))
    # max_completion_tokens: OpenAI's reasoning models refuse max_tokens; the other kinds read either.
    out = {"model": body["model"], "messages": messages, "max_completion_tokens": body["max_tokens"]}
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    out.update(_tools(body))
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # usage arrives only when asked for
    return out


