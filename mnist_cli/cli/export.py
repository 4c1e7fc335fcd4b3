"""`mnist export` (being written)."""
