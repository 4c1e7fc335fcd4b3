"""`mnist evaluate` (being written)."""
