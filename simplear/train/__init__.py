"""Training stages: pretrain, SFT and GRPO."""
