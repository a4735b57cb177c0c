"""Tests of the sweep combinators, sampling and expansion against a locked config."""

import itertools
import math
import re
import statistics

import ml_collections
import pytest

from research import sweep
from research.config import base_config
from research.errors import UserError
from research.models import default_config

LR, BS, SEED = "optimizer.learning_rate", "data.batch_size", "seed"


def make_config() -> ml_collections.ConfigDict:
    """A whole config (expand validates each point) with a LeNet, whose features are a tuple."""
    config = base_config("toy")
    config.optimizer.learning_rate = 0.1
    config.model = default_config("lenet", activation="relu", features=(64, 32))
    config.lock()
    return config


def grid() -> sweep.Sweep:
    return sweep.product(
        sweep.axis(LR, [0.01, 0.03, 0.1]), sweep.axis(BS, [64, 128]), sweep.axis(SEED, [0, 1])
    )


def test_product_has_every_combination_with_the_last_axis_fastest():
    points = grid()
    assert len(points) == 12
    expected = itertools.product([0.01, 0.03, 0.1], [64, 128], [0, 1])
    assert [(p[LR], p[BS], p[SEED]) for p in points] == list(expected)
    assert points[3] == {LR: 0.01, BS: 128, SEED: 1}


def test_product_rejects_a_key_on_two_axes():
    with pytest.raises(UserError, match="optimizer.learning_rate"):
        sweep.product(sweep.axis(LR, [0.1]), sweep.axis(LR, [0.3]))


def test_zipped_pairs_values_and_needs_equal_lengths():
    points = sweep.zipped(sweep.axis(BS, [32, 64, 128]), sweep.axis(LR, [0.025, 0.05, 0.1]))
    assert points == [{BS: 32, LR: 0.025}, {BS: 64, LR: 0.05}, {BS: 128, LR: 0.1}]
    with pytest.raises(UserError, match=r"\[3, 2\]"):
        sweep.zipped(sweep.axis(BS, [32, 64, 128]), sweep.axis(LR, [0.1, 0.2]))


def test_axes_may_be_prebuilt_lists_and_chain_concatenates():
    paired = sweep.zipped(sweep.axis(BS, [64, 128]), sweep.axis(LR, [0.05, 0.1]))
    crossed = sweep.product(paired, sweep.axis(SEED, [0, 1, 2]))
    assert len(crossed) == 6 and crossed[5] == {BS: 128, LR: 0.1, SEED: 2}
    extra = [{LR: 1.0}]
    chained = sweep.chain(crossed, extra)
    assert chained == crossed + extra


def test_sample_is_reproducible_and_within_bounds():
    space = {
        LR: sweep.log(1e-4, 1e-1),
        "optimizer.weight_decay": sweep.linear(0.0, 0.5),
        BS: sweep.log(16, 512, integer=True),
        "model.activation": sweep.choice(["relu", "gelu"]),
    }
    for method in ("random", "sobol", "halton"):
        points = sweep.sample(space, 64, seed=3, method=method)
        assert points == sweep.sample(space, 64, seed=3, method=method)
        assert points != sweep.sample(space, 64, seed=4, method=method)
        assert all(1e-4 <= p[LR] <= 1e-1 and type(p[LR]) is float for p in points)
        assert all(0.0 <= p["optimizer.weight_decay"] <= 0.5 for p in points)
        assert all(16 <= p[BS] <= 512 and type(p[BS]) is int for p in points)
        assert {p["model.activation"] for p in points} == {"relu", "gelu"}


def test_log_sampling_is_uniform_in_the_exponent():
    values = [p[LR] for p in sweep.sample({LR: sweep.log(1e-4, 1e-1)}, 4001, seed=0)]
    geometric_mean = math.sqrt(1e-4 * 1e-1)
    assert math.log10(statistics.median(values)) == pytest.approx(
        math.log10(geometric_mean), abs=0.05
    )
    assert sum(v < 1e-3 for v in values) / len(values) == pytest.approx(1 / 3, abs=0.03)


