"""A real Kubernetes control plane on 127.0.0.1 for end-to-end tests.

:class:`ControlPlane` starts etcd, kube-apiserver and kube-controller-manager (built by
``hack/build-control-plane.sh`` and cached outside git) in a temporary directory, with fresh
certificates: a cluster CA (apiserver serving cert, admin and controller-manager client certs, more
on demand), a separate front-proxy CA whose ``front-proxy-client`` cert the aggregator presents to
extension API servers, and a service-account key pair. Nothing listens beyond loopback and every
process is stopped by :meth:`ControlPlane.stop` (also at interpreter exit, and by the kernel if the
test process dies: children get ``PR_SET_PDEATHSIG``).

There is no kubelet and no scheduler: tests make pods Running and Ready by patching
``pods/<name>/status`` (see :func:`mark_pod_ready`). An extension API server on loopback is reached
through an ``ExternalName`` Service pointing at ``127.0.0.1`` (Endpoints refuse loopback addresses),
see :meth:`ControlPlane.register_adapter`.

This module is pure test support: it does not import pytest.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from sim.service import Service
from tests.support.ports import free_port
from tests.support.processes import stop_group

__all__ = [
    "COLD_BUILD_MINUTES",
    "CONTROL_PLANE_VERSION",
    "ETCD_VERSION",
    "Binaries",
    "BinariesNotFoundError",
    "CertAuthority",
    "ControlPlane",
    "ControlPlaneError",
    "cache_dir",
    "find_binaries",
    "mark_pod_ready",
    "role_binding",
    "untyped",
]

CONTROL_PLANE_VERSION = "v1.35.4"
"""Kubernetes version built by ``hack/build-control-plane.sh``; also the cache key."""

ETCD_VERSION = "v3.6.16"
"""etcd version built alongside it."""

COLD_BUILD_MINUTES = 20
"""Rough cold build time of the control plane on 2 cores (measured: 17 min), for error messages."""

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")

DEFAULT_CONTROLLERS = (
    "horizontal-pod-autoscaler-controller",
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "garbage-collector-controller",
    "namespace-controller",
)
"""kube-controller-manager controllers (1.35 canonical names; the old short names are aliases):
what the HPA e2e needs (the serviceaccount controller makes each namespace's ``default``
ServiceAccount, without which pods are rejected), plus cleanup of deleted objects."""

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"

# Bounds, in seconds. Startup bounds are generous because the machine is shared and small.
_STOP_GRACE_S = 10.0
_ETCD_START_S = 30.0
_APISERVER_START_S = 120.0
_KCM_START_S = 60.0
_LOG_TAIL_BYTES = 8000

_PR_SET_PDEATHSIG = 1
_RBAC_GROUP = "rbac.authorization.k8s.io"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, or did not reach the expected state in time."""


class BinariesNotFoundError(ControlPlaneError):
    """The cached control plane binaries are missing: run ``make control-plane``."""


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    """Paths of the control plane executables, and the kubectl of the same release."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


def cache_dir() -> Path:
    """Where ``hack/build-control-plane.sh`` caches the binaries (it honours ``LMA_CACHE``)."""
    root = os.environ.get("LMA_CACHE") or str(Path.home() / ".cache" / "llm-metrics-adapter")
    return Path(root) / "controlplane" / CONTROL_PLANE_VERSION


def find_binaries(directory: Path | None = None) -> Binaries:
    """Return the cached binaries or raise :class:`BinariesNotFoundError` naming what is missing."""
    where = directory if directory is not None else cache_dir()
    missing = [name for name in COMPONENTS if not os.access(where / name, os.X_OK)]
    if missing:
        raise BinariesNotFoundError(
            f"control plane binaries not found in {where} (missing: {', '.join(missing)}): "
            "run `make control-plane` (builds them from the Go module proxy; "
            f"a cold build takes about {COLD_BUILD_MINUTES} minutes)"
        )
    return Binaries(
        etcd=where / "etcd",
        kube_apiserver=where / "kube-apiserver",
        kube_controller_manager=where / "kube-controller-manager",
        kubectl=where / "kubectl",
    )


# --------------------------------------------------------------------------- certificates


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


class CertAuthority:
    """A self-signed CA that issues leaf certificates into ``directory``.

    Keys are ECDSA P-256 (fast to make). Certificates are valid from one hour ago (clock skew)
    for ``days`` days.
    """

    def __init__(self, directory: Path, name: str, *, days: int = 2) -> None:
        self.directory = directory
        self.name = name
        self._days = days
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        not_before, not_after = self._validity()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{name}-ca.crt"
        self.cert_file.write_bytes(self.cert_pem)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def _validity(self) -> tuple[datetime.datetime, datetime.datetime]:
        now = datetime.datetime.now(datetime.UTC)
        return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=self._days)

    def issue(
        self,
        stem: str,
        *,
        common_name: str,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> tuple[Path, Path]:
        """Issue a leaf certificate; write ``<stem>.crt`` and ``<stem>.key``; return their paths.

        ``organizations`` become one ``O=`` attribute each (Kubernetes reads them as groups).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if not usages:
            raise ValueError("a leaf certificate needs server=True and/or client=True")
        not_before, not_after = self._validity()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process dies without stopping the
    # control plane (SIGKILL, a crash), the kernel kills the child. SIGKILL, not SIGTERM: with
    # etcd gone, kube-apiserver's graceful shutdown after SIGTERM can hang for a long time.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        stop_group(self.popen, grace_s)


