"""PyTorch twins of our LeNet-5, ResNets, recurrent LM and BERT masked-LM, and the config's
optimizer in torch.optim: the other side of `python -m launch.bench --compare=torch`.

A twin is built from the Flax module's own fields, so it has the same layers and trainable
parameter count (not the same initial values). Only the benchmark imports this file: torch is
the optional `bench` extra, never needed to train.
"""

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from research.tasks.classification import ImageClassification
from research.tasks.language import CharLM, MaskedLM

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class LeNet5(nn.Module):
    """research.models.lenet.LeNet5 on images [batch, channels, height, width]."""

    def __init__(self, model: Any, images: torch.Tensor):
        super().__init__()
        self.activation = ACTIVATIONS[model.activation]
        self.pool = F.max_pool2d if model.pool == "max" else F.avg_pool2d
        channels = [images.shape[1], *model.features]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 5, padding=padding.lower())
            for (a, b), padding in zip(itertools.pairwise(channels), model.padding, strict=True)
        )
        with torch.no_grad():
            sizes = [self.features(images).shape[1], *model.dense_sizes]
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.dropout = nn.Dropout(model.dropout_rate)
        self.output = nn.Linear(sizes[-1], model.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = self.pool(self.activation(conv(x)), 2)
        return x.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images)
        for dense in self.dense:
            x = self.dropout(self.activation(dense(x)))
        return self.output(x)


def _conv(inputs: int, outputs: int, kernel: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, kernel, stride, padding=kernel // 2, bias=False)


class ResidualBlock(nn.Module):
    """A post-activation basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4) block; a 1x1
    projection with BN as shortcut where the shape changes. BatchNorm2d's defaults (momentum
    0.1, epsilon 1e-5) are the ones ours copies."""

    def __init__(self, inputs: int, filters: int, stride: int, bottleneck: bool):
        super().__init__()
        shapes = [(3, filters, stride), (3, filters, 1)]
        if bottleneck:
            shapes = [(1, filters, 1), (3, filters, stride), (1, 4 * filters, 1)]
        layers, channels = [], inputs
        for kernel, features, conv_stride in shapes:
            layers += [_conv(channels, features, kernel, conv_stride), nn.BatchNorm2d(features)]
            layers.append(nn.ReLU())
            channels = features
        self.branch = nn.Sequential(*layers[:-1])  # the last ReLU follows the addition
        self.shortcut = nn.Identity()
        if stride != 1 or inputs != channels:
            self.shortcut = nn.Sequential(
                _conv(inputs, channels, 1, stride), nn.BatchNorm2d(channels)
            )
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class ResNet(nn.Module):
    """research.models.resnet's ResNet and CifarResNet (post-activation, with skips)."""

    def __init__(self, model: Any, images: torch.Tensor):
        super().__init__()
        block, stage_sizes, stem = model.layout()
        imagenet = stem == "imagenet"
        channels = model.width
        stem_conv = _conv(images.shape[1], channels, 7 if imagenet else 3, 2 if imagenet else 1)
        pool = [nn.MaxPool2d(3, 2, padding=1)] if imagenet else []
        self.stem = nn.Sequential(stem_conv, nn.BatchNorm2d(channels), nn.ReLU(), *pool)
        blocks = []
        for stage, count in enumerate(stage_sizes):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                bottleneck = block.expansion == 4
                blocks.append(ResidualBlock(channels, model.width * 2**stage, stride, bottleneck))
                channels = blocks[-1].channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, model.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(images)).mean((2, 3)))


