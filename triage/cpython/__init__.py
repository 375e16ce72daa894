"""CPython internals: per-version structure layouts and readers of interpreter state."""
