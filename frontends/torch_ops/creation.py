"""ATen creation handlers (being written)."""
