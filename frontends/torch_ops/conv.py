"""ATen conv handlers (being written)."""
