"""The gateway process: config, HTTP ingress, lifecycle, CLI. Imports `router` and `adapters`."""