class RNNLanguageModel(nn.Module):
    """research.models.rnn.RNNLanguageModel with torch's fused nn.LSTM / nn.RNN layers.

    Their cells add two bias vectors where ours adds one: the second stays zero and frozen,
    so the trainable parameters are the same. Pad tokens are not masked (the benchmark's rows
    have none to speak of; masking is extra work on our side only)."""

    def __init__(self, model: Any, tokens: torch.Tensor):
        super().__init__()
        recurrent = nn.LSTM if model.cell == "lstm" else nn.RNN
        self.embed = nn.Embedding(model.vocab_size, model.embed_dim)
        sizes = [model.embed_dim] + [model.hidden_size] * model.num_layers
        self.layers = nn.ModuleList(
            recurrent(a, model.hidden_size, batch_first=True) for a in sizes[:-1]
        )
        for layer in self.layers:
            layer.bias_hh_l0.detach().zero_()
            layer.bias_hh_l0.requires_grad_(False)
        self.dropout = nn.Dropout(model.dropout_rate)
        self.output = nn.Linear(model.hidden_size, model.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x, _ = layer(self.dropout(x))
        return self.output(self.dropout(x))


class EncoderBlock(nn.Module):
    """research.models.transformer.EncoderBlock: pre-LayerNorm attention (one fused q/k/v
    projection, the same parameters as our three) and GELU MLP, each with dropout and a skip."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_dim: int, dropout_rate: float):
        super().__init__()
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(embed_dim, eps=1e-6)  # flax's epsilon
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)
        self.mlp_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.mlp_in = nn.Linear(embed_dim, mlp_dim)
        self.mlp_out = nn.Linear(mlp_dim, embed_dim)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x [batch, time, embed], allowed [batch, 1, 1, time] (True = a real key)."""
        batch, time, embed = x.shape
        qkv = self.qkv(self.attention_norm(x)).view(batch, time, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [batch, heads, time, head_dim]
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.dropout(self.out(context.transpose(1, 2).reshape(batch, time, embed)))
        h = self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))
        return x + self.dropout(h)


