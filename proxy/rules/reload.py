"""Hot reload of ``rules.yaml``: the live ``Rules`` behind one attribute, swapped whole when a valid file appears.

Requests read ``holder.current`` once and keep that ``Rules`` for their whole life, so a swap is atomic between
requests. A file that does not validate is logged problem by problem and the last good rules keep serving.
Reloading never touches the cache: entries keep the lifetimes they were stored with. The watcher polls the
file's identity (inode, mtime, size) rather than using inotify, so an editor's or config manager's atomic rename
over the file is caught as well as an edit in place; each worker process runs its own watcher.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Collection
from pathlib import Path

from proxy.errors import RulesError
from proxy.rules.loader import load_rules
from proxy.rules.model import Rules

log = logging.getLogger(__name__)

Signature = tuple[int, int, int]
MISSING_POLLS = 2  # consecutive polls without the file before it counts as deleted (a rename is quicker than one)


class RulesHolder:
    """The current rules of one process, reloaded on demand, on file change (``watch``) and on SIGHUP.

    The constructor loads the file and raises ``RulesError`` when it is invalid, so a proxy never starts on bad
    rules (``stores``: the store names the settings open; a route picking another is invalid too).
    ``on_reload(ok, problems)`` is called after each reload attempt (for the metric and the log).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        on_reload: Callable[[bool, list[str]], None] | None = None,
        stores: Collection[str] | None = None,
    ) -> None:
        self.path = path
        self.on_reload = on_reload
        self.stores = stores  # the store names routes may pick (None: not checked)
        self._seen: Signature | None = self._signature()
        self.current: Rules = Rules.builtin() if path is None else load_rules(path, stores=stores)

    def reload(self) -> bool:
        """Load the file again; swap it in when valid, otherwise log each problem and keep the current rules."""
        if self.path is None:
            return True
        self._seen = self._signature()
        try:
            rules = load_rules(self.path, stores=self.stores)
        except RulesError as exc:
            for problem in exc.problems:
                log.error("rules reload rejected: %s", problem)
            self._report(False, exc.problems)
            return False
        self.current = rules
        log.info("rules reloaded from %s: %d routes", self.path, len(rules.routes))
        self._report(True, [])
        return True

    async def watch(self, interval: float = 0.5) -> None:
        """Poll the file every ``interval`` seconds and reload when its identity changes; runs until cancelled.

        A file that is missing for a moment (between unlink and rename) is not a change: the next poll sees the
        new file. A file still missing at the poll after is a deleted file: the last good rules keep serving, a
        warning is logged and the event is reported like a rejected reload (once, until the file returns).
        """
        if self.path is None:
            return
        missing_polls = 0
        while True:
            await asyncio.sleep(interval)
            signature = self._signature()
            missing_polls = missing_polls + 1 if signature is None else 0
            if missing_polls == MISSING_POLLS and self._seen is not None:
                self._seen = None
                self._deleted()
            elif signature is not None and signature != self._seen:
                try:
                    self.reload()
                except Exception:  # a bug must not stop the watcher; the old rules keep serving
                    self._seen = signature
                    log.exception("rules reload failed")

    def _deleted(self) -> None:
        problem = (
            f"{self.path}: the rules file is gone; keeping the last good rules ({len(self.current.routes)} routes)"
        )
        log.warning("rules reload rejected: %s", problem)
        self._report(False, [problem])

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (the conventional "re-read your configuration" signal); Unix only."""
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _signature(self) -> Signature | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _report(self, ok: bool, problems: list[str]) -> None:
        if self.on_reload is None:
            return
        try:
            self.on_reload(ok, problems)
        except Exception:
            log.exception("rules on_reload callback failed")
