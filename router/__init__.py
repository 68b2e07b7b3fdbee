"""Policy and state on Redis: dedup, windows, routing, publishing. Imports `adapters` only."""
