"""Keys, entries and their codec, single-flight coalescing, and the service that drives decisions through I/O."""
