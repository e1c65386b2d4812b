"""The run's metrics as TensorBoard event files, written locally and copied to the store after every row."""

from __future__ import annotations

from pathlib import Path

from simplear.store import Store, join


class TensorBoardMetricsLog:
    """Scalars under `train/`; a resumed run's file hides the earlier run's events from its first step on."""

    def __init__(self, store: Store, uri: str, local_dir: Path, resume_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError(
                "TensorBoard logging needs the tensorboard package (simplear[train]); or turn it off (--no-tensorboard)"
            ) from exc
        self.store = store
        self.uri = uri
        self.local_dir = local_dir
        self.writer = SummaryWriter(str(local_dir), purge_step=resume_step + 1 if resume_step else None)

    def write(self, row: dict) -> None:
        """Add every numeric field of the row but its step and wall time as a scalar, then upload the event file."""
        for name, value in row.items():
            if name not in ("step", "time") and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{name}", value, row["step"])
        self._upload()

    def close(self) -> None:
        """Flush, close and upload the event file."""
        self.writer.close()
        self._upload()

    def _upload(self) -> None:
        """Copy the local event files to the store."""
        self.writer.flush()
        for path in sorted(self.local_dir.glob("events.out.tfevents.*")):
            self.store.upload_file(path, join(self.uri, path.name))
