"""Bounds on what concurrent uploads may hold: a memory budget for decodes, a cap on waiting
requests, and a deadline for receiving a request (against connections that trickle)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

from fastapi import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from fashionlab.allocator import release_freed_memory

# Decodes at once may hold this much; one image at the default limits needs at most 320 MB.
DEFAULT_DECODE_BUDGET_BYTES = 640 * 1024 * 1024
# Predictions waiting for the budget (or the model) at once; more are answered 503 at once.
DEFAULT_MAX_WAITING = 16
# A request waiting longer than this for the budget is answered 503 (retry later).
WAIT_SECONDS = 30.0
# A decode this large is "large": one at a time, and its freed pages go back to the OS after.
RELEASE_ABOVE_BYTES = 32 * 1024 * 1024


class DecodeBudget:
    """A weighted semaphore over bytes: `reserve(n)` waits until n bytes fit in the budget."""

    def __init__(self, budget_bytes: int, wait_seconds: float = WAIT_SECONDS) -> None:
        self.budget = budget_bytes
        self.wait_seconds = wait_seconds
        self._used = 0
        self._free = threading.Condition()
        self._large = threading.Semaphore(1)

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        if nbytes > self.budget:
            raise HTTPException(
                status_code=413,
                detail=f"image too large to decode here (needs {nbytes // 2**20:,} MiB of "
                f"memory, the server allows {self.budget // 2**20:,} MiB); send a smaller one",
            )
        deadline = time.monotonic() + self.wait_seconds
        large = nbytes > RELEASE_ABOVE_BYTES
        # Large decodes one at a time as well: each keeps a core and the GIL busy for a second
        # or more, and two of them beside the model left the event loop waiting.
        if large and not self._large.acquire(timeout=self.wait_seconds):
            raise HTTPException(status_code=503, detail="server busy; retry shortly")
        try:
            with self._reserved(nbytes, deadline):
                yield
        finally:
            if large:
                self._large.release()
                release_freed_memory()

    @contextlib.contextmanager
    def _reserved(self, nbytes: int, deadline: float) -> Iterator[None]:
        with self._free:
            while self._used + nbytes > self.budget:
                left = deadline - time.monotonic()
                if left <= 0 or not self._free.wait(left):
                    if self._used + nbytes > self.budget:
                        raise HTTPException(status_code=503, detail="server busy; retry shortly")
            self._used += nbytes
        try:
            yield
        finally:
            with self._free:
                self._used -= nbytes
                self._free.notify_all()


class WaitingRoom:
    """At most `capacity` requests inside at once; the next one is refused with 503."""

    def __init__(self, capacity: int) -> None:
        self._slots = threading.BoundedSemaphore(capacity)

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise HTTPException(status_code=503, detail="server busy; retry shortly")
        try:
            yield
        finally:
            self._slots.release()


def deadline_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline: a connection that has not delivered a whole
    request within `seconds` of opening (or of its previous response) is closed. uvicorn's own
    keep-alive timer restarts on every byte, so a client sending one byte a second would
    otherwise hold its connection, and its place in the concurrency limit, forever."""

    class DeadlineH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            cycle = self.cycle
            receiving = cycle is None or cycle.response_complete or cycle.more_body
            if receiving and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return DeadlineH11Protocol
