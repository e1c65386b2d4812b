"""Decoding codes from the model: KV cache, CFG, top-k/top-p, CUDA graphs, SJD, and the SamplingEngine seam."""
