"""ATen recurrent handlers (being written)."""
