"""The tokenize job: meta records to token shards and a manifest in the store, split over ranks, resumable."""
