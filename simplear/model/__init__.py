"""The SimpleAR language model: vocabulary, prompt contract, load and save."""
