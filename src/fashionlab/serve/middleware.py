"""Pure ASGI middleware for the web app: a request-body size limit and security headers.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: the limit has to see the body while it
streams in (BaseHTTPMiddleware would hand us a request only after routing), and it is cheaper.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Reject request bodies larger than `max_body_bytes` with 413.

    Two checks, because the Content-Length header is the client's claim, not a fact: a declared
    length over the limit is refused before a byte of the body is read, and the bytes actually
    received are counted as they arrive (chunked uploads have no header; a lying one is too
    small), so nothing larger than the limit is ever buffered or spooled to disk.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, detail: str | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # The message can name the limit users set (the file size) rather than the body's,
        # which includes an allowance for multipart framing.
        self.detail = (
            detail or f"request body too large: the limit is {format_bytes(max_body_bytes)}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
                if length < 0:
                    raise ValueError
            except ValueError:
                await _send_json(send, 400, "invalid Content-Length header")
                return
            if length > self.max_body_bytes:
                await _send_json(send, 413, self.detail)
                return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the app's body reading (the form parser), so FastAPI's
                    # exception handling turns it into a normal 413 JSON response.
                    raise HTTPException(status_code=413, detail=self.detail)
            return message

        await self.app(scope, counting_receive, send)


class SecurityHeaders:
    """Headers that cost nothing: no MIME sniffing, no framing, no referrer to other sites."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.HEADERS if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def format_bytes(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} bytes"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_json(send: Send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # the unread body stays on the socket: do not reuse the connection
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
