"""An ASGI guard in front of the server: size caps and a 500 that keeps the connection.

* Request bodies above :data:`MAX_BODY_BYTES` get 413, query strings above
  :data:`MAX_QUERY_BYTES` get 414, before any route runs.
* An unexpected exception becomes a JSON 500 answer (logged with its traceback) and is *not*
  re-raised, so the server keeps the keep-alive connection open for the client's next request
  (Starlette's own error middleware re-raises, and uvicorn then drops the connection).
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["MAX_BODY_BYTES", "MAX_QUERY_BYTES", "GuardMiddleware"]

logger = logging.getLogger(__name__)

#: Largest request body accepted (bytes).
MAX_BODY_BYTES = 1 << 20
#: Largest query string accepted (bytes).
MAX_QUERY_BYTES = 256 << 10


def _body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "description": message, "detail": message}).encode()


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Pure ASGI middleware (see the module docstring).

    Parameters
    ----------
    app
        The wrapped ASGI application.
    max_body, max_query
        Caps in bytes.
    """

    def __init__(
        self, app: Any, max_body: int = MAX_BODY_BYTES, max_query: int = MAX_QUERY_BYTES
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_query = max_query

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = completed = False

        async def reply(status: int, code: str, message: str) -> None:
            body = _body(code, message)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        if len(scope.get("query_string", b"")) > self.max_query:
            await reply(414, "URITooLong", f"query string longer than {self.max_query} bytes")
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await reply(400, "BadRequest", "invalid Content-Length")
                    return
                if declared > self.max_body:
                    await reply(
                        413, "PayloadTooLarge", f"request body larger than {self.max_body} bytes"
                    )
                    return
        received = 0
        limit = self.max_body

        async def capped_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except _TooLarge:
            if not started:
                await reply(413, "PayloadTooLarge", f"request body larger than {limit} bytes")
        except Exception:
            logger.exception(
                "unexpected error answering %s %s", scope.get("method"), scope.get("path")
            )
            if completed:  # an inner handler already answered (500): keep the connection
                return
            if started:  # half a response went out: only closing the connection is honest
                raise
            await reply(500, "InternalServerError", "internal server error (logged by the server)")
