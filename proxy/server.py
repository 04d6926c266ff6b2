"""Running the app under uvicorn (uvloop + httptools), one process or ``--workers N``."""

from __future__ import annotations

import functools
import logging
import os

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.app import ProxyApp
from proxy.config import Settings
from proxy.edgehit import HitAtTheEdge
from proxy.endpoint import QuietBrokenStreams
from proxy.limits import LimitedHttpToolsProtocol, Limits, connection_cap
from proxy.rawtarget import RawTargetMixin


class EdgeProtocol(HitAtTheEdge, LimitedHttpToolsProtocol, RawTargetMixin, HttpToolsProtocol):
    """The protocol ``serve`` runs: fresh hits written in place (``proxy.edgehit``), head limits (``proxy.limits``),
    request trailers dropped (``proxy.trailers``) and the raw request-target kept for the edge's parse
    (``proxy.rawtarget``).

    Listing ``HttpToolsProtocol`` last puts the mixin just above uvicorn's class in the MRO (EdgeProtocol,
    HitAtTheEdge, LimitedHttpToolsProtocol, TrailerlessProtocol, RawTargetMixin, HttpToolsProtocol): the limits check
    the target the client sent before the mixin gives uvicorn ``/`` for an absolute-form target without a path, and
    a request reaches ``HitAtTheEdge`` only once every limit has passed.
    """


def configure_logging(settings: Settings) -> None:
    from proxy.logs import configure

    configure(settings.log_format)
    logging.getLogger("uvicorn.error").addFilter(QuietBrokenStreams())


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_url_bytes=settings.max_url_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        head_timeout=settings.head_timeout,
        max_connections=connection_cap(settings.max_connections, reserved=settings.upstream_pool_size),
    )


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    # The protocol class goes to worker processes pickled: a partial of a module-level class and a frozen value.
    protocol = functools.partial(EdgeProtocol, limits=limits_of(settings))
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol,  # type: ignore[arg-type]  # httptools: head limits, trailers dropped, raw target kept
        ws="none",  # WebSocket is not proxied: an upgrade request is answered 501 by the protocol
        timeout_keep_alive=settings.keepalive_timeout,  # type: ignore[arg-type]  # a float works: call_later
        lifespan="on",
        access_log=False,  # the proxy writes its own access log line, with the cache outcome
        log_config=None,
        proxy_headers=False,  # the edge resolves the forwarding chain itself, from --trusted-proxies (proxy.trust)
        server_header=False,
        date_header=False,  # the origin's Date passes through; a stored response keeps its own Date
        timeout_graceful_shutdown=30,
        workers=settings.workers,
        factory=settings.workers > 1,
    )


def create_app_from_env() -> ProxyApp:
    """The factory uvicorn workers call (``--workers N``): settings come from ``CACHEPROXY_*``. It lives here, above
    ``proxy.app``, so that the app never imports the server that runs it."""
    settings = Settings.from_env()
    configure_logging(settings)
    return ProxyApp(settings)


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; in-flight requests finish first (uvicorn's graceful shutdown)."""
    configure_logging(settings)
    if settings.workers > 1:
        # Workers are fresh processes: they rebuild the settings from the environment.
        os.environ.update(settings.to_env())
        from proxy.admin.metrics import prepare_multiprocess, remove_multiprocess_dir

        made_here = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        metrics_dir = prepare_multiprocess()  # the workers' metrics are summed through files in this directory
        config = uvicorn_config(settings, "proxy.server:create_app_from_env")
        sock = config.bind_socket()
        try:
            uvicorn.supervisors.Multiprocess(config, sockets=[sock]).run()
        finally:
            if made_here:
                remove_multiprocess_dir(metrics_dir)
        return
    uvicorn.Server(uvicorn_config(settings, ProxyApp(settings))).run()
