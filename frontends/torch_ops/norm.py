"""ATen norm handlers (being written)."""
