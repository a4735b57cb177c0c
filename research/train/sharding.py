"""The device mesh and the sharding of the train state and batches, all read from the config.

The same code runs on one CPU, simulated CPU devices, a GPU box or many hosts: the batch is split
over the (`data`, `fsdp`) axes and each state leaf is replicated or sharded along `fsdp`.
"""

import re
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from research.errors import UserError

BATCH_AXES = ("data", "fsdp")


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
    """A (`data`, `fsdp`) mesh: `mesh.fsdp` devices per group, `mesh.data` groups (-1: all)."""
    available = jax.device_count()
    fsdp = config.fsdp
    if fsdp < 1 or available % fsdp:
        raise UserError(
            f"mesh.fsdp={fsdp} must be a positive divisor of the {available} visible devices. "
            "Pass --config.mesh.fsdp=1 to replicate the state, or a divisor of the device count."
        )
    data = available // fsdp if config.data == -1 else config.data
    if data < 1 or data * fsdp > available:
        raise UserError(
            f"mesh.data={config.data} x mesh.fsdp={fsdp} asks for {data * fsdp} devices but "
            f"{available} are visible. Pass --config.mesh.data=-1 to use all devices, or a "
            f"number from 1 to {available // fsdp}."
        )
    if data * fsdp < available and jax.process_count() > 1:
        raise UserError(
            f"A multi-process run must use all {available} devices, but mesh.data={data} x "
            f"mesh.fsdp={fsdp} uses {data * fsdp}. Pass --config.mesh.data=-1."
        )
    # jax.devices() lists each process's devices together, so every process holds whole rows
    # of the batch.
    devices = np.asarray(jax.devices()[: data * fsdp]).reshape(data, fsdp)
    return Mesh(devices, BATCH_AXES)


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
    """Refuses, before compiling, a batch the mesh's batch axes cannot split evenly."""
    size = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch_size % size:
        raise UserError(
            f"{key}={batch_size} is not divisible by the {size} devices of the mesh's batch "
            f"axes (data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}), so the batch "
            f"cannot be split evenly. Pass a multiple of {size}, or set --config.mesh.data "
            "(and --config.mesh.fsdp) so that their product divides the batch size."
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def leaf_spec(path: str, shape: tuple[int, ...], fsdp: int, config) -> PartitionSpec:
    """Shards a leaf's largest dimension divisible by `fsdp`; replicates small or listed ones."""
    size = int(np.prod(shape, dtype=np.int64))
    if (
        fsdp == 1
        or size < config.fsdp_min_size
        or any(re.search(pattern, path) for pattern in config.replicate)
    ):
        return PartitionSpec()
    divisible = [d for d in range(len(shape)) if shape[d] % fsdp == 0]
    if not divisible:
        return PartitionSpec()
    largest = max(divisible, key=lambda d: (shape[d], -d))
    return PartitionSpec(*(("fsdp" if d == largest else None) for d in range(len(shape))))


def state_shardings(abstract_state: Any, mesh: Mesh, config: ml_collections.ConfigDict) -> Any:
    """The sharding of every leaf of the train state (params, optimizer state, BN statistics).

    The rules see each leaf's path ("params/Conv_0/kernel", "opt_state/0/mu/Conv_0/kernel"), so
    Adam's moments are sharded exactly like their parameters.
    """

    def sharding(path, leaf) -> NamedSharding:
        name = "/".join(_key_name(key) for key in path)
        return NamedSharding(mesh, leaf_spec(name, leaf.shape, mesh.shape["fsdp"], config))

    return jax.tree_util.tree_map_with_path(sharding, abstract_state)


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)
