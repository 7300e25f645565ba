"""float32 vs mixed_bfloat16 (SPEC 5): training step, prediction and IoU on the same phantom data.

Times a 256x256, depth-4 U-Net (the default width) side by side in both policies, then scores
one set of trained weights in both policies on the same phantom validation slices, reporting
whether bf16 keeps IoU within 0.005 of float32 and what `precision=auto` picks on this machine
(from /proc/cpuinfo: amx_bf16 / avx512_bf16, or a bf16-capable GPU). Two short trainings would
differ by more than 0.005 from luck alone; full default trainings in both policies are compared
in the README. Run: `.venv/bin/python benchmarks/bench_precision.py` (about a minute on 2 cores).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from armseg.model.losses import make_loss
from armseg.model.precision import BF16_CPU_FLAGS, cpu_flags, dtype_policy, resolve_precision
from armseg.model.unet import build_unet
from armseg.synth.tree import write_tree
from armseg.train.config import TrainConfig
from armseg.train.slices import load_group

POLICIES = ("float32", "mixed_bfloat16")
SIZE, BATCH, DEPTH, BASE = 256, 8, 4, 16
TOLERANCE = 0.005


def compiled(policy: str, base: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    with dtype_policy(policy):
        model = build_unet(DEPTH, base)
    iou = keras.metrics.IoU(3, [1, 2], sparse_y_pred=False, name="mean_iou")
    model.compile(keras.optimizers.Adam(2e-3), make_loss("ce+dice", 3), metrics=[iou])
    return model


def step_times(rounds: int = 4) -> dict[str, tuple[float, float]]:
    """Seconds per slice (train step, prediction) per policy: rounds interleave the two policies
    and the minimum is kept, so a busy shared CPU biases neither."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, 3, (BATCH, SIZE, SIZE)).astype(np.uint8)
    models = {policy: compiled(policy, BASE) for policy in POLICIES}
    for model in models.values():
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
    times: dict[str, list[list[float]]] = {policy: [[], []] for policy in POLICIES}
    for _ in range(rounds):
        for policy, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            middle = time.perf_counter()
            model.predict_on_batch(x)
            times[policy][0].append(middle - start)
            times[policy][1].append(time.perf_counter() - middle)
    return {policy: (min(train) / BATCH, min(predict) / BATCH) for policy, (train, predict) in times.items()}


def iou_of_same_weights(data, epochs: int) -> dict[str, float]:
    """Train once in float32, then score those weights in both policies on the validation slices:
    the IoU difference is then bf16 arithmetic alone, not the luck of two training runs."""
    trained = compiled("float32", 8)
    train, val = data.sets["train"], data.sets["val"]
    trained.fit(train.images.astype(np.float32)[..., None], train.labels, batch_size=BATCH, epochs=epochs,
                verbose=0)
    scores = {}
    for policy in POLICIES:
        model = compiled(policy, 8)
        model.set_weights(trained.get_weights())
        scores[policy] = float(model.evaluate(val.images.astype(np.float32)[..., None], val.labels,
                                              batch_size=BATCH, return_dict=True, verbose=0)["mean_iou"])
    return scores


def main() -> None:
    flags = cpu_flags()
    print(f"CPU bf16 flags: {', '.join(f for f in BF16_CPU_FLAGS if f in flags) or 'none'}; "
          f"precision=auto picks {resolve_precision('auto')}")
    times = step_times()
    print(f"{SIZE}x{SIZE} U-Net depth {DEPTH}, {BASE} base filters, batch {BATCH} (ms per slice):")
    for policy, (train, predict) in times.items():
        print(f"  {policy:15s} train step {train * 1e3:6.1f}   predict {predict * 1e3:6.1f}")
    (f_train, f_predict), (b_train, b_predict) = times["float32"], times["mixed_bfloat16"]
    print(f"  bf16 speed-up: training {f_train / b_train:.2f}x, prediction {f_predict / b_predict:.2f}x")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        write_tree(root, subjects=2, seed=0, size=(128, 128), slices=32, progress=None)
        config = TrainConfig(group="group_1_2", data_root=str(root), keep_percent=100)
        data = load_group(config, pad_multiple=2**DEPTH, progress=False)
        ious = iou_of_same_weights(data, epochs=4)
    loss = ious["float32"] - ious["mixed_bfloat16"]
    print("the same weights (float32-trained 4 epochs on phantom group_1_2 at 128x128x32, base 8), "
          "val mean IoU:")
    print(f"  float32 {ious['float32']:.4f}  mixed_bfloat16 {ious['mixed_bfloat16']:.4f}  "
          f"(bf16 - float32 = {-loss:+.4f}): bf16 {'keeps' if loss <= TOLERANCE else 'does NOT keep'} "
          f"IoU within {TOLERANCE} of float32")


if __name__ == "__main__":
    main()
