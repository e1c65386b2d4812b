"""SimpleAR platform: train, align and serve SimpleAR text-to-image models."""
