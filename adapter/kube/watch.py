"""List-then-watch of one resource in a daemon thread, resumed from its resourceVersion.

Watches restart with exponential backoff (0.5 s to 30 s), relisting when the API says the
version is too old (410) or anything else went wrong; meanwhile the caller keeps its last state.
A thread also stops when its ``stop`` event is set (within one watch period, ``WATCH_SECONDS``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import watch as k8s_watch

from adapter.kube.connection import decode_json, describe_failure

__all__ = ["WATCH_SECONDS", "ListWatch"]

log = logging.getLogger(__name__)

WATCH_SECONDS = 30
"""Server-side timeout of one watch request; the watch is then resumed from its resourceVersion."""

_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0


class ListWatch(threading.Thread):
    """LIST then WATCH one resource in a daemon thread, forever (until ``stop`` is set).

    ``on_replace(items)`` gets every full list, ``on_event(type, object)`` each ADDED, MODIFIED or
    DELETED object (raw JSON dicts: no model deserialization, it is slow and not needed).
    """

    def __init__(
        self,
        *,
        name: str,
        list_fn: Callable[..., Any],
        kwargs: Mapping[str, Any],
        on_replace: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        stop: threading.Event,
        request_timeout: float,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._list_fn = list_fn
        self._kwargs = dict(kwargs)
        self._on_replace = on_replace
        self._on_event = on_event
        self._on_error = on_error
        self._stop_event = stop
        self._request_timeout = request_timeout

    def _list(self) -> str:
        response = self._list_fn(
            **self._kwargs, _preload_content=False, _request_timeout=self._request_timeout
        )
        body = decode_json(response)
        self._on_replace(list(body.get("items") or []))
        version = (body.get("metadata") or {}).get("resourceVersion")
        return str(version or "")

    def _watch(self, version: str) -> str:
        stream = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        for event in stream.stream(  # type: ignore[no-untyped-call]
            self._list_fn,
            **self._kwargs,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            deserialize=False,
            _request_timeout=(self._request_timeout, WATCH_SECONDS + 15),
        ):
            if self._stop_event.is_set():
                stream.stop()  # type: ignore[no-untyped-call]
                break
            if not isinstance(event, dict):
                continue
            obj = event.get("object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            kind = event.get("type")
            if kind in {"ADDED", "MODIFIED", "DELETED"}:
                self._on_event(str(kind), obj)
        return version

    def run(self) -> None:
        delay = _BACKOFF_MIN_S
        version = ""
        while not self._stop_event.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                delay = _BACKOFF_MIN_S
            except Exception as exc:  # the thread must survive anything and retry
                # Relist after any failure: a stale resourceVersion (410) is the common case, and
                # a relist is always correct.
                version = ""
                message = describe_failure(self.name, exc)
                log.warning("%s; retrying in %.1fs", message, delay)
                if self._on_error is not None:
                    self._on_error(message)
                self._stop_event.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
