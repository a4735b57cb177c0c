"""The one registry: unknown names are refused with the key and the choices, and a package's
entries are found from its files alone."""

import subprocess
import sys
import textwrap

import pytest

from research import data
from research.config import base_config
from research.errors import UserError
from research.models import MODELS, SAMPLERS, build_model
from research.registry import Registry
from research.tasks import TASKS, build_task
from research.tasks.classification import AUGMENTATIONS
from research.train import optim

MODEL_NAMES = [
    "bert_mlm",
    "cifar_resnet",
    "lenet",
    "mlp",
    "resnet",
    "rnn_classifier",
    "rnn_lm",
    "transformer_classifier",
    "transformer_lm",
]
SOURCE_NAMES = [
    "digits",
    "digits_rows",
    "glue/sst2",
    "image_folder",
    "imdb_reviews",
    "labelled_text",
    "mnist_rows",
    "python_docs",
    "text_file",
    "tiny_shakespeare",
]
INFO = {"mean": [0.0], "std": [1.0], "num_classes": 10}


def _config(group: str, **changes):
    config = base_config("t")[group]
    config.update(changes)
    return config


def test_every_registry_lists_its_names() -> None:
    assert MODELS.names() == MODEL_NAMES
    assert data.SOURCES.names() == SOURCE_NAMES
    assert TASKS.names() == ["char_lm", "classification", "masked_lm", "text_classification"]
    assert SAMPLERS.names() == ["rnn_lm", "transformer_lm"]
    assert optim.OPTIMIZERS.names() == ["adam", "adamw", "momentum", "nesterov", "sgd"]
    assert optim.SCHEDULES.names() == ["constant", "cosine", "step"]
    assert AUGMENTATIONS.names() == ["crop", "crop_flip", "none", "resized_crop_flip"]


@pytest.mark.parametrize(
    "build, key, value, close, registry",
    [
        (lambda: build_model("lenett"), "model.name", "lenett", "lenet", MODELS),
        (
            lambda: build_task(_config("task", name="clasification"), INFO),
            "task.name",
            "clasification",
            "classification",
            TASKS,
        ),
        (
            lambda: build_task(_config("task", augment="crop_flop"), INFO),
            "task.augment",
            "crop_flop",
            "crop_flip",
            AUGMENTATIONS,
        ),
        (
            lambda: optim.make_optimizer(_config("optimizer", name="adamm"), 10, 1),
            "optimizer.name",
            "adamm",
            "adam",
            optim.OPTIMIZERS,
        ),
        (
            lambda: optim.schedule(_config("optimizer", schedule="cosin"), 10, 1),
            "optimizer.schedule",
            "cosin",
            "cosine",
            optim.SCHEDULES,
        ),
    ],
)
def test_unknown_name_names_the_key_a_close_match_and_every_choice(
    build, key, value, close, registry
) -> None:
    with pytest.raises(UserError) as error:
        build()
    message = str(error.value)
    assert message.startswith(f"Unknown {registry.kind}: {key}={value!r}. ")
    assert f"Did you mean {close!r}?" in message
    assert f"Set --config.{key} to one of: {', '.join(registry.names())}." in message


def test_no_close_match_gives_no_guess() -> None:
    registry = Registry("colour", "paint.colour")
    registry.register("red")("#f00")
    with pytest.raises(UserError) as error:
        registry.lookup("xyzzy")
    assert str(error.value) == (
        "Unknown colour: paint.colour='xyzzy'. Set --config.paint.colour to one of: red."
    )
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("red")("#e00")


def test_a_new_file_in_the_package_is_found_with_no_other_edit(tmp_path, monkeypatch) -> None:
    package = tmp_path / "zoo"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from research.registry import Registry\n"
        "ANIMALS = Registry('animal', 'zoo.animal', package=__name__)\n"
    )
    (package / "newt.py").write_text(
        "from zoo import ANIMALS\n\n@ANIMALS.register('newt')\nclass Newt:\n    legs = 4\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import zoo

        assert "zoo.newt" not in sys.modules  # imported by the first lookup, not before
        assert zoo.ANIMALS.lookup("newt").legs == 4
        assert zoo.ANIMALS.names() == ["newt"]
    finally:
        sys.modules.pop("zoo.newt", None)
        sys.modules.pop("zoo", None)


def _fresh_python(code: str) -> str:
    """Runs `code` in a new interpreter (nothing imported yet) and returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_model_files_are_discovered_without_a_list_of_modules() -> None:
    out = _fresh_python(
        """
        import sys
        from research.models import MODELS
        assert "research.models.mlp" not in sys.modules
        print(",".join(MODELS.names()))
        """
    )
    assert out.strip() == ",".join(MODEL_NAMES)


def test_a_mistyped_data_name_is_reported_without_importing_tensorflow() -> None:
    out = _fresh_python(
        """
        import sys
        from research import data
        from research.config import base_config
        from research.errors import UserError
        config = base_config("t").data
        for name in ("digts", "mnsit"):
            config.name = name
            try:
                data.load(config)
            except UserError as error:
                print(error)
        print("tensorflow" in sys.modules)
        """
    )
    digits, mnist, imported = out.strip().split("\n")
    assert digits.startswith("Unknown data source: data.name='digts'. Did you mean 'digits'? ")
    assert f"to one of: {', '.join(SOURCE_NAMES)}." in digits
    assert "Any other name is read as a TFDS dataset" in digits
    assert "Did you mean 'mnist'?" in mnist  # a close TFDS name is suggested too
    assert imported == "False"
