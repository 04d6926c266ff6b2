"""The admin surface under the reserved prefix: health, metrics, purge and the status page."""
