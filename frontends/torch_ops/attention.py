"""ATen attention handlers (being written)."""
