"""Per-route caching rules: the model, loading and validating rules.yaml, matching requests, hot reload."""
