"""The fixed benchmarks of `python -m launch.bench --suite=NAME`, and their markdown table.

Data and formatting only: launch.bench runs each entry through its `benchmark()`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Entry:
    """One experiment to benchmark: its config and overrides, the unit its throughput counts,
    random images of `fake_shape` in place of its dataset when set, and the overrides (on
    top of its own) and image shape that shrink it for a test on a CPU (`--shrink`)."""

    name: str
    config: str
    overrides: dict[str, str]
    unit: str  # "images" or "tokens"
    shrunk: dict[str, str]
    fake_shape: tuple[int, ...] = ()
    shrunk_fake_shape: tuple[int, ...] = ()


# Sized for one H100 or H200: ResNet-50 and a BERT-base-shaped encoder in bfloat16 at batches
# that keep the chip busy; the char-LSTM is the experiment's own (hidden 256, 128 steps), with
# a batch of 256 sequences. The whole suite finishes well under 8 minutes there.
SUITES: dict[str, tuple[Entry, ...]] = {
    "accelerator": (
        Entry(
            "resnet50_bf16_fake_imagenet",
            "experiments/imagenet_resnet50.py",
            {"data.batch_size": "256"},
            "images",
            shrunk={"data.batch_size": "4", "model.depth": "18", "model.width": "4"},
            fake_shape=(224, 224, 3),
            shrunk_fake_shape=(32, 32, 3),
        ),
        Entry(
            "bert_base_mlm_bf16",
            "experiments/text_bert_mlm.py",
            {
                "model.num_layers": "12",
                "model.num_heads": "12",
                "model.embed_dim": "768",
                "model.mlp_dim": "3072",
                "model.dtype": "bfloat16",
                "data.batch_size": "128",
            },
            "tokens",
            shrunk={
                "model.num_layers": "1",
                "model.num_heads": "2",
                "model.embed_dim": "16",
                "model.mlp_dim": "32",
                "data.seq_len": "15",
                "model.max_len": "16",
                "data.batch_size": "4",
            },
        ),
        Entry(
            "char_lstm",
            "experiments/text_lstm.py",
            {"data.batch_size": "256"},
            "tokens",
            shrunk={
                "model.embed_dim": "8",
                "model.hidden_size": "16",
                "data.seq_len": "16",
                "data.batch_size": "4",
            },
        ),
    )
}


def throughput(entry: Entry, result: dict) -> float:
    """Synthetic images or tokens per second; a token row (`input_shape["tokens"]`) counts
    whole, so the char-LM's rows of seq_len + 1 include the last target."""
    per_example = result["input_shape"]["tokens"][0] if entry.unit == "tokens" else 1
    return per_example * result["synthetic_examples_per_sec"]


def markdown(results: list[dict]) -> str:
    """The suite's results as a markdown table, one row per entry."""
    lines = [
        "| entry | device | batch | dtype | throughput | MFU | pipeline / synthetic "
        "| step ms | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        cached = " (cache hit)" if r["compile_cache_hit"] else ""
        lines.append(
            f"| {r['entry']} | {r['device_kind']} | {r['batch_size']} | {r['dtype']} "
            f"| {r['throughput']:,.0f} {r['unit']}/s | {mfu} | {r['pipeline_over_synthetic']:.2f} "
            f"| {r['step_ms_synthetic']:.1f} | {r['compile_time_s']:.1f}{cached} |"
        )
    return "\n".join(lines) + "\n"
