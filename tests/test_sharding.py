"""The mesh and sharding rules from the config, and the same training on 1 and 8 devices.

8 simulated CPU devices (data=8, and fsdp=2 x data=4) reach the parameters of a 1-device run to
float rounding: the same global batch, summed in a different order.
"""

import jax
import ml_collections
import orbax.checkpoint as ocp
import pytest
from jax.sharding import PartitionSpec
from multidevice import (  # noqa: F401
    assert_close_runs,
    finish,
    leftovers_killed,
    one_device_run,
    start_train,
)

from research.errors import UserError
from research.train import sharding


def rules(**overrides) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"data": -1, "fsdp": 2, "fsdp_min_size": 16, "replicate": (), **overrides}
    )


def test_fsdp_shards_the_largest_divisible_dimension():
    assert sharding.leaf_spec("params/Dense_0/kernel", (64, 10), 2, rules()) == PartitionSpec(
        "fsdp", None
    )
    assert sharding.leaf_spec("params/Conv_0/kernel", (3, 3, 5, 8), 2, rules()) == PartitionSpec(
        None, None, None, "fsdp"
    )


def test_small_indivisible_and_listed_leaves_are_replicated():
    assert sharding.leaf_spec("params/Dense_0/bias", (10,), 2, rules()) == PartitionSpec()
    assert sharding.leaf_spec("params/Dense_0/kernel", (63, 9), 2, rules()) == PartitionSpec()
    listed = rules(replicate=("Dense_0",))
    assert sharding.leaf_spec("opt_state/0/mu/Dense_0/kernel", (64, 10), 2, listed) == (
        PartitionSpec()
    )
    assert sharding.leaf_spec("params/Dense_0/kernel", (64, 10), 1, rules()) == PartitionSpec()


def test_mesh_sizes_that_do_not_fit_are_user_errors():
    with pytest.raises(UserError, match="mesh.data=2 x mesh.fsdp=1 asks for 2 devices"):
        sharding.make_mesh(rules(data=2, fsdp=1))
    with pytest.raises(UserError, match="mesh.fsdp=3 must be a positive divisor"):
        sharding.make_mesh(rules(fsdp=3))


def test_batch_not_divisible_by_the_batch_axes_is_a_user_error():
    mesh = jax.sharding.Mesh([[jax.devices()[0]]], sharding.BATCH_AXES)
    sharding.check_batch_size(7, mesh, "data.batch_size")
    fake = type("FakeMesh", (), {"shape": {"data": 4, "fsdp": 2}})()
    with pytest.raises(UserError, match=r"data.batch_size=12 is not divisible by the 8 devices"):
        sharding.check_batch_size(12, fake, "data.batch_size")


def test_non_divisible_batch_stops_the_run_before_compiling(tmp_path):
    process = start_train(tmp_path, 8, "--config.data.batch_size=36")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "data.batch_size=36 is not divisible by the 8 devices" in stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """The same 60 steps on 1 device, 8 devices (data) and 8 devices (fsdp=2 x data=4)."""
    workdirs = {name: tmp_path_factory.mktemp(name) for name in ("data8", "fsdp2")}
    processes = [
        start_train(workdirs["data8"], 8),
        start_train(workdirs["fsdp2"], 8, "--config.mesh.fsdp=2", "--config.mesh.fsdp_min_size=16"),
    ]
    workdirs["one"] = request.getfixturevalue("one_device_run")  # Meanwhile, if not made yet.
    for process in processes:
        finish(process)
    return workdirs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["data8", "fsdp2"])
def test_eight_devices_train_like_one(runs, name):
    assert_close_runs(runs[name], runs["one"])


@pytest.mark.slow
def test_fsdp_run_saves_sharded_parameters_and_adam_moments(runs):
    step = max(int(p.name) for p in (runs["fsdp2"] / "checkpoints/latest").iterdir())
    metadata = ocp.StandardCheckpointer().metadata(
        runs["fsdp2"] / f"checkpoints/latest/{step}/state"
    )
    flat = ocp.tree.to_flat_dict(metadata.item_metadata.tree)
    spec = lambda *path: tuple(flat[path].sharding.partition_spec)
    assert spec("params", "Dense_0", "kernel") == ("fsdp", None)  # [64 inputs, 32 outputs]
    # inner_state: (add_decayed_weights, adam)
    assert spec("opt_state", "inner_state", "1", "0", "mu", "Dense_0", "kernel") == ("fsdp", None)
    assert spec("params", "Conv_0", "kernel") == (None, None, None, "fsdp")  # [5, 5, 1, 8]
    assert spec("params", "Dense_1", "bias") == ()  # 10 < fsdp_min_size
    assert tuple(flat["params", "Dense_0", "kernel"].sharding.shape) == (4, 2)  # data x fsdp
