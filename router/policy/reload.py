"""Hot reload: watch the policy's files; apply a valid edit within a second, refuse a broken one.

Polling the files' (mtime, size, inode, CRC) four times a second is cheap and works where inotify does not
(network volumes, Kubernetes ConfigMaps, which swap a symlink: `stat` follows it, so the swap shows).
A changed file is read once it holds still for one poll (an editor that truncates and then writes is never
read half-saved), and validated off the event loop; a valid policy is swapped in whole (requests in
flight keep the policy they were decided with), a broken one is logged with its file:line errors and the
last good policy stays in force. `/v1/router/policy` shows the version in force and the last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from router.errors import ConfigError
from router.policy.engine import PolicyEngine, load_policy

log = logging.getLogger(__name__)
Stamp = tuple[int, int, int, int] | None
MAX_HASHED_BYTES = 1 << 20


def _stamp(path: Path) -> Stamp:
    """What says a file changed: its mtime, size and inode, and a CRC of its bytes. The CRC catches a
    same-size edit within one tick of a coarse file-system clock; a policy is a few KB, so reading it
    four times a second costs nothing."""
    try:
        st = os.stat(path)
        crc = zlib.crc32(path.read_bytes()) if st.st_size <= MAX_HASHED_BYTES else 0
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino, crc


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    loaded_at: float
    reloads: int
    failures: int
    last_error: str | None
    last_error_at: float | None


class PolicyWatcher:
    def __init__(
        self,
        path: Path,
        current: PolicyEngine,
        apply: Callable[[PolicyEngine], None],
        model_names: Iterable[str],
        interval_s: float = 0.25,
        on_result: Callable[[str], None] | None = None,
        prepare: Callable[[PolicyEngine], Awaitable[None]] | None = None,
    ) -> None:
        self._path = path
        self._apply = apply
        self._model_names = list(model_names)
        self._interval_s = interval_s
        self._on_result = on_result
        self._prepare = prepare
        """Readies a valid policy before it goes live (embeds its intents' examples)."""
        self._digest = current.digest
        self._stamps = self._stamps_of(current)
        self._settling: dict[Path, Stamp] | None = None
        self._task: asyncio.Task[None] | None = None
        self._status = ReloadStatus(time.time(), 0, 0, None, None)

    @property
    def status(self) -> ReloadStatus:
        return self._status

    def _stamps_of(self, engine: PolicyEngine) -> dict[Path, Stamp]:
        files = engine.files or (self._path,)
        return {path: _stamp(path) for path in {self._path, *files}}

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="policy-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception:  # the watcher must outlive any surprise; the policy in force stays
                log.exception("policy watch: unexpected error")

    async def check(self) -> bool:
        """Reload if a file changed and then held still for one poll; True when a new policy was applied."""
        stamps = {path: _stamp(path) for path in self._stamps}
        if stamps == self._stamps:
            self._settling = None
            return False
        if stamps != self._settling:  # still being written, or just saved: look again next poll
            self._settling = stamps
            return False
        self._settling = None
        self._stamps = stamps
        try:
            engine = await asyncio.to_thread(load_policy, self._path, self._model_names)
        except ConfigError as error:
            self._refused(error.message)
            return False
        # Keep the stamps taken *before* the read: a write that lands while the file is parsed must show
        # as a change on the next poll. Files the policy newly includes were never stamped before the
        # read; None makes the next polls read them again (a touch, not a change, if nothing moved).
        self._stamps = {path: stamps.get(path) for path in {self._path, *engine.files}}
        if engine.digest == self._digest:
            return False  # touched, not changed
        if self._prepare is not None:
            await self._prepare(engine)
        previous, self._digest = self._digest, engine.digest
        self._apply(engine)
        s = self._status
        self._status = ReloadStatus(time.time(), s.reloads + 1, s.failures, None, None)
        log.info("policy reloaded from %s: version %s (was %s)", self._path, engine.version, previous[:12])
        if self._on_result is not None:
            self._on_result("applied")
        return True

    def _refused(self, message: str) -> None:
        s = self._status
        self._status = ReloadStatus(s.loaded_at, s.reloads, s.failures + 1, message, time.time())
        log.error(
            "policy reload refused; version %s stays in force. Fix and save again:\n%s", self._digest[:12], message
        )
        if self._on_result is not None:
            self._on_result("refused")
