"""The container's HEALTHCHECK: GET the proxy's healthz where the settings put it, exit 0 when it answers 200.

It reads the same variables as ``cacheproxy serve`` (``CACHEPROXY_PORT``, ``CACHEPROXY_ADMIN_PREFIX``,
``CACHEPROXY_HOST``), so moving the port or the admin prefix moves the probe with them. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

WILDCARDS = ("", "0.0.0.0", "::")  # listening everywhere: probe over loopback


def healthz_url(environ: dict[str, str]) -> str:
    host = environ.get("CACHEPROXY_HOST", "")
    host = "127.0.0.1" if host in WILDCARDS else f"[{host}]" if ":" in host else host
    port = environ.get("CACHEPROXY_PORT") or "8080"
    prefix = environ.get("CACHEPROXY_ADMIN_PREFIX") or "/_cacheproxy"
    return f"http://{host}:{port}{prefix}/healthz"


def main() -> int:
    url = healthz_url(dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            ok = response.status == 200
    except (OSError, urllib.error.URLError) as error:
        print(f"healthcheck: {url}: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
