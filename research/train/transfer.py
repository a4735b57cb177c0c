"""A finished run's best parameters, for sampling and for starting another run from them
(`init_from`): restored without reloading its data, and copied group by group.
"""

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.errors import UserError
from research.models import build_model
from research.train.checkpoint import restore_best
from research.train.optim import evaluation_params, make_optimizer
from research.train.setup import model_kwargs
from research.train.steps import create_state


def restore_best_params(
    workdir: str | pathlib.Path,
) -> tuple[ml_collections.ConfigDict, nn.Module, Any]:
    """(config, model, evaluation parameters of the best checkpoint) of a finished token-model
    run (of either executor): the parameter average where the run kept one. The target state is
    built as the loop builds it, with vocab_size from the run's vocab.json so that nothing
    reloads the data.
    """
    workdir = pathlib.Path(workdir)
    needed = [workdir / "config.json", workdir / "vocab.json", workdir / "checkpoints" / "best"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise UserError(
            f"{str(workdir)!r} is not the workdir of a finished run on text data: it lacks "
            f"{', '.join(missing)}. Pass the --workdir of such a run of launch.train."
        )
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    info = {"vocab_size": json.loads((workdir / "vocab.json").read_text())["vocab_size"]}
    model = build_model(config.model.name, **model_kwargs(config.model, info))
    tx = make_optimizer(config.optimizer, 1, config.train.num_epochs)
    init = lambda key: create_state(model, tx, jnp.ones((1, 1), jnp.int32), key)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(  # shapes only: nothing is computed before the restore
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
        jax.eval_shape(init, jax.random.key(0)),
    )
    restored = restore_best(workdir, target)
    if restored is None:
        raise UserError(f"{str(workdir)!r} has no best checkpoint yet; let its run finish.")
    state = restored[0]
    return config, model, evaluation_params(state.params, state.opt_state)


def init_shared_from(workdir: str, states: Sequence[Any], info: dict[str, Any]) -> list[Any]:
    """`states` (one per point) with the parameter groups they share with the best checkpoint
    of the run in `workdir` copied from there: the top-level groups both models have by name,
    such as a Transformer's `encoder` (from a masked LM) or an RNN's `embed` and `layers_<i>`
    (from a language model). The rest, the new task's head, keeps its initialisation.
    """
    _, _, source_params = restore_best_params(workdir)  # checks first that the files are there
    source_vocabulary = json.loads((pathlib.Path(workdir) / "vocab.json").read_text())
    if info.get("vocabulary") != source_vocabulary:
        raise UserError(
            f"init_from={workdir!r} was trained with another vocabulary than this run's data. "
            f"Tokenize with it: --config.data.vocab_path={workdir}/vocab.json."
        )
    params = states[0].params
    shared = sorted(params.keys() & source_params.keys())
    if not shared:
        raise UserError(
            f"init_from={workdir!r}: its model shares no parameter group with this one (there: "
            f"{sorted(source_params)}; here: {sorted(params)}). Start from a run of the "
            "same family: a masked LM for a Transformer, a language model for an RNN."
        )

    def shapes(tree) -> dict[str, tuple[int, ...]]:
        leaves = jax.tree_util.tree_leaves_with_path({name: tree[name] for name in shared})
        return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}

    here, there = shapes(params), shapes(source_params)
    if here != there:
        key = sorted(k for k in here.keys() | there.keys() if here.get(k) != there.get(k))[0]
        raise UserError(
            f"init_from={workdir!r}: its parameters ({', '.join(shared)}) do not fit this "
            f"model's ({key} is {there.get(key)} there, {here.get(key)} here). Set this run's "
            "model.* hyperparameters (widths, layers, heads, max_len; an RNN must be "
            "unidirectional, like a language model) to the pretraining run's."
        )

    def copy_into(state):
        copied = jax.tree.map(
            lambda new, old: jax.device_put(old, new.sharding),
            {name: state.params[name] for name in shared},
            {name: source_params[name] for name in shared},
        )
        return state.replace(params={**state.params, **copied})

    return [copy_into(state) for state in states]
