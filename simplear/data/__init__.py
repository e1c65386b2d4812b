"""Datasets: meta files, synthetic shapes, token shards."""
