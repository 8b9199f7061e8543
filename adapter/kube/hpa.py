"""The reads ``explain`` and ``/debug/hpa`` make: an HPA, its target's scale, the target's pods.

:class:`HpaCalls` implements :class:`adapter.hpa.explain.HpaReader`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s_client

from adapter.kube.connection import Connection, KubernetesError

__all__ = ["HpaCalls"]


class HpaCalls(Connection):
    """Reads of HorizontalPodAutoscalers and what they scale."""

    async def read_hpa(self, namespace: str, name: str) -> dict[str, Any]:
        """An ``autoscaling/v2`` HorizontalPodAutoscaler as JSON."""
        api = k8s_client.AutoscalingV2Api(self.api)
        answer: dict[str, Any] = await self.call(
            f"reading HorizontalPodAutoscaler {namespace}/{name}",
            api.read_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
        )
        return answer

    async def read_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        """The ``autoscaling/v1`` Scale of a Deployment, StatefulSet or ReplicaSet."""
        apps = k8s_client.AppsV1Api(self.api)
        functions: dict[str, Callable[..., Any]] = {
            "Deployment": apps.read_namespaced_deployment_scale,
            "StatefulSet": apps.read_namespaced_stateful_set_scale,
            "ReplicaSet": apps.read_namespaced_replica_set_scale,
        }
        fn = functions.get(kind)
        if fn is None:
            raise KubernetesError(
                f"scale target kind {kind!r} is not supported here (Deployment, StatefulSet,"
                " ReplicaSet)"
            )
        answer: dict[str, Any] = await self.call(
            f"reading the scale of {kind} {namespace}/{name}", fn, name, namespace
        )
        return answer

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods of ``namespace`` matching the label selector string (the scale's selector)."""
        api = k8s_client.CoreV1Api(self.api)
        answer = await self.call(
            f"listing pods in {namespace}",
            api.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        return list(answer.get("items") or [])
