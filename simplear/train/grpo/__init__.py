"""GRPO: trl's GRPOTrainer fed by a RolloutClient; prompts from meta files, rewards from the registry."""
