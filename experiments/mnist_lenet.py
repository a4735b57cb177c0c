"""LeNet-5 on MNIST from TFDS (prepare offline with `python -m launch.prepare_data mnist`)."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, choice, log, product


def get_config(arg=None):
    arg = parse_arg(arg, dataset="mnist")  # `:dataset=fashion_mnist`: a dataset of that shape
    config = base_config("mnist_lenet")
    config.data.name = arg.dataset
    config.data.batch_size = 128
    config.model = default_config("lenet", padding=("SAME", "VALID"))
    # Random 2-pixel shifts, like the distortions with which LeCun et al. reach 0.8% error.
    config.task.augment = "crop"
    config.task.crop_padding = 2
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 20
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [5e-4, 1e-3, 2e-3, 4e-3]),
        axis("data.batch_size", [64, 128, 256]),
        axis("train.num_epochs", [10, 20]),
        axis("seed", [0, 1]),
    )


def search():
    """For `launch.tune`: Adam's step size and coupled L2 on a log scale, and the batch size."""
    return {
        "optimizer.learning_rate": log(2e-4, 1e-2),
        "optimizer.weight_decay": log(1e-6, 1e-3),
        "data.batch_size": choice([64, 128, 256]),
    }
