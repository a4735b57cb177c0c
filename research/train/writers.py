"""Where a run's metrics go besides metrics.jsonl: TensorBoard always, Weights & Biases when
`log.wandb_project` is set. One small interface, so another service is one class.

Only process 0 writes (the run record's MetricsLog owns the writers).
"""

import hashlib
import json
import pathlib
from typing import Any

import ml_collections
import numpy as np

from research import config as config_lib


class Writer:
    """Scalars per step, the run's hyperparameters once, images and text."""

    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def hparams(self, values: dict[str, Any]) -> None: ...

    def image(self, step: int, name: str, pixels: np.ndarray) -> None:
        """pixels [height, width, channels] uint8."""

    def text(self, step: int, name: str, text: str) -> None: ...

    def close(self) -> None: ...


class TensorBoard(Writer):
    """TensorBoard event files in WORKDIR/tensorboard; a resumed run purges the steps after its
    checkpoint, so the curves equal an uninterrupted run's."""

    def __init__(self, directory: pathlib.Path, resume_step: int):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(directory), purge_step=resume_step + 1)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def hparams(self, values: dict[str, Any]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(values.items()))
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + table, 0)

    def image(self, step: int, name: str, pixels: np.ndarray) -> None:
        self.writer.add_image(name, pixels, step, dataformats="HWC")

    def text(self, step: int, name: str, text: str) -> None:
        self.writer.add_text(name, text, step)

    def close(self) -> None:
        self.writer.close()


class WeightsAndBiases(Writer):
    """A W&B run in WORKDIR/wandb, offline unless log.wandb_mode="online" (`wandb sync
    WORKDIR/wandb/offline-run-*` uploads it later). Its id comes from the workdir, so a resumed
    run continues the same W&B run. W&B's steps only go forward, so the test row (at the best
    epoch's step) and the final figure are logged at the newest step."""

    def __init__(self, workdir: pathlib.Path, log: ml_collections.ConfigDict, name: str):
        import wandb

        workdir = workdir.resolve()
        self.run = wandb.init(
            project=log.wandb_project,
            mode=log.wandb_mode,
            dir=str(workdir),
            name=f"{name}-{workdir.name}",
            id=hashlib.sha1(str(workdir).encode()).hexdigest()[:16],
            resume="allow",
            reinit="create_new",  # a vmapped group logs one run per point at once
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.wandb, self.step = wandb, 0

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.step = max(step, self.step)
        self.run.log(values, step=self.step)

    def hparams(self, values: dict[str, Any]) -> None:
        self.run.config.update(values, allow_val_change=True)

    def image(self, step: int, name: str, pixels: np.ndarray) -> None:
        self.run.log({name: self.wandb.Image(pixels)}, step=max(step, self.step))

    def text(self, step: int, name: str, text: str) -> None:
        self.run.summary[name] = text

    def close(self) -> None:
        self.run.finish()


def open_writers(
    workdir: pathlib.Path, config: ml_collections.ConfigDict, resume_step: int
) -> list[Writer]:
    """The run's writers, each told the config (flattened keys) as its hyperparameters."""
    writers: list[Writer] = [TensorBoard(workdir / "tensorboard", resume_step)]
    if config.log.wandb_project:
        writers.append(WeightsAndBiases(workdir, config.log, config.name))
    flat = config_lib.flatten(json.loads(config_lib.to_json(config)))
    for writer in writers:
        writer.hparams(flat)
    return writers
