"""ATen shape handlers (being written)."""
