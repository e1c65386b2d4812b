"""Cancel a request's handler when its client goes away before the answer, so its queued images are never decoded."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CancelOnDisconnect:
    """ASGI middleware: once the body is read, a client disconnect before the response is sent cancels the handler."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the handler beside a watcher of the connection; whichever ends first decides."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read, answered = asyncio.Event(), asyncio.Event()

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_read.set()
            return message

        async def tracked_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered.set()

        handler = asyncio.ensure_future(self.app(scope, tracked_receive, tracked_send))
        watcher = asyncio.ensure_future(_client_gone(body_read, receive))
        await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not handler.done() and not answered.is_set():
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
            return
        watcher.cancel()
        await handler


async def _client_gone(body_read: asyncio.Event, receive: Receive) -> None:
    """Return when the server reports the client disconnected (or the response completed), after the body is read."""
    await body_read.wait()
    while (await receive())["type"] != "http.disconnect":
        pass
