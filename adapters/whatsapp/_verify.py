"""Meta's webhook signature (PLATFORM.md §1.2), shared by the three Meta channels: see
`adapters.meta`."""

from adapters.meta import sign, verify_signature

__all__ = ["sign", "verify_signature"]
