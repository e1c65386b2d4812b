"""Visual tokenizers: images to discrete codes and back."""
