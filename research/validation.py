"""One validation pass over a whole config, before anything is loaded or written: every value
against its declared `Check`, and every field against what the chosen components read.

Declarations live beside the defaults: the base fields in research.config.FIELDS, a component's
own fields and the fields it reads at its registration (research.registry), a model's in its
class's `checks`. Pure: reads the config and the registries, raises UserError.
"""

import dataclasses
from typing import Any

import ml_collections

from research.checks import Check
from research.config import FIELDS, base_config, flatten, has_key
from research.errors import UserError
from research.registry import Registry


def validate(*configs: ml_collections.ConfigDict) -> None:
    """Refuses the first bad value of `configs` with a UserError naming the key, the value, what
    is allowed and the flag that fixes it; runs before anything is loaded or written.

    A field the run would not read is refused too: one set away from its default for a data
    source, task, augmentation, optimizer or schedule other than the one chosen (each registered
    entry lists the fields it reads), or one the chosen model does not have.
    """
    from research import data, tasks
    from research.tasks.classification import AUGMENTATIONS
    from research.train.optim import OPTIMIZERS, SCHEDULES

    registries = (data.SOURCES, tasks.TASKS, AUGMENTATIONS, OPTIMIZERS, SCHEDULES)
    for config in configs:
        _validate(config, registries)


def _validate(config: ml_collections.ConfigDict, registries: tuple[Registry, ...]) -> None:
    base = base_config("")
    defaults = flatten(base)
    missing = [key for key in defaults if not has_key(config, key)]
    if missing:
        raise UserError(
            f"This config lacks {missing}, fields every experiment has: build it in the "
            "experiment file with research.config.base_config(name)."
        )
    checks = dict(FIELDS)
    for registry in registries:
        registry.owned()  # imports the registry's modules, whose declarations follow
        checks.update({f"{registry.group}.{k}": v for k, v in registry.checks.items()})
        defaults.update(flatten(ml_collections.ConfigDict(registry.defaults), f"{registry.group}."))
    model_checks, model_defaults = _model_declarations(config.model)
    checks.update(model_checks)
    defaults.update(model_defaults)
    unread = _unread_fields(config, registries, checks)
    later = []  # checks bounded by other fields, once those fields are known to be good
    for key, value in flatten(config).items():
        if key.split(".")[0] not in base:
            continue  # a group the experiment adds for its own code, such as a lecture's study
        if key in unread:
            if _plain(value) != _plain(defaults.get(key)):
                raise _unread(key, value, defaults.get(key), *unread[key])
            continue
        check = checks.get(key)
        if check is None and key.startswith("model."):
            continue  # a model field with no range: override() checked its type
        if check is None:
            raise UserError(
                f"Config key {key!r} is read by nothing: no component declares it. Remove it "
                "from the experiment file, or declare it (with its allowed values) beside the "
                "component that reads it (Registry.declare)."
            )
        if callable(check.allowed):
            later.append((key, value, check))
        elif not check.ok(value, config):
            raise _bad_value(config, key, value, check, defaults.get(key))
    for key, value, check in later:
        if not check.ok(value, config):
            raise _bad_value(config, key, value, check, defaults.get(key))


def _unread_fields(
    config: ml_collections.ConfigDict, registries: tuple[Registry, ...], checks: dict[str, Check]
) -> dict[str, tuple[Registry, str]]:
    """{key: (registry, chosen name)} for each field the chosen entry of a registry does not
    read; refuses an unknown name, and a read field the config lacks unless it may be None."""
    unread = {}
    for registry in registries:
        chosen = config[registry.group][registry.key.rpartition(".")[2]]
        for field in registry.owned() - registry.reads(chosen):
            unread.setdefault(f"{registry.group}.{field}", (registry, chosen))
    for registry in registries:
        chosen = config[registry.group][registry.key.rpartition(".")[2]]
        if registry.key in unread:
            continue
        if not registry.known(chosen):
            raise registry.unknown(chosen)
        for field in sorted(registry.reads(chosen)):
            key = f"{registry.group}.{field}"
            if not has_key(config, key) and not checks[key].ok(None, config):
                raise UserError(
                    f"The {registry.kind} {chosen!r} ({registry.key}) reads the config key "
                    f"{key!r}, which this config lacks. Choose another with "
                    f"--config.{registry.key}=NAME, or add the field where the experiment file "
                    f"builds its {registry.group} group."
                )
    return unread


def _model_declarations(model: ml_collections.ConfigDict) -> tuple[dict, dict]:
    """The chosen model's field checks and defaults by dotted key; refuses a field of the
    config's model group that the model does not take."""
    from research.models import DATA_FIELDS, MODELS, default_config

    cls = MODELS.lookup(model.name)
    fields = {field.name for field in dataclasses.fields(cls)} - {"parent", "name"}
    for field in model:
        if field != "name" and field not in fields:
            takers = [
                name
                for name in MODELS.names()
                if field in {f.name for f in dataclasses.fields(MODELS.lookup(name))}
            ]
            takes = ", ".join(sorted(fields - set(DATA_FIELDS)))
            raise UserError(
                f"Config key 'model.{field}' is not a hyperparameter of model {model.name!r} "
                f"(model.name), so the run could not use it; {model.name!r} takes {takes}. "
                f"Models that take {field!r}: {', '.join(takers) or 'none'}; pass "
                "--config.model.name=NAME with one of those (the experiment built its model "
                "group for one), or, "
                f"to train {model.name!r}, build that group in the experiment file with "
                f"research.models.default_config({model.name!r})."
            )
    checks = getattr(cls, "checks", {})
    defaults = flatten(default_config(model.name))
    return (
        {f"model.{k}": v for k, v in checks.items()},
        {f"model.{k}": v for k, v in defaults.items()},
    )


def _plain(value: Any) -> Any:
    """Lists as tuples, so a swept list equals the tuple default it stands for."""
    return tuple(map(_plain, value)) if isinstance(value, list | tuple) else value


def _flag(value: Any) -> str:
    """`value` as the text after `--config.KEY=` that parses back to it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return f'"{tuple(value)!r}"'
    return value if isinstance(value, str) else repr(value)


def _bad_value(
    config: ml_collections.ConfigDict, key: str, value: Any, check: Check, default: Any
) -> UserError:
    example = ""
    if default is not None and check.ok(default, config):
        example = f", e.g. --config.{key}={_flag(default)}"
    return UserError(
        f"Config key {key!r} is {value!r}, but it must be {check.describe(config)}. Pass "
        f"--config.{key}=VALUE with such a value{example}."
    )


def _unread(key: str, value: Any, default: Any, registry: Registry, chosen: str) -> UserError:
    field = key.partition(".")[2]
    readers = registry.readers(field)
    if field in registry.unregistered_reads:
        readers.append("any other name")
    if default is None:
        reset = "leave it unset (drop its flag, or the line of the experiment file that sets it)"
    else:
        reset = f"pass --config.{key}={_flag(default)}, its default"
    return UserError(
        f"Config key {key!r} is set to {value!r}, but the {registry.kind} {chosen!r} "
        f"({registry.key}) does not read it, so the run would ignore it. "
        f"{registry.kind.capitalize()}s that read it: {', '.join(readers)}; choose one with "
        f"--config.{registry.key}=NAME, or {reset}."
    )
