"""ATen pool handlers (being written)."""
