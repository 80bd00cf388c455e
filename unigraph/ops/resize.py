"""resize ops (being written)."""
