"""Model serving."""
