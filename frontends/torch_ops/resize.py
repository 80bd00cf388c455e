"""ATen resize handlers (being written)."""
