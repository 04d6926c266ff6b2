"""Running the app under uvicorn (uvloop + httptools), one process or ``--workers N``."""

from __future__ import annotations

import logging
import os

import uvicorn

from proxy.config import Settings
from proxy.endpoint import QuietBrokenStreams
from proxy.rawtarget import RawTargetProtocol


def configure_logging(settings: Settings) -> None:
    from proxy.logs import configure

    configure(settings.log_format)
    logging.getLogger("uvicorn.error").addFilter(QuietBrokenStreams())


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=RawTargetProtocol,  # httptools, keeping the raw request-target for the edge's parse (proxy.head)
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


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; in-flight requests finish first (uvicorn's graceful shutdown)."""
    configure_logging(settings)
    if settings.workers > 1:
        # Workers are fresh processes: they rebuild the settings from the environment.
        os.environ.update(settings.to_env())
        from proxy.admin.metrics import prepare_multiprocess, remove_multiprocess_dir

        made_here = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        metrics_dir = prepare_multiprocess()  # the workers' metrics are summed through files in this directory
        config = uvicorn_config(settings, "proxy.app:create_app_from_env")
        sock = config.bind_socket()
        try:
            uvicorn.supervisors.Multiprocess(config, sockets=[sock]).run()
        finally:
            if made_here:
                remove_multiprocess_dir(metrics_dir)
        return
    from proxy.app import ProxyApp

    uvicorn.Server(uvicorn_config(settings, ProxyApp(settings))).run()