def test_integer_linear_sampling_covers_both_ends_evenly():
    values = [p["k"] for p in sweep.sample({"k": sweep.linear(1, 3, integer=True)}, 3000, seed=0)]
    for k in (1, 2, 3):
        assert values.count(k) / len(values) == pytest.approx(1 / 3, abs=0.03)


def test_sobol_stratifies_each_dimension():
    points = sweep.sample({"x": sweep.linear(0.0, 1.0)}, 16, seed=0, method="sobol")
    assert sorted(int(p["x"] * 16) for p in points) == list(range(16))


def test_sample_rejects_bad_arguments():
    with pytest.raises(UserError, match="0 < low"):
        sweep.log(0.0, 1.0)
    with pytest.raises(UserError, match="integer bounds"):
        sweep.linear(0.5, 3, integer=True)
    with pytest.raises(UserError, match="latin"):
        sweep.sample({LR: sweep.log(1e-3, 1e-1)}, 4, seed=0, method="latin")


def test_expand_resolves_configs_with_the_overrides():
    config = make_config()
    points = sweep.expand(config, grid())
    assert [p.index for p in points] == list(range(12))
    assert points[3].overrides == {LR: 0.01, BS: 128, SEED: 1}
    assert points[3].config.optimizer.learning_rate == 0.01
    assert points[3].config.data.batch_size == 128 and points[3].config.seed == 1
    assert points[3].config.optimizer.weight_decay == 0.0
    assert all(p.config.is_locked for p in points)
    assert config.optimizer.learning_rate == 0.1 and config.seed == 0
    ints_for_float = sweep.expand(config, [{LR: 1}])
    assert type(ints_for_float[0].config.optimizer.learning_rate) is float


def test_expand_names_are_readable_stable_unique_and_filesystem_safe():
    points = sweep.expand(make_config(), grid())
    assert points[3].name == "003-lr=0.01,bs=128,seed=1"
    assert points[11].name == "011-lr=0.1,bs=128,seed=1"
    assert [p.name for p in points] == [p.name for p in sweep.expand(make_config(), grid())]
    assert len({p.name for p in points}) == 12
    odd = sweep.expand(make_config(), [{"model.features": [128, 64]}, {LR: 3e-5}])
    assert odd[0].name == "000-features=128x64"
    assert odd[1].name == "001-lr=3e-05"
    unsafe = sweep.describe({"model.activation": "leaky relu/2", "model.features": [128, 64]})
    assert unsafe == "activation=leaky_relu_2,features=128x64"
    assert all(re.fullmatch(r"[A-Za-z0-9._,=+-]+", p.name) for p in points + odd)


def test_expand_rejects_an_unknown_key_naming_it_and_the_point():
    points = [{LR: 0.1}, {LR: 0.1, "optimizer.learning_rat": 0.3}]
    with pytest.raises(UserError, match=r"Sweep point 1 .*'optimizer\.learning_rat'"):
        sweep.expand(make_config(), points)


@pytest.mark.parametrize(
    "bad",
    [{BS: 12.5}, {BS: True}, {LR: "fast"}, {"model.activation": 3}, {"optimizer": 0.1}],
)
def test_expand_rejects_a_wrong_type(bad):
    key = next(iter(bad))
    with pytest.raises(UserError, match=rf"Sweep point 2 .*'{re.escape(key)}'"):
        sweep.expand(make_config(), [{SEED: 0}, {SEED: 1}, bad])


def test_expand_rejects_duplicate_points_and_non_dicts():
    with pytest.raises(UserError, match="points 0 and 2 are identical"):
        sweep.expand(make_config(), [{LR: 0.1}, {LR: 0.2}, {LR: 0.1}])
    with pytest.raises(UserError, match="point 0 is"):
        sweep.expand(make_config(), [(LR, 0.1)])


def test_group_key_drops_only_the_seed():
    points = grid()
    assert sweep.group_key(points[0]) == sweep.group_key(points[1])
    assert sweep.group_key(points[0]) != sweep.group_key(points[2])
    assert len({sweep.group_key(p) for p in points}) == 6
    assert sweep.group_key({SEED: 1, BS: 64, LR: 0.1}) == ((BS, 64), (LR, 0.1))
