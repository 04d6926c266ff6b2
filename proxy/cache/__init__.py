"""Keys, single-flight coalescing, and the driver that takes one decision per request through the store and the origin
port (``proxy.origin``) to one frozen ``Answer``. No HTTP client, ASGI or Redis type is imported here."""
