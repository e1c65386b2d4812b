"""trl's GRPOTrainer with a prompt order that depends only on (seed, epoch), so that a resumed run replays it.

trl's RepeatSampler draws every epoch's order from one generator that keeps running from epoch to epoch. A run
resumed in a later epoch starts that generator afresh and so trains on other prompts than the run it continues.
Reseeding at `set_epoch`, which the HF Trainer calls before every epoch (the resumed one included), fixes that.
"""

from __future__ import annotations

from torch.utils.data import Dataset, Sampler
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler


class EpochSeededRepeatSampler(RepeatSampler):
    """RepeatSampler whose shuffle of epoch e comes from a generator seeded with seed + e."""

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for `epoch`."""
        if self.shuffle:
            self.generator.manual_seed(self.seed + epoch)


class ResumableGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose training prompts come in the same order however often the run is resumed."""

    def _get_train_sampler(self, dataset: Dataset | None = None) -> Sampler:
        """trl's repeat sampler (groups, steps per generation, iterations), seeded per epoch."""
        return EpochSeededRepeatSampler(
            data_source=self.train_dataset if dataset is None else dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )
