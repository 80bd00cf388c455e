"""ATen index handlers (being written)."""
