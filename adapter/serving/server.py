"""The HTTPS server: uvicorn with a live TLS context and the client certificate in the ASGI scope.

- :class:`ServingTLS` owns the ``ssl.SSLContext``: the serving certificate from files (reloaded
  when their modification time, size or inode changes; new handshakes get the new certificate) or
  a self-signed one, and the CAs client certificates are verified against (``CERT_OPTIONAL``:
  a client without a certificate may still use a bearer token). Rotated CAs are added to the live
  context; the application still decides which CA issued a certificate (:mod:`adapter.auth.certs`).
- :class:`ClientCertProtocol` (uvicorn's httptools protocol) hands each connection's client
  certificate to the application as ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM
  strings, the ASGI TLS extension); the value is ``None`` when the client sent no certificate.
  uvicorn itself puts nothing there.
- :func:`build_server` / :func:`serve` run it with graceful shutdown: on SIGTERM uvicorn stops
  accepting, lets in-flight requests finish for up to ``shutdown_timeout`` seconds, then exits.
- :func:`run_adapter` wires it all to one :class:`~adapter.app.context.AppContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapter.api.auth import AuthMiddleware
from adapter.app.context import build_context, start_task
from adapter.auth.authn import Authenticator
from adapter.auth.authz import Authorizer
from adapter.auth.certs import der_to_pem
from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.domain.errors import AdapterError, ConfigError
from adapter.serving.tls import self_signed
from adapter.settings import Settings

if TYPE_CHECKING:
    from adapter.backends.base import Backend
    from adapter.kube import KubeClient
    from adapter.rules.loader import RuleSet

__all__ = [
    "ClientCertProtocol",
    "ServingTLS",
    "bound_port",
    "build_server",
    "resolve_cluster",
    "resolve_scope",
    "run_adapter",
    "serve",
    "tls_extension",
]

log = logging.getLogger(__name__)

_KEEP_ALIVE_S = 120
"""Seconds an idle client connection stays open (uvicorn's default is 5)."""


@dataclass(frozen=True, slots=True)
class _FileStamp:
    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> _FileStamp:
        st = path.stat()
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class ServingTLS:
    """The server's ``SSLContext`` (``context``), kept current.

    ``cert_file``/``key_file`` are PEM paths; ``client_ca_pem`` is the PEM bundle of CAs a client
    certificate may chain to (empty: no client certificates are requested). TLS 1.2 or later,
    ALPN ``http/1.1`` (the server speaks HTTP/1.1 only).
    """

    def __init__(
        self,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        *,
        client_ca_pem: bytes = b"",
        _owned_dir: Path | None = None,
    ) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._owned_dir = _owned_dir
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        self.context.verify_mode = ssl.CERT_NONE
        self.reloads = 0
        """How many times the serving certificate was reloaded after start."""
        try:
            self._stamps = self._stamp()
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the serving certificate {self.cert_file} / key {self.key_file}: {exc}"
            ) from exc
        self.add_client_cas(client_ca_pem)

    @classmethod
    def generate(cls, hosts: Sequence[str], *, client_ca_pem: bytes = b"") -> ServingTLS:
        """A self-signed serving certificate for ``hosts``, in a private temporary directory."""
        directory = Path(tempfile.mkdtemp(prefix="llm-metrics-adapter-tls-"))
        cert_pem, key_pem = self_signed(list(hosts))
        key_path = directory / "tls.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        (directory / "tls.crt").write_bytes(cert_pem)
        return cls(
            directory / "tls.crt", key_path, client_ca_pem=client_ca_pem, _owned_dir=directory
        )

    def _stamp(self) -> tuple[_FileStamp, _FileStamp]:
        return _FileStamp.of(self.cert_file), _FileStamp.of(self.key_file)

    def add_client_cas(self, pem: bytes) -> None:
        """Trust ``pem`` (one or more CA certificates) for client certificates from now on.

        OpenSSL can only add to a live context's trust store: a CA removed from the cluster's
        configuration still completes the handshake, but :mod:`adapter.auth` no longer accepts
        certificates it issued.
        """
        if not pem.strip():
            return
        try:
            self.context.load_verify_locations(cadata=pem.decode("ascii"))
        except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot use the client CA bundle: {exc}") from exc
        self.context.verify_mode = ssl.CERT_OPTIONAL

    def reload_if_changed(self) -> bool:
        """Reload the certificate and key if either file changed; ``True`` if reloaded.

        A half-written or mismatched pair is logged and retried on the next poll; the previous
        certificate keeps serving meanwhile.
        """
        try:
            stamps = self._stamp()
        except OSError as exc:
            log.warning("serving certificate not readable, keeping the current one: %s", exc)
            return False
        if stamps == self._stamps:
            return False
        try:
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            log.warning("serving certificate changed but does not load yet: %s", exc)
            return False
        self._stamps = stamps
        self.reloads += 1
        log.info("reloaded the serving certificate from %s", self.cert_file)
        return True

    async def watch(self, interval: float) -> None:
        """Poll the files every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    def close(self) -> None:
        """Remove a generated certificate's temporary directory."""
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or ``None`` if it is not TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [der_to_pem(der)] if der else None,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


class ClientCertProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the ASGI TLS extension on every request of the connection.

    asyncio calls ``connection_made`` after the TLS handshake, so the peer certificate is known;
    the application callable is wrapped for this connection only.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        extension = tls_extension(transport)
        if extension is None:
            return
        inner = self.app

        async def app_with_tls(scope: Any, receive: Any, send: Any) -> None:
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = extension
            scope["extensions"] = extensions
            await inner(scope, receive, send)

        self.app = app_with_tls


def build_server(
    app: Any,
    *,
    host: str,
    port: int,
    tls: ServingTLS | None,
    shutdown_timeout: float = 10.0,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``host:port`` (``port=0``: any free port, see
    :func:`bound_port`). HTTPS with :class:`ClientCertProtocol` when ``tls`` is given, else
    plain HTTP (standalone mode). ``shutdown_timeout``: seconds in-flight requests get on SIGTERM.
    """
    context = tls.context if tls is not None else None
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # httptools (llhttp, C) parses HTTP/1.1 at a fraction of h11's CPU per request.
        http=ClientCertProtocol if tls is not None else "httptools",
        ws="none",
        lifespan="on",
        ssl_context_factory=(lambda _config, _default: context) if context is not None else None,
        timeout_graceful_shutdown=max(1, math.ceil(shutdown_timeout)),
        # uvicorn closes idle connections after 5 s, less than the HPA's 15 s sync period: every
        # sync would then pay a new TLS handshake (about 10 ms of CPU each in Python). The
        # aggregator's proxy keeps idle connections 90 s; stay above that so it closes first.
        timeout_keep_alive=_KEEP_ALIVE_S,
        log_level=log_level.lower(),
        # uvicorn's loggers go through the root logger: JSON like everything else.
        log_config=None,
        access_log=False,
        # Nothing in front of the adapter may rewrite the client address: it is logged.
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port a started server listens on."""
    for listener in server.servers:
        for sock in listener.sockets:
            port: int = sock.getsockname()[1]
            return port
    raise RuntimeError("the server is not listening yet")


async def serve(
    server: uvicorn.Server, *, tls: ServingTLS | None = None, reload_interval: float = 5.0
) -> None:
    """Run ``server`` until it exits (SIGTERM/SIGINT or ``server.should_exit``).

    Meanwhile the serving certificate ``tls`` (if given) is polled every ``reload_interval``
    seconds, until the server stops.
    """
    _freeze_startup_objects()
    async with contextlib.AsyncExitStack() as stack:
        if tls is not None:
            start_task(stack, tls.watch(reload_interval), name="tls-reload")
        await server.serve()


def _freeze_startup_objects() -> None:
    """Take what start-up built out of the cyclic garbage collector's reach.

    Imported modules, rules, clients and the application live as long as the process: about
    100,000 objects that every full collection would otherwise traverse again (about 55 ms each
    time on a 2-core machine, more under load: a pause that every request in flight waits out).
    Frozen, a full collection scans only what was created since. Garbage is collected first so
    none of it is kept for good.
    """
    gc.collect()
    gc.freeze()


_STARTUP_RETRY_S = 30.0


async def _read_auth_config(kube: KubeClient) -> AuthConfig:
    """The delegated-auth configmap, retried for up to ``_STARTUP_RETRY_S`` seconds at start."""
    deadline = time.monotonic() + _STARTUP_RETRY_S
    delay = 0.5
    while True:
        try:
            return await kube.read_auth_config()
        except AdapterError as exc:
            if time.monotonic() + delay > deadline:
                raise ConfigError(
                    f"cannot read the delegated authentication configuration ({exc.message}); "
                    "the adapter's service account needs the role "
                    "extension-apiserver-authentication-reader in kube-system"
                ) from exc
            log.warning("%s; retrying in %.1fs", exc.message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _serving_tls(settings: Settings, config: AuthConfig) -> ServingTLS:
    """The certificate files of the settings, or a self-signed certificate; client
    certificates are verified against the cluster's CAs."""
    serving = settings.serving
    if serving.tls_cert_file and serving.tls_private_key_file:
        return ServingTLS(
            serving.tls_cert_file, serving.tls_private_key_file, client_ca_pem=config.ca_bundle_pem
        )
    log.info("no --tls-cert-file given: serving a self-signed certificate")
    return ServingTLS.generate(["localhost", "127.0.0.1"], client_ca_pem=config.ca_bundle_pem)


def _server(settings: Settings, app: Any, *, tls: ServingTLS | None) -> uvicorn.Server:
    return build_server(
        app,
        host=settings.serving.host,
        port=settings.serving.port,
        tls=tls,
        shutdown_timeout=settings.serving.shutdown_timeout,
        log_level=settings.logging.level,
    )


def _location_used(settings: Settings) -> bool:
    """Whether a location would be filtered on and none is given: Stackdriver-style names
    served through Cloud Monitoring without ``--cloud-monitoring-location``."""
    from adapter.rules.stackdriver import options_from_settings

    if settings.cloud_monitoring.location:
        return False
    try:
        options = options_from_settings(settings)
    except ConfigError:
        return False  # reported where the rules are loaded
    return options is not None and options.mode == "cloud-monitoring"


def _with_location(settings: Settings, location: str, source: str) -> Settings:
    """``settings`` with ``location`` as the default of ``--cloud-monitoring-location``."""
    if settings.cloud_monitoring.location or not location:
        return settings
    log.info("Cloud Monitoring location %r (%s)", location, source)
    return replace(settings, cloud_monitoring=replace(settings.cloud_monitoring, location=location))


async def resolve_cluster(settings: Settings) -> Settings:
    """``settings`` with the cluster every query is scoped to, for serving in a cluster.

    ``--cluster`` wins; else the GKE metadata server's cluster-name; else :class:`ConfigError`
    (GMP and shared Prometheus hold several clusters' series under the same names, so an
    unscoped adapter would scale on other clusters' data). ``--all-clusters`` is the explicit,
    logged way to read them all.

    The location likewise: ``--cloud-monitoring-location``, else the metadata server's
    cluster-location, taken with its cluster-name, or with ``--cluster`` when the metadata
    server names that same cluster (asked then only if Cloud Monitoring filters on a location).
    """
    from adapter.backends.gke_metadata import cluster_attributes
    from adapter.backends.google_auth import METADATA_BASE_URL

    scope = settings.scope
    if scope.all_clusters:
        if scope.cluster:
            raise ConfigError("give --cluster or --all-clusters, not both")
        log.warning(
            "--all-clusters: queries are NOT scoped to one cluster; every cluster's series with"
            " the same names are read together"
        )
        return settings
    metadata_url = settings.gmp.endpoints.metadata or METADATA_BASE_URL
    if scope.cluster:
        log.info("queries are scoped to %s=%r (--cluster)", scope.cluster_label, scope.cluster)
        found = await cluster_attributes(metadata_url) if _location_used(settings) else None
        if found is None or found[0] != scope.cluster:
            return settings
        return _with_location(settings, found[1], f"GKE metadata server, cluster {found[0]!r}")
    found = await cluster_attributes(metadata_url)
    if found is None:
        raise ConfigError(
            "no cluster name: pass --cluster=NAME (the value of the cluster label on this"
            " cluster's series; on GKE it is read from the metadata server, which did not"
            " answer), or --all-clusters to read every cluster's series on purpose"
        )
    name, location = found
    log.info(
        "queries are scoped to %s=%r (GKE metadata server; location %s)",
        scope.cluster_label,
        name,
        location or "unknown",
    )
    settings = replace(settings, scope=replace(scope, cluster=name))
    return _with_location(settings, location, "GKE metadata server")


async def resolve_scope(settings: Settings, rules: RuleSet) -> tuple[Settings, RuleSet]:
    """:func:`resolve_cluster`, and ``rules`` compiled again when it found the location (the
    Cloud Monitoring rules filter on the location they were loaded with)."""
    resolved = await resolve_cluster(settings)
    if resolved.cloud_monitoring.location != settings.cloud_monitoring.location:
        from adapter.rules.loader import load_configured_rules

        rules = load_configured_rules(resolved)
    return resolved, rules


async def run_adapter(settings: Settings, *, rules: RuleSet, backend: Backend) -> None:
    """Serve until SIGTERM/SIGINT.

    Standalone: plain HTTP, no Kubernetes, no authentication. Otherwise: HTTPS (files or a
    self-signed certificate), delegated authentication and authorization against the cluster,
    and the watch-backed object cache for Pods and Object metrics. Raises :class:`ConfigError`
    when the cluster configuration cannot be read at start.

    Everything started here belongs to the application context: the server's shutdown closes it
    (see :func:`adapter.serving.asgi.create_app`), as does a failure before serving.
    """
    from starlette.middleware import Middleware

    from adapter.serving.asgi import create_app

    if settings.serving.standalone:
        async with build_context(settings, backend=backend, rules=rules) as ctx:
            await serve(_server(settings, create_app(ctx), tls=None))
        return

    # The Kubernetes client (tens of MiB) only where there is a cluster.
    from adapter.kube import KubeClient, ObjectCache

    settings, rules = await resolve_scope(settings, rules)
    kube = KubeClient.connect(
        settings.auth.kubeconfig,
        context=settings.auth.context,
        timeout=settings.backend.query_timeout,
    )
    objects = ObjectCache(kube)
    try:
        ctx = build_context(
            settings, backend=backend, rules=rules, objects=objects, hpa_reader=kube
        )
    except BaseException:
        kube.close()
        raise
    ctx.on_close(kube.close)
    async with ctx:
        holder = AuthConfigHolder(await _read_auth_config(kube))
        if not holder.current.requestheader_cas:
            log.warning(
                "the cluster publishes no requestheader CA: requests through the aggregator "
                "cannot be authenticated (is the aggregation layer configured?)"
            )
        tls = _serving_tls(settings, holder.current)
        ctx.on_close(tls.close)
        ctx.start_task(tls.watch(settings.serving.tls_reload_interval), name="tls-reload")
        holder.subscribe(lambda new: tls.add_client_cas(new.ca_bundle_pem))
        ctx.on_close(kube.watch_auth_config(holder, asyncio.get_running_loop()))
        objects.start()
        ctx.on_close(objects.stop)
        ttl = settings.auth.cache_ttl
        auth = Middleware(
            AuthMiddleware,
            authenticator=Authenticator(holder, tokens=kube, token_ttl=ttl),
            authorizer=Authorizer(kube, allow_ttl=ttl, deny_ttl=ttl),
            on_decision=lambda result, method: ctx.telemetry.auth_decisions.labels(
                result, method
            ).inc(),
        )
        await serve(_server(settings, create_app(ctx, middleware=[auth]), tls=tls))
