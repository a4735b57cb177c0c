"""ResNet-50 v1.5 on ImageNet (TFDS `imagenet2012`, manual download): about 76-77% top-1.

Goyal et al. 2017 plus label smoothing: batch 256, lr 0.1 x batch/256 with 5 warmup epochs then
cosine, weight decay 1e-4, zero-init of each block's last BN, bf16 compute, 90 epochs. Prepare
it as ArrayRecord (`python -m launch.prepare_data imagenet2012 --from=DIR`): each step reads and
decodes its own rows by index, resized in threads to 224x224 center squares (shorter side
resized to 224) and prefetched while the device computes; random-resized crops are cut on the
device. Host memory does not grow with the dataset (data.storage="auto" reads the 190 GB of
decoded images from disk). `:image_size=N,depth=D` shrinks it for a test on a CPU, on the
stand-in that `launch.fake_imagenet` writes.
"""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product, zipped

BASE_BATCH = 256


def get_config(arg=None):
    arg = parse_arg(arg, image_size=224, depth=50)  # smaller ones for tests on a CPU
    config = base_config("imagenet_resnet50")
    config.data.name = "imagenet2012"
    config.data.image_size = arg.image_size
    config.data.batch_size = BASE_BATCH
    config.data.eval_batch_size = 256
    config.data.validation_fraction = 0.01  # 12,812 images held out of train
    config.model = default_config(
        "resnet", depth=arg.depth, stem="imagenet", zero_init_last_bn=True, dtype="bfloat16"
    )
    config.task.augment = "resized_crop_flip"
    config.task.label_smoothing = 0.1
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.1 * config.data.batch_size / BASE_BATCH
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 5.0
    config.train.num_epochs = 90
    config.train.checkpoint_every_steps = 2000
    return config


def sweep():
    batch_sizes = [256, 1024]
    return product(
        zipped(  # linear scaling: the learning rate follows the batch size
            axis("data.batch_size", batch_sizes),
            axis("optimizer.learning_rate", [0.1 * b / BASE_BATCH for b in batch_sizes]),
        ),
        axis("seed", [0, 1]),
    )
