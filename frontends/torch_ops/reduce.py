"""ATen reduce handlers (being written)."""
