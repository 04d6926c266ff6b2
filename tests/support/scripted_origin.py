"""A scripted in-memory origin behind the origin port (``proxy.origin.Origin``): no sockets, no real time.

Each ``send`` takes the next scripted ``Reply`` (or the standing one), records the request as the driver sent it, and
answers with a response that follows the port's contract (hop-by-hop fields removed, body whole when it fits in
``read_limit``, else streamed). A reply can raise an upstream error instead, or be held until the test releases it
(``Reply.gate``), so races between a fetch and other requests are driven step by step.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from proxy.clock import FakeClock
from proxy.errors import UpstreamError
from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.origin import RequestBody
from proxy.rfc.age import format_http_date
from proxy.rfc.storable import strip_hop_by_hop


@dataclass
class Reply:
    """One scripted answer. ``date=True`` adds a ``Date`` of the fake clock's now when the response is sent."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    error: UpstreamError | None = None
    gate: asyncio.Event | None = None  # the reply waits until the test sets it
    date: bool = True


@dataclass
class ScriptedResponse:
    """An ``OriginResponse``; ``released`` says whether the driver gave it back."""

    head: ResponseHead
    elapsed: float
    body: bytes | None
    _full: bytes
    complete: bool = False
    released: bool = False

    async def stream(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._full), 4):
            yield self._full[start : start + 4]
        self.complete = True
        await self.release()

    async def release(self) -> None:
        self.released = True


@dataclass
class ScriptedOrigin:
    """The origin port, scripted. ``requests``: every request the driver sent, in order."""

    clock: FakeClock
    read_limit: int = 1024 * 1024
    latency: float = 0.0  # fake seconds each exchange takes (the clock advances by it)
    standing: Reply | None = None  # answered when the script is empty (None: an unscripted request fails the test)
    requests: list[RequestHead] = field(default_factory=list)
    responses: list[ScriptedResponse] = field(default_factory=list)
    _script: deque[Reply] = field(default_factory=deque)

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    @property
    def pending(self) -> int:
        return len(self._script)

    async def send(
        self, request: RequestHead, body: RequestBody = None, *, read_limit: int | None = None
    ) -> ScriptedResponse:
        self.requests.append(request)
        if self._script:
            reply = self._script.popleft()
        elif self.standing is not None:
            reply = self.standing
        else:
            raise AssertionError(f"unscripted request to the origin: {request.method} {request.target}")
        if reply.gate is not None:
            await reply.gate.wait()
        if self.latency:
            self.clock.advance(self.latency)
        if reply.error is not None:
            raise reply.error
        fields = list(reply.headers)
        if reply.date and not any(name.lower() == "date" for name, _ in fields):
            fields.append(("Date", format_http_date(self.clock.now())))
        head = ResponseHead(reply.status, strip_hop_by_hop(Headers(fields)))
        full = b"" if request.method == "HEAD" or reply.status in (204, 304) else reply.body
        limit = self.read_limit if read_limit is None else read_limit
        whole = full if len(full) <= limit else None
        response = ScriptedResponse(head, self.latency, whole, full, complete=whole is not None)
        self.responses.append(response)
        return response

    def all_released(self) -> bool:
        """Whether every response the driver received was given back (the port's contract)."""
        return all(response.released or response.complete for response in self.responses)