def _spawn(name: str, argv: Sequence[str], log_path: Path) -> _Process:
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group, so stop() signals exactly this process and its children.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return _Process(name=name, popen=popen, log_path=log_path)


# --------------------------------------------------------------------------- objects


def untyped(api: object) -> Any:
    """The generated client's model types get in the way of plain dict bodies."""
    return api


def role_binding(
    name: str, role: str, users: Sequence[str], *, role_kind: str = "ClusterRole"
) -> dict[str, Any]:
    """A ClusterRoleBinding (or, with ``role_kind="Role"``, a RoleBinding) body named ``name``
    that grants ``role`` to each of ``users``."""
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": _RBAC_GROUP, "kind": role_kind, "name": role},
        "subjects": [{"kind": "User", "name": user, "apiGroup": _RBAC_GROUP} for user in users],
    }


# --------------------------------------------------------------------------- pods


def mark_pod_ready(
    api_client: k8s.ApiClient, namespace: str, name: str, *, pod_ip: str | None = None
) -> None:
    """Patch ``pods/<name>/status`` to Running and Ready (with ``podIP``), as a kubelet would.

    ``api_client`` is a ``kubernetes.client.ApiClient`` allowed to patch pod status.
    """
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    body = {
        "status": {
            "phase": "Running",
            "startTime": now,
            "conditions": conditions,
            **({"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]} if pod_ip else {}),
        }
    }
    k8s.CoreV1Api(api_client).patch_namespaced_pod_status(
        name, namespace, body, _content_type="application/merge-patch+json"
    )


# --------------------------------------------------------------------------- control plane


class ControlPlane(Service):
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, in a temp dir.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. After :meth:`start`:
    ``api_url`` (``https://127.0.0.1:<port>``), ``kubeconfig_path`` (admin, ``system:masters``),
    ``ca_file`` (cluster CA, signs the serving and client certs), ``front_proxy_ca_file``
    (requestheader CA that signs the aggregator's ``front-proxy-client`` cert).
    """

    def __init__(
        self,
        *,
        binaries: Binaries | None = None,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        hpa_sync_period_s: int = 1,
        downscale_stabilization_s: int | None = 0,
        extra_apiserver_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
    ) -> None:
        self._binaries = binaries
        self._controllers = tuple(controllers)
        self._hpa_sync_period_s = hpa_sync_period_s
        self._downscale_stabilization_s = downscale_stabilization_s
        self._extra_apiserver_args = tuple(extra_apiserver_args)
        self._extra_kcm_args = tuple(extra_controller_manager_args)
        self._processes: dict[str, _Process] = {}
        self._tmp: Path | None = None
        self._ca: CertAuthority | None = None
        self._registered_apiservices: tuple[str, ...] = ()
        self.api_url = ""
        self.start_seconds = 0.0
        """Wall time :meth:`start` took, in seconds."""

    # ----------------------------------------------------------------- paths

    @property
    def tmp_dir(self) -> Path:
        if self._tmp is None:
            raise ControlPlaneError("the control plane is not started")
        return self._tmp

    @property
    def kubeconfig_path(self) -> Path:
        """Admin kubeconfig (client cert with ``O=system:masters``)."""
        return self.tmp_dir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        """Cluster CA: signs the apiserver serving cert and client certs it accepts."""
        return self.tmp_dir / "pki" / "cluster-ca.crt"

    @property
    def front_proxy_ca_file(self) -> Path:
        """Requestheader CA: signs the client cert the aggregator presents to extension servers."""
        return self.tmp_dir / "pki" / "front-proxy-ca.crt"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start all three components and wait until they are healthy.

        Raises :class:`BinariesNotFoundError` before touching anything if a binary is missing, and
        :class:`ControlPlaneError` (with the tail of the failing component's log) on startup
        failure; nothing is left running in either case.
        """
        if self._tmp is not None:
            raise ControlPlaneError("the control plane is already started")
        binaries = self._binaries or find_binaries()
        began = time.monotonic()
        self._tmp = Path(tempfile.mkdtemp(prefix="lma-controlplane-"))
        atexit.register(self.stop)
        try:
            self._make_pki()
            self._start_etcd(binaries)
            self._start_apiserver(binaries)
            self._start_controller_manager(binaries)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a bound) and remove the temp dir.

        Idempotent.
        """
        for name in reversed(list(self._processes)):
            self._processes[name].stop()
        self._processes.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        atexit.unregister(self.stop)

    def logs(self, component: str) -> str:
        """The last few KB of a component's log: etcd, kube-apiserver or kube-controller-manager."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
        process = self._processes.get(component)
        if process is None:
            return f"<{component} is not running>"
        return process.tail()

    # ----------------------------------------------------------------- certificates

    def _make_pki(self) -> None:
        pki = self.tmp_dir / "pki"
        pki.mkdir()
        self._ca = CertAuthority(pki, "cluster")
        front_proxy = CertAuthority(pki, "front-proxy")
        self._ca.issue(
            "apiserver",
            common_name="kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", KUBERNETES_SERVICE_IP),
            server=True,
        )
        self._ca.issue(
            "controller-manager-serving",
            common_name="kube-controller-manager",
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
            server=True,
        )
        self._ca.issue(
            "admin", common_name="kubernetes-admin", organizations=("system:masters",), client=True
        )
        self._ca.issue(
            "controller-manager", common_name="system:kube-controller-manager", client=True
        )
        front_proxy.issue("front-proxy-client", common_name="front-proxy-client", client=True)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki / "sa.key", sa_key)
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def client_cert(self, user: str, groups: Sequence[str] = ()) -> tuple[Path, Path]:
        """Mint a client cert the apiserver accepts as ``user`` in ``groups``: (cert, key) paths."""
        if self._ca is None:
            raise ControlPlaneError("the control plane is not started")
        stem = "user-" + "".join(c if c.isalnum() else "_" for c in user) + f"-{time.time_ns()}"
        return self._ca.issue(stem, common_name=user, organizations=groups, client=True)

    def _write_kubeconfig(self, path: Path, *, user: str, cert: Path, key: Path) -> None:
        # JSON is YAML: no YAML writer needed.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.api_url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(json.dumps(config, indent=2))

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """Write a kubeconfig for a new client cert of ``user`` in ``groups``; return its path."""
        cert, key = self.client_cert(user, groups)
        path = cert.with_suffix(".kubeconfig")
        self._write_kubeconfig(path, user=user, cert=cert, key=key)
        return path

    def admin_client(self) -> k8s.ApiClient:
        """A new ``kubernetes.client.ApiClient`` as the admin (``system:masters``). Close it."""
        return self.client_from_kubeconfig(self.kubeconfig_path)

    def user_client(self, user: str, groups: Sequence[str] = ()) -> k8s.ApiClient:
        """A new ``kubernetes.client.ApiClient`` as ``user`` in ``groups``. Close it."""
        return self.client_from_kubeconfig(self.kubeconfig_for(user, groups))

    @staticmethod
    def client_from_kubeconfig(path: Path) -> k8s.ApiClient:
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path), persist_config=False
        )
        return api

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        pki = self.tmp_dir / "pki"
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    # ----------------------------------------------------------------- components

    def _spawn(self, name: str, argv: Sequence[str]) -> _Process:
        process = _spawn(name, argv, self.tmp_dir / f"{name}.log")
        self._processes[name] = process
        return process

    def _wait_healthy(
        self, process: _Process, url: str, *, timeout_s: float, context: ssl.SSLContext | None
    ) -> None:
        """Poll ``url`` until it answers 200; fail fast if the process exits."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with code {process.popen.returncode} during startup; "
                    f"log tail:\n{process.tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read(500).decode('utf-8', errors='replace')}"
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ControlPlaneError(
            f"{process.name} not healthy at {url} after {timeout_s:.0f}s (last: {last}); "
            f"log tail:\n{process.tail()}"
        )

    def _start_etcd(self, binaries: Binaries) -> None:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._etcd_url = client_url
        process = self._spawn(
            "etcd",
            [
                str(binaries.etcd),
                "--name=default",
                f"--data-dir={self.tmp_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_healthy(process, f"{client_url}/health", timeout_s=_ETCD_START_S, context=None)

    def _start_apiserver(self, binaries: Binaries) -> None:
        port = free_port()
        self.api_url = f"https://127.0.0.1:{port}"
        pki = self.tmp_dir / "pki"
        self._write_kubeconfig(
            self.kubeconfig_path, user="admin", cert=pki / "admin.crt", key=pki / "admin.key"
        )
        process = self._spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={self._etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.tmp_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_file}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # The aggregation layer: who may assert X-Remote-* headers, and the client cert
                # the aggregator presents to extension API servers.
                f"--requestheader-client-ca-file={self.front_proxy_ca_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-uid-headers=X-Remote-Uid",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                # Resolve APIService Services to their cluster IP / ExternalName, not Endpoints
                # (which refuse loopback addresses).
                "--enable-aggregator-routing=false",
                "--profiling=false",
                *self._extra_apiserver_args,
            ],
        )
        self._wait_healthy(
            process,
            f"{self.api_url}/readyz",
            timeout_s=_APISERVER_START_S,
            context=self._ssl_context(),
        )

    def _start_controller_manager(self, binaries: Binaries) -> None:
        port = free_port()
        pki = self.tmp_dir / "pki"
        kubeconfig = self.tmp_dir / "controller-manager.kubeconfig"
        self._write_kubeconfig(
            kubeconfig,
            user="system:kube-controller-manager",
            cert=pki / "controller-manager.crt",
            key=pki / "controller-manager.key",
        )
        process = self._spawn(
            "kube-controller-manager",
            [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--controllers={','.join(self._controllers)}",
                f"--horizontal-pod-autoscaler-sync-period={self._hpa_sync_period_s}s",
                *(
                    [f"--horizontal-pod-autoscaler-downscale-stabilization={stabilization}s"]
                    if (stabilization := self._downscale_stabilization_s) is not None
                    else []
                ),
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.tmp_dir / 'controller-manager-certs'}",
                f"--tls-cert-file={pki / 'controller-manager-serving.crt'}",
                f"--tls-private-key-file={pki / 'controller-manager-serving.key'}",
                "--profiling=false",
                *self._extra_kcm_args,
            ],
        )
        self._wait_healthy(
            process,
            f"https://127.0.0.1:{port}/healthz",
            timeout_s=_KCM_START_S,
            context=self._ssl_context(),
        )

    # ----------------------------------------------------------------- aggregation

    def register_adapter(
        self,
        port: int,
        *,
        ca_bundle: bytes | None = None,
        insecure: bool = False,
        namespace: str = "custom-metrics",
        service: str = "llm-metrics-adapter",
    ) -> tuple[str, ...]:
        """Route the custom and external metrics APIs to an HTTPS server on ``127.0.0.1:port``.

        Creates (or updates) the namespace, an ``ExternalName`` Service ``<service>`` pointing at
        127.0.0.1, and the APIServices ``v1beta1.custom.metrics.k8s.io`` (versionPriority 100),
        ``v1beta2.custom.metrics.k8s.io`` (versionPriority 200, preferred) and
        ``v1beta1.external.metrics.k8s.io``. The aggregator dials
        ``https://<service>.<namespace>.svc:<port>``, so a ``ca_bundle`` (PEM) must sign a serving
        cert for that name; or pass ``insecure=True``. Returns the APIService names.
        """
        if (ca_bundle is None) == (not insecure):
            raise ValueError("pass exactly one of ca_bundle=<PEM> or insecure=True")
        tls: dict[str, Any] = (
            {"insecureSkipTLSVerify": True}
            if insecure
            else {"caBundle": base64.b64encode(ca_bundle or b"").decode("ascii")}
        )
        api_services = [
            ("custom.metrics.k8s.io", "v1beta1", 100),
            ("custom.metrics.k8s.io", "v1beta2", 200),
            ("external.metrics.k8s.io", "v1beta1", 100),
        ]
        with self.admin_client() as api:
            core = k8s.CoreV1Api(api)
            registration = k8s.ApiregistrationV1Api(api)
            ns_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            self._apply(core.patch_namespace, namespace, None, ns_body)
            svc_body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": namespace},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "127.0.0.1",
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                },
            }
            self._apply(core.patch_namespaced_service, service, namespace, svc_body)
            names = []
            for group, version, version_priority in api_services:
                name = f"{version}.{group}"
                body = {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": name},
                    "spec": {
                        "group": group,
                        "version": version,
                        "groupPriorityMinimum": 100,
                        "versionPriority": version_priority,
                        "service": {"name": service, "namespace": namespace, "port": port},
                        **tls,
                    },
                }
                self._apply(registration.patch_api_service, name, None, body)
                names.append(name)
        self._registered_apiservices = tuple(names)
        return self._registered_apiservices

    @staticmethod
    def _apply(patch: Any, name: str, namespace: str | None, body: dict[str, Any]) -> None:
        """Server-side apply ``body`` (created if absent), as field manager ``e2e-harness``."""
        args: tuple[Any, ...] = (name, namespace, body) if namespace else (name, body)
        patch(
            *args,
            field_manager="e2e-harness",
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def apiservice_conditions(self, names: Sequence[str] | None = None) -> dict[str, list[Any]]:
        """Each APIService's status conditions (dicts with type, status, reason, message)."""
        result: dict[str, list[Any]] = {}
        with self.admin_client() as api:
            registration = k8s.ApiregistrationV1Api(api)
            for name in names or self._registered_apiservices:
                try:
                    obj = registration.read_api_service(name)
                except ApiException as exc:
                    result[name] = [{"type": "Missing", "status": str(exc.status)}]
                    continue
                conditions = (obj.status.conditions if obj.status else None) or []
                result[name] = [
                    {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                    for c in conditions
                ]
        return result

    def wait_apiservices_available(
        self, timeout: float = 60.0, names: Sequence[str] | None = None
    ) -> None:
        """Return once every APIService (default: the registered ones) is Available=True and the
        aggregator proxies its group version (``GET /apis/<group>/<version>`` answers 200).

        The second check matters: the availability controller writes the condition, and the
        aggregator's proxy learns it from its own informer a moment later; until then it answers
        503 for that group. Raises :class:`ControlPlaneError` after ``timeout`` seconds, with
        every APIService's conditions and the last proxied answer in the message.
        """
        wanted = tuple(names or self._registered_apiservices)
        if not wanted:
            raise ValueError("no APIServices registered: call register_adapter() first")
        deadline = time.monotonic() + timeout
        conditions: dict[str, list[Any]] = {}
        last = "not tried"
        while time.monotonic() < deadline:
            conditions = self.apiservice_conditions(wanted)
            if all(_is_available(conditions[name]) for name in wanted):
                last = self._first_unproxied(wanted)
                if not last:
                    return
            time.sleep(0.5)
        raise ControlPlaneError(
            f"APIServices not Available after {timeout:.0f}s (proxy: {last}):"
            f" {json.dumps(conditions, indent=1)}"
        )

    def _first_unproxied(self, names: Sequence[str]) -> str:
        """``""`` when the aggregator answers 200 for every APIService's group version, else what
        it answered for the first one that it does not proxy yet."""
        context = self._ssl_context()
        for name in names:
            version, _, group = name.partition(".")
            url = f"{self.api_url}/apis/{group}/{version}"
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        continue
                    return f"{url}: HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                return f"{url}: HTTP {exc.code}"
            except (OSError, ssl.SSLError) as exc:
                return f"{url}: {exc}"
        return ""

    def iter_processes(self) -> Iterator[tuple[str, int]]:
        """(component, pid) of each running process; for tests that check cleanup."""
        for name, process in self._processes.items():
            yield name, process.popen.pid


def _is_available(conditions: list[Any]) -> bool:
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
