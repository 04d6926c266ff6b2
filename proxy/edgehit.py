"""A fresh hit written by the server protocol itself, without an ASGI cycle.

Under uvicorn every request costs a task, a receive/send pair, ASGI messages and their checks: about as much CPU as
a bare app that answers a constant. A cache hit needs none of it: the answer is already bytes. When the parser has a
complete head, ``HitAtTheEdge`` asks the app (``ProxyApp.answer_now``) for a fresh hit in a store that answers at
once and, given one, writes it and finishes the request in place; anything else starts the ASGI task as uvicorn
would, with the head already parsed in the scope.

Only a request that uvicorn would answer on a kept-alive connection, with nothing but our bytes, is taken here:

- the head went through every check of ``proxy.limits`` first (the checks run before uvicorn's
  ``on_headers_complete``, which starts the request);
- no earlier request on the connection is still being answered (pipelining keeps its order: a request queued behind
  another is taken when it is started, after the one before it has been written);
- the connection stays open after it (HTTP/1.1, no ``Connection: close``), the transport is not applying
  backpressure, and the server adds no default fields (``serve`` turns ``Server`` and ``Date`` off);
- the app's own answer is a hit whose head it could write as uvicorn would (``proxy.hot.wire_head``).

The request is then counted, logged and timed exactly like the same hit answered through ASGI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cacheproxy.edgehit")

JOIN_BELOW = 64 * 1024  # a body up to this size is copied behind its head and sent with it in one write
AnswerNow = Callable[[Any], "tuple[bytes, bytes] | None"]


class HitAtTheEdge:
    """Mixin for uvicorn's ``HttpToolsProtocol`` (put it above the class in the bases). Uses uvicorn's own per-request
    state (``app``, ``transport``, ``flow``, ``server_state``) and its ``on_response_complete``, which arms the
    keep-alive timeout and starts a pipelined request, exactly as after a response sent through ASGI."""

    app: Any
    transport: Any
    flow: Any
    server_state: Any
    timeout_keep_alive_task: Any

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if (
            app is self.app
            and cycle.keep_alive
            and not self.flow.write_paused
            and not self.server_state.default_headers
            and not self.transport.is_closing()
        ):
            answer_now: AnswerNow | None = getattr(app, "answer_now", None)
            try:
                found = answer_now(cycle.scope) if answer_now is not None else None
            except Exception:  # inside the parser's callback an exception would become a 400: let ASGI answer
                log.exception("a hit could not be answered in place; answered through ASGI")
                found = None
            if found is not None:
                head, body = found
                if len(body) <= JOIN_BELOW:
                    self.transport.write(head + body)  # one send(2), where two writes would make two
                else:
                    self.transport.writelines((head, body))
                cycle.response_started = cycle.response_complete = True
                self.on_response_complete()  # type: ignore[attr-defined]
                return
        # A hit answered earlier in this read armed the keep-alive timeout: a request is under way again.
        self._unset_keepalive_if_required()  # type: ignore[attr-defined]
        super()._start_asgi_task(cycle, app)  # type: ignore[misc]