class BertMLM(nn.Module):
    """research.models.transformer.BertMLM: token and position embeddings, blocks, final
    LayerNorm, and the masked-LM head at the given positions only."""

    def __init__(self, model: Any, tokens: torch.Tensor):
        super().__init__()
        embed_dim = model.embed_dim
        self.token_embed = nn.Embedding(model.vocab_size, embed_dim)
        self.position_embed = nn.Embedding(model.max_len, embed_dim)
        self.dropout = nn.Dropout(model.dropout_rate)
        self.blocks = nn.ModuleList(
            EncoderBlock(embed_dim, model.num_heads, model.mlp_dim, model.dropout_rate)
            for _ in range(model.num_layers)
        )
        self.final_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.transform = nn.Linear(embed_dim, embed_dim)
        self.transform_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.output = nn.Linear(embed_dim, model.vocab_size)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens [batch, time], positions [batch, slots] -> logits [batch, slots, vocab]."""
        allowed = (tokens != 0)[:, None, None, :]
        x = self.token_embed(tokens) + self.position_embed(torch.arange(tokens.shape[1]))
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, allowed)
        h = self.final_norm(x)
        h = torch.gather(h, 1, positions[..., None].expand(-1, -1, h.shape[-1]))
        return self.output(self.transform_norm(F.gelu(self.transform(h))))


# By model.name; other models have no twin.
TWINS: dict[str, type[nn.Module]] = {
    "lenet": LeNet5,
    "cifar_resnet": ResNet,
    "resnet": ResNet,
    "rnn_lm": RNNLanguageModel,
    "bert_mlm": BertMLM,
}
TASKS = ("classification", "char_lm", "masked_lm")


def unsupported(config: ml_collections.ConfigDict) -> list[str]:
    """What in `config` the twins do not mirror (empty when a comparison is fair)."""
    model, train = config.model, config.train
    if model.name not in TWINS:
        return [
            f"model.name={model.name!r} has no PyTorch twin; these have one: "
            f"{', '.join(sorted(TWINS))} (e.g. experiments/mnist_lenet.py, cifar10_resnet20.py, "
            "text_lstm.py, text_bert_mlm.py)"
        ]
    reasons = {
        f"task.name={config.task.name!r} (the twins train {', '.join(TASKS)})": (
            config.task.name not in TASKS
        ),
        "task.loss='squared' (the twins use cross-entropy)": config.task.get("loss") == "squared",
        f"model.dtype={model.dtype!r} (the twins compute in float32)": model.dtype != "float32",
        "model.preact=True or model.residual=False (the ResNet twin is post-activation with "
        "skips)": model.get("preact") is True or model.get("residual") is False,
        "optimizer.ema_decay > 0": config.optimizer.ema_decay > 0,
        "train.grad_accum_steps > 1": train.grad_accum_steps > 1,
        "train.adversarial_epsilon > 0": train.adversarial_epsilon > 0,
    }
    return [reason for reason, applies in reasons.items() if applies]


def _as_torch(array: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.from_numpy(np.array(array)).to(dtype)


def fixed_batch(task: Any, batch: dict, key: jax.Array) -> tuple[tuple, torch.Tensor, torch.Tensor]:
    """The twin's inputs, targets and per-target weights from one training batch, prepared
    once by our task (normalised and augmented, or masked). The torch step then times model,
    loss and update only, where ours also prepares its inputs in every step: a bias against us.
    """
    inputs, aux = task.model_inputs(jax.tree.map(jnp.asarray, batch), key, train=True)
    if isinstance(task, ImageClassification):
        images = _as_torch(inputs).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        labels = _as_torch(batch["label"], torch.int64)
        return (images,), labels, torch.ones(labels.shape)
    if isinstance(task, CharLM):
        targets = _as_torch(batch["tokens"][:, 1:], torch.int64)
        return (_as_torch(inputs, torch.int64),), targets, (targets != 0).float()
    if isinstance(task, MaskedLM):
        tokens, positions = inputs
        at_slots = lambda x: jnp.take_along_axis(x, aux["positions"], axis=1)
        targets = _as_torch(at_slots(batch["tokens"]), torch.int64)
        weights = _as_torch(at_slots(aux["selected"] & (batch["tokens"] != 0)), torch.float32)
        return (_as_torch(tokens, torch.int64), _as_torch(positions, torch.int64)), targets, weights
    raise ValueError(f"no torch batch for task {type(task).__name__}")


def optimizer(config: ml_collections.ConfigDict, twin: nn.Module) -> torch.optim.Optimizer:
    """config.optimizer (research.train.optim) in torch.optim at its peak learning rate: weight
    decay on kernels only (ndim > 1), added to the gradient except in AdamW. The schedule is
    left out: a learning rate's value does not change the time of a step."""
    trainable = [p for p in twin.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
    ]
    lr = config.learning_rate
    if config.name in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if config.name == "sgd" else config.momentum
        return torch.optim.SGD(groups, lr, momentum=momentum, nesterov=config.name == "nesterov")
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.name](groups, lr)


def train_step(
    config: ml_collections.ConfigDict, task: Any, model: Any, batch: dict, key: jax.Array
) -> tuple[Callable[[], None], int]:
    """One training step of the twin of `model` (our built Flax module) on the fixed `batch`,
    and its trainable parameter count."""
    torch.manual_seed(config.seed)
    inputs, targets, weights = fixed_batch(task, batch, key)
    twin = TWINS[config.model.name](model, inputs[0]).train()
    update = optimizer(config.optimizer, twin)
    trainable = [p for p in twin.parameters() if p.requires_grad]
    smoothing = getattr(task, "label_smoothing", 0.0)
    clip = config.optimizer.grad_clip_norm

    def step() -> None:
        update.zero_grad(set_to_none=True)
        logits = twin(*inputs)
        per_target = F.cross_entropy(
            logits.flatten(0, -2), targets.flatten(), reduction="none", label_smoothing=smoothing
        )
        loss = (per_target * weights.flatten()).sum() / weights.sum().clamp(min=1.0)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(trainable, clip)
        update.step()

    return step, sum(p.numel() for p in trainable)
