"""The chat server's outer wall: an ASGI middleware in front of Gradio's app.

- Host: a server bound to loopback answers only requests whose Host header names loopback
  (`127.0.0.1`, `localhost`, `[::1]`, with any port). A page on another site that maps its own
  name to 127.0.0.1 (DNS rebinding) gets 421 and cannot read the documents or drive the chat.
- Origin: a request that can change something (any method but GET, HEAD, OPTIONS) sent by a
  browser from another origin than the page's own is refused (403). Clients that send no Origin
  (httpx, curl, the Python client) are not browsers run by another site and pass.
- Files by address: a JSON request naming a file by a web address or a data: URL (a Gradio
  FileData whose `path` is one) is refused (400) before Gradio would download it: the
  server takes files only as uploads.
- Content-Security-Policy on every response: the page may load images, frames, scripts, styles
  and connections from itself only (images also from data: and blob:, which fetch nothing), so
  markup that slipped through escaping still cannot reach any other address.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = "; ".join(
    [
        "default-src 'self'",
        # Gradio's page starts from an inline script and compiles templates at run time
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MAX_JSON_BYTES = 8 * 1024 * 1024  # a chat request is a few KiB; larger JSON is refused
_URL_SCHEMES = ("http:", "https:", "ftp:", "file:", "data:", "blob:", "ws:", "wss:", "//")


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address (no port) is only reachable from this machine."""
    host = host.strip().lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> str:
    """The host of a Host header or an origin's netloc, without its port."""
    value = value.strip()
    if value.startswith("["):  # [::1]:7860
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def names_a_web_file(data: Any) -> bool:
    """Whether a decoded JSON value holds, anywhere inside it, a file entry (an object with a
    `path`, which is what Gradio reads or downloads; its `url` is the server's own link to an
    upload) whose path is a web address or inline data."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and path.strip().lower().startswith(_URL_SCHEMES):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Guard:
    """The middleware (see the module docstring). `loopback`: the server listens on loopback
    only, so Host headers are checked."""

    def __init__(self, app: ASGIApp, loopback: bool = True) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        bad_host = self.loopback and not is_loopback_host(split_host(host))
        origin = headers.get("origin")
        if scope["type"] == "websocket":  # refused with a close, an HTTP answer is no reply here
            cross = origin is not None and urlsplit(origin).netloc.lower() != host.lower()
            if bad_host or cross:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if bad_host:
            await _refuse(send, 421, "This ragchat server answers only at 127.0.0.1 or localhost.")
            return
        method = scope.get("method", "GET")
        if origin is not None and method not in SAFE_METHODS:
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != host.lower():
                await _refuse(send, 403, "Requests from another site are refused.")
                return
        if method not in SAFE_METHODS and "json" in headers.get("content-type", ""):
            body, more = await _read_body(receive, MAX_JSON_BYTES)
            if more:
                await _refuse(send, 413, "Request too large.")
                return
            try:
                data = json.loads(body or b"null")
            except (ValueError, RecursionError):
                data = None  # not JSON after all: Gradio answers it
            if names_a_web_file(data):
                await _refuse(
                    send,
                    400,
                    "Files are taken only as uploads, never by a web address: upload the file.",
                )
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, _with_csp(send))


def _with_csp(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if k.lower() != b"content-security-policy"
            ]
            headers.append((b"content-security-policy", CSP.encode()))
            headers.append((b"x-content-type-options", b"nosniff"))
            headers.append((b"referrer-policy", b"no-referrer"))
            message["headers"] = headers
        await send(message)

    return wrapped


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, up to `limit` bytes; True when there was more."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then the client's own messages (its disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"content-security-policy", CSP.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
