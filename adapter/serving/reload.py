"""Reload the rules file while serving.

:class:`RulesWatcher` polls the ``--config`` file every few seconds. The file is identified by
the path it resolves to, its inode, modification time and size; when any of those changes the
content is read and hashed, and only a new hash means a new file. That catches both an edit in
place and the atomic symlink swap of a Kubernetes ConfigMap volume (``rules.yaml`` →
``..data/rules.yaml``, where ``..data`` is re-pointed to a new timestamped directory).

A changed file is compiled with the same loader as at start-up:

- valid: the registry serves the new rules at once, ``AppContext.rules`` is replaced, fresh cache
  entries are dropped, a discovery refresh runs, and the change is logged with a summary of the
  rules added, removed and changed (by rule id);
- invalid or unreadable: the last good rules keep serving and the server stays ready; the error
  is logged once, shown by ``/readyz?verbose`` and ``/debug/metrics`` and counted in
  ``llm_metrics_adapter_rule_reloads_total{result="error"}``. Putting back the serving content
  clears it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapter.app.context import AppContext
from adapter.domain.errors import AdapterError, ConfigError
from adapter.rules.base import Rule
from adapter.rules.loader import MAX_FILE_BYTES, RuleSet, load_configured_rules
from adapter.settings import Settings

__all__ = ["ReloadStatus", "RulesDiff", "RulesWatcher", "diff_rules"]

log = logging.getLogger(__name__)

_STAMP_NONE = ("", 0, 0, 0)


@dataclass(frozen=True, slots=True)
class RulesDiff:
    """Rule ids added, removed and changed (same id, different definition), each sorted."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """``added [a, b]; removed [c]; changed [d]`` (empty parts left out), or ``no rule changed``."""
        parts = [
            f"{label} [{', '.join(ids)}]"
            for label, ids in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if ids
        ]
        return "; ".join(parts) if parts else "no rule changed"


def _definition(rule: Rule) -> str:
    # Compiled rules are frozen dataclasses without value equality; their repr (the fields that
    # define them) and describe() (the query and what is injected) together say what they serve.
    return f"{rule!r}\n{rule.describe()}"


def diff_rules(old: Sequence[Rule], new: Sequence[Rule]) -> RulesDiff:
    """What changed between two rule lists, by rule id."""
    before = {r.id: _definition(r) for r in old}
    after = {r.id: _definition(r) for r in new}
    return RulesDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(sorted(k for k in before.keys() & after.keys() if before[k] != after[k])),
    )


@dataclass(slots=True)
class ReloadStatus:
    """What ``/readyz`` and ``/debug/metrics`` show. Times in unix seconds."""

    last_reload: float | None = None
    """When rules were last applied (the initial load counts)."""
    error: str | None = None
    """Why the current file is not served; ``None`` when the serving rules are the file's."""
    last_diff: RulesDiff | None = None


class RulesWatcher:
    """Watches ``ctx.settings.rules.config`` and applies valid changes to ``ctx``.

    ``interval`` in seconds. ``loader(settings)`` compiles the rules from the settings exactly
    as start-up did (default :func:`load_configured_rules`); it raises ``AdapterError`` for a bad
    file. Construction reads the file once to learn the content the serving rules came from.
    """

    def __init__(
        self,
        ctx: AppContext,
        *,
        interval: float = 2.0,
        loader: Callable[[Settings], RuleSet] | None = None,
    ) -> None:
        if not ctx.settings.rules.config:
            raise ValueError("no rules file to watch")
        self.ctx = ctx
        self.path = Path(ctx.settings.rules.config)
        self.interval = interval
        self._loader = loader or load_configured_rules
        self.status = ReloadStatus(last_reload=time.time())
        ctx.telemetry.rules_reload_success.set(self.status.last_reload or 0.0)
        self._stamp = _STAMP_NONE
        self._seen_hash: str | None = None  # the last content looked at (applied or not)
        self._applied_hash: str | None = None  # the content the serving rules came from
        try:
            self._stamp = self._stat()
            self._applied_hash = self._seen_hash = self._hash(self._read())
        except OSError:
            pass  # the next check reports it

    def _stat(self) -> tuple[str, int, int, int]:
        st = os.stat(self.path)  # follows symlinks: ..data swaps change the target's inode
        return (os.path.realpath(self.path), st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)

    @staticmethod
    def _hash(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def _fail(self, message: str) -> None:
        if message != self.status.error:  # log and count each distinct failure once
            log.warning("rules reload failed, serving the last good rules: %s", message)
            self.ctx.telemetry.rule_reloads.labels("error").inc()
        self.status.error = message

    async def check(self) -> RulesDiff | None:
        """Look at the file once; apply it if it changed and is valid.

        Returns the diff applied, or ``None`` when nothing was applied. Never raises for a bad
        file (only cancellation propagates).
        """
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return None
            data = self._read()
        except OSError as exc:
            self._stamp = _STAMP_NONE
            self._fail(f"file {self.path}: cannot read: {exc.strerror or exc}")
            return None
        self._stamp = stamp
        digest = self._hash(data)
        if digest == self._applied_hash:
            self._seen_hash = digest
            if self.status.error is not None:
                log.info("rules file %s is back to the serving rules", self.path)
                self.status.error = None
            return None  # touched, not changed
        if digest == self._seen_hash:
            return None  # the same content that failed before, touched
        self._seen_hash = digest
        try:
            rules = self._loader(self.ctx.settings)
            if not rules.rules:  # a custom loader may not check it
                raise ConfigError(f"file {self.path}: no rules to serve")
        except AdapterError as exc:
            self._fail(exc.message)
            return None
        except Exception as exc:  # a loader bug must not end the watcher nor the server
            log.exception("rules reload failed unexpectedly")
            self._fail(f"unexpected {type(exc).__name__} while loading {self.path}")
            return None
        diff = self._apply(rules)
        self._applied_hash = digest
        await self._refresh_discovery()
        return diff

    def _apply(self, rules: RuleSet) -> RulesDiff:
        ctx = self.ctx
        diff = diff_rules(ctx.registry.rules, rules.rules)
        ctx.registry.set_rules(rules.rules)
        ctx.rules = rules
        # Cache keys are query texts; dropping the fresh entries makes every rule's next answer
        # come from its current query, and frees those of removed rules now rather than at TTL.
        ctx.provider.cache.clear()
        now = time.time()
        self.status.last_reload, self.status.last_diff = now, diff
        self.status.error = None
        ctx.telemetry.rule_reloads.labels("ok").inc()
        ctx.telemetry.rules_reload_success.set(now)
        log.info("rules reloaded from %s: %s", self.path, diff.summary())
        for warning in rules.warnings:
            log.warning("%s", warning)
        return diff

    async def _refresh_discovery(self) -> None:
        try:
            await self.ctx.registry.refresh()
        except Exception:  # discovery keeps its own schedule; a failure here is not fatal
            log.exception("discovery refresh after a rules reload failed")

    async def run(self) -> None:
        """Check every ``interval`` seconds forever. Cancel the task to stop."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # one bad poll must not end reloading for good
                log.exception("rules reload check failed")
