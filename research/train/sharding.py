"""The device mesh from the config, and global batches built from each process's local part.

The same code runs on one CPU, simulated CPU devices, a GPU box or many hosts: the batch is
split over the `data` axis and the train state is replicated.
"""

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from research.errors import UserError


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
    """A 1-D `data` mesh over `mesh.data` devices (-1: all of them)."""
    available = jax.device_count()
    size = available if config.data == -1 else config.data
    if size < 1 or size > available:
        raise UserError(
            f"mesh.data={config.data} asks for {size} devices but {available} are visible. "
            f"Pass --config.mesh.data=-1 to use all devices, or a number from 1 to {available}."
        )
    return Mesh(np.asarray(jax.devices()[:size]), ("data",))


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
    size = mesh.shape["data"]
    if batch_size % size:
        raise UserError(
            f"{key}={batch_size} is not divisible by the {size} devices of the mesh's data "
            f"axis, so the batch cannot be split evenly. Pass a multiple of {size}, or set "
            f"--config.mesh.data to a divisor of {batch_size}."
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles a global batch from this process's rows (all of them on a single host)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
