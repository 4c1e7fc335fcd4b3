"""`mnist predict` (being written)."""
