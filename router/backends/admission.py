"""Admission control for remote models: a bounded number of calls in flight and a bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from router.errors import Overloaded


class Admission:
    """At most `limit` calls in flight and `max_queue` waiting; beyond that, 503 + Retry-After at once."""

    def __init__(self, name: str, limit: int, max_queue: int) -> None:
        self._name = name
        self._slots = asyncio.Semaphore(limit)
        self._max_queue = max_queue
        self.waiting = 0
        self.in_flight = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self._max_queue:
            raise Overloaded(f"{self._name} has too many calls in flight; retry shortly.", headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
