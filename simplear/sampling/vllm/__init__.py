"""vLLM as a SamplingEngine: the engine, and the CFG processor and pair schedulers vLLM loads by name."""
