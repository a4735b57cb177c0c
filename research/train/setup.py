"""What a config names, built: the dataset, the task and the model (no state, no workdir).

Shared by the loop, `launch.bench` (which may pass stand-in data of the same shapes) and the
restore of a finished run for sampling and `init_from`.
"""

from typing import Any

import flax.linen as nn
import ml_collections

from research import data as data_lib
from research.models import build_model, data_fields
from research.tasks import Task, build_task


def model_kwargs(config: ml_collections.ConfigDict, info: dict[str, Any]) -> dict[str, Any]:
    """The model's constructor arguments: config.model's fields plus what the data decides."""
    kwargs = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in config.items()}
    kwargs.pop("name")
    for field in data_fields(config.name):
        if field in info:
            kwargs.setdefault(field, info[field])
    return kwargs


def build_setup(
    config: ml_collections.ConfigDict, dataset: data_lib.Dataset | None = None
) -> tuple[data_lib.Dataset, Task, nn.Module]:
    """The dataset (loaded unless given), task and model of `config`."""
    dataset = dataset or data_lib.load(config.data)
    task = build_task(config.task, dataset.info)
    model = build_model(config.model.name, **model_kwargs(config.model, dataset.info))
    return dataset, task, model
