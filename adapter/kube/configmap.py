"""``kube-system/extension-apiserver-authentication``: read once, then watched.

The configmap holds the client CA and the front-proxy (requestheader) settings that delegated
authentication trusts; :class:`AuthConfigCalls` keeps an :class:`AuthConfigHolder` current.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client as k8s_client

from adapter.auth.config import (
    AUTH_CONFIGMAP_NAME,
    AUTH_CONFIGMAP_NAMESPACE,
    AuthConfig,
    AuthConfigHolder,
)
from adapter.domain.errors import ConfigError
from adapter.kube.connection import Connection
from adapter.kube.watch import ListWatch

__all__ = ["AuthConfigCalls"]

log = logging.getLogger(__name__)


class AuthConfigCalls(Connection):
    """The delegated-authentication configmap."""

    async def read_auth_config(self) -> AuthConfig:
        """Read ``kube-system/extension-apiserver-authentication`` once."""
        api = k8s_client.CoreV1Api(self.api)
        answer = await self.call(
            f"reading configmap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}",
            api.read_namespaced_config_map,
            AUTH_CONFIGMAP_NAME,
            AUTH_CONFIGMAP_NAMESPACE,
        )
        return AuthConfig.from_configmap(answer.get("data") or {})

    def watch_auth_config(
        self, holder: AuthConfigHolder, loop: asyncio.AbstractEventLoop
    ) -> Callable[[], None]:
        """Keep ``holder`` current from the configmap (updates run on ``loop``); returns a stop
        function."""
        stop = threading.Event()

        def apply(data: Mapping[str, str]) -> None:
            try:
                config = AuthConfig.from_configmap(data)
            except ConfigError as exc:
                log.error("ignoring an invalid %s: %s", AUTH_CONFIGMAP_NAME, exc.message)
                return
            if not loop.is_closed():
                loop.call_soon_threadsafe(holder.update, config)

        def on_replace(items: list[dict[str, Any]]) -> None:
            for item in items:
                apply(item.get("data") or {})

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            if kind == "DELETED":
                log.warning("%s was deleted: keeping the last configuration", AUTH_CONFIGMAP_NAME)
                return
            apply(obj.get("data") or {})

        api = k8s_client.CoreV1Api(self.api)
        ListWatch(
            name="watch-auth-configmap",
            list_fn=api.list_namespaced_config_map,
            kwargs={
                "namespace": AUTH_CONFIGMAP_NAMESPACE,
                "field_selector": f"metadata.name={AUTH_CONFIGMAP_NAME}",
            },
            on_replace=on_replace,
            on_event=on_event,
            stop=stop,
            request_timeout=self.timeout,
        ).start()
        return stop.set
