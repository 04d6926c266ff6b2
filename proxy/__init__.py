"""cacheproxy: a caching reverse proxy for HTTP APIs."""

__version__ = "0.1.0"
