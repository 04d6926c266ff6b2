"""Invalidation after unsafe requests (RFC 9111 §4.4): which stored URIs a successful POST, PUT, PATCH or
DELETE voids.

The target URI always; the URIs in ``Location`` and ``Content-Location`` only when they share the request's
origin, so that one origin cannot evict another's entries.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urldefrag, urljoin, urlsplit

from proxy.messages import SAFE_METHODS, RequestHead, ResponseHead

# RFC 9110 §9.2.1: the safe methods; every other method, known or not, may change state.
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """RFC 6454 §4 style origin: scheme, host and port, with the scheme's default port filled in."""
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def same_origin_uri(base: str, reference: str) -> str | None:
    """``reference`` resolved against ``base`` without its fragment, or ``None`` when foreign or malformed."""
    try:
        resolved = urldefrag(urljoin(base, reference.strip())).url
        same = _origin(urlsplit(resolved)) == _origin(urlsplit(base))
    except ValueError:
        return None
    return resolved if same else None


def invalidated_urls(request: RequestHead, response: ResponseHead) -> list[str]:
    """RFC 9111 §4.4: the absolute URIs to invalidate after ``response`` to ``request``, deduplicated, in
    order.

    Nothing for a safe method or an error status (only 2xx and 3xx invalidate).
    """
    if request.method in SAFE_METHODS or not 200 <= response.status < 400:
        return []
    target = request.url
    out = [target]
    for name in ("location", "content-location"):
        value = response.headers.get(name)
        if not value or not value.strip():
            continue
        uri = same_origin_uri(target, value)
        if uri is not None and uri not in out:
            out.append(uri)
    return out
