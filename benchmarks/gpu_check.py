"""armseg on a GPU, end to end, with the plain Keras loop on the same GPU beside it (issue 16).

    KERAS_BACKEND=jax python benchmarks/gpu_check.py --out DIR [--quick] [--size 256] [--slices 192]
        [--epochs 6] [--batch-size 8] [--predict-batch-size 16] [--precision auto] [--work DIR]

For a machine whose Python has JAX with CUDA and no network: besides it, armseg needs only the
wheels listed in benchmarks/gpu_wheels.txt (no TensorFlow, no SimpleITK). In one run it
1. synthesises a small OpenArm tree (nibabel): one training subject, one held-out subject;
2. trains the default network (`armseg.train.run.train`, the `armseg train` stage: on-device
   transforms, SQLite tracking, checkpoints, registration), timing each epoch's training steps;
3. fits the same network, compiled the same way, with a plain `model.fit` on float32 arrays in
   memory (no transforms), before and after armseg's training, timed the same way;
4. predicts the held-out subject (`predict_subjects`, the `armseg predict` stage), then times
   armseg's volume inference (`predict_classes`) against a plain `model.predict` on the same slices;
5. evaluates the predictions (`evaluate_subjects`), and prints everything side by side with the
   issue's reference figures for a plain Keras U-Net on an H100.
The first epoch of each training (XLA compiles) and a warm-up prediction are never timed.
Results go to `<out>/gpu_check.json`; the tree and the MLflow store go to `--work` (a temporary
folder by default), not to `--out`. `--quick` is a tiny CPU smoke run of the same path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_input, beside this file

# The figures: a plain Keras 3 U-Net (depth 4, 16 filters) on random 256x256 slices,
# mixed bfloat16, one H100, JAX backend (slices/s).
REFERENCE_H100_JAX = {"train_batch8": 1064.0, "train_batch32": 2515.0, "predict_batch8": 1537.0,
                      "openarm_512_batch4_train": 99.0, "openarm_512_batch4_predict": 394.0}
GOAL = 0.80  # armseg's training slices/s as a share of the plain fit's on the same GPU
TRIALS = ("trial1_0_fs", "trial6_30_fs", "trial7_30_gc", "trial10_30_p5", "trial11_60_fs", "trial16_90_fs")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json")
    parser.add_argument("--work", default=None, help="tree and MLflow store folder (default: a temp)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the path on a CPU")
    parser.add_argument("--size", type=int, default=256, help="in-plane size of the synthetic scans")
    parser.add_argument("--slices", type=int, default=160, help="slices per scan (6 scans per subject)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (the first is not timed)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--predict-batch-size", type=int, default=16)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    if args.quick:
        args.size, args.slices, args.epochs = 64, 16, 3
    return args


def describe_machine() -> dict[str, object]:
    import keras

    from armseg.model.precision import gpu_capabilities, resolve_precision
    from armseg.train.distribute import training_placement

    info: dict[str, object] = {"python": platform.python_version(), "keras": keras.__version__,
                               "backend": keras.backend.backend()}
    if info["backend"] == "jax":
        import jax

        device = jax.devices()[0]
        info.update(jax=jax.__version__, device=f"{device.platform}:{device.id} {device.device_kind}",
                    devices=len(jax.devices()))
    info["placement"] = training_placement().describe()
    info["gpu_capabilities"] = [".".join(map(str, c)) for c in gpu_capabilities()]
    info["precision_auto"] = resolve_precision("auto")
    return info


def synthesise(root: Path, size: int, slices: int) -> dict[str, object]:
    """One training subject (its six scans make the group) and one held-out subject to predict,
    a process per trial (phantoms render on the CPU), before any backend starts."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    workers = min(len(TRIALS), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_synthesise_trial, [(root, size, slices, trial) for trial in TRIALS]))
    return {"seconds": round(time.perf_counter() - started, 1), "scans": 2 * len(TRIALS), "size": size,
            "slices": slices}


def _synthesise_trial(job: tuple[Path, int, int, str]) -> None:
    from armseg.synth.tree import DEFAULT_TRIALS, write_tree

    root, size, slices, name = job
    trials = [trial for trial in DEFAULT_TRIALS if trial.name == name]
    write_tree(root, subjects=2, seed=0, size=(size, size), slices=slices, groups={"group_gpu": [(0, name)]},
               trials=trials, progress=None)


def train_armseg(root: Path, args: argparse.Namespace, clock):
    from armseg.train.config import TrainConfig
    from armseg.train.run import train

    config = TrainConfig(group="group_gpu", data_root=str(root), epochs=args.epochs,
                         batch_size=args.batch_size, precision=args.precision, keep_percent=100.0, patience=0)
    return train(config, extra_callbacks=[clock])


class PlainFit:
    """The same U-Net, compiled as armseg compiles it, fitted with `model.fit` on the group's own
    training slices as float32 arrays in memory; compiled once, fitted in rounds."""

    def __init__(self, config, policy: str, train_slices):
        from bench_input import plain_model

        self.config, self.slices = config, train_slices
        self.steps = len(train_slices) // config.batch_size
        self.model = plain_model(config, policy, self.steps)

    def round(self, epochs: int) -> list[float]:
        """Slices/s of `epochs` timed epochs (one more, untimed, goes first)."""
        from bench_input import plain_fit

        return plain_fit(self.model, self.slices, self.config.batch_size, self.steps, epochs)


def predict_speeds(model_uri: str, root: Path, batch_size: int) -> dict[str, float]:
    """armseg's volume inference and a plain `model.predict` on the held-out subject's slices."""
    import numpy as np

    from armseg.io.geometry import pad_to_multiple, to_slices
    from armseg.io.images import read_image
    from armseg.io.tree import prediction_sources
    from armseg.model.registry import load_unet
    from armseg.predict.volume import predict_classes

    model, info = load_unet(model_uri)
    volumes = [np.asarray(read_image(scan.volume).array) for scan in prediction_sources(root, "SubB")]
    count = sum(v.shape[info.slice_axis] for v in volumes)
    predict_classes(model, volumes[0], info, batch_size)  # warm-up: XLA compiles each batch shape
    started = time.perf_counter()
    for volume in volumes:
        predict_classes(model, volume, info, batch_size)
    ours = count / (time.perf_counter() - started)
    stacked = np.concatenate([pad_to_multiple(to_slices(v, info.slice_axis).astype(np.float32)[..., None],
                                              info.pad_multiple) for v in volumes])
    model.predict(stacked[:batch_size * 2], batch_size=batch_size, verbose=0)
    started = time.perf_counter()
    model.predict(stacked, batch_size=batch_size, verbose=0)
    plain = len(stacked) / (time.perf_counter() - started)
    return {"armseg_predict_slices_per_s": round(ours, 1), "plain_predict_slices_per_s": round(plain, 1)}


def main() -> int:
    args = arguments()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="armseg-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # mlflow.db and mlruns/ here
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    started = time.perf_counter()

    root = work / "data"
    synth = synthesise(root, args.size, args.slices)
    print(f"[gpu_check] synthesised {synth}", flush=True)

    from bench_input import StepClock

    from armseg.backend import load_keras
    from armseg.tracking.runs import configure_tracking

    load_keras()
    configure_tracking("gpu-check")
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "machine": describe_machine(),
                                  "arguments": vars(args), "synth": synth}
    print(f"[gpu_check] {json.dumps(results['machine'])}", flush=True)

    from armseg.model.precision import resolve_precision
    from armseg.model.unet import pad_multiple
    from armseg.train.config import TrainConfig
    from armseg.train.slices import load_group

    policy = resolve_precision(args.precision)
    probe = TrainConfig(group="group_gpu", data_root=str(root), epochs=args.epochs,
                        batch_size=args.batch_size, keep_percent=100.0)
    data = load_group(probe, pad_multiple(probe.depth, probe.downsample), progress=False)
    slices_per_epoch = data.steps_per_epoch(probe.batch_size) * probe.batch_size
    plain_fit = PlainFit(probe, policy, data.sets["train"])
    timed = max(1, args.epochs - 1)
    plain = plain_fit.round(timed)  # before armseg's training, and again after it: the GPU warm alike
    print(f"[gpu_check] plain fit: {[round(speed) for speed in plain]} slices/s", flush=True)
    clock = StepClock()
    trained = train_armseg(root, args, clock)
    plain += plain_fit.round(timed)
    print(f"[gpu_check] armseg: {[round(slices_per_epoch / s) for s in clock.seconds]} slices/s (first: "
          f"compiling); plain fit again: {[round(speed) for speed in plain[timed:]]}", flush=True)
    ours = [slices_per_epoch / s for s in clock.seconds[1:]]
    training = {"armseg_train_slices_per_s": round(statistics.median(ours), 1),
                "armseg_train_slices_per_s_best": round(max(ours), 1),
                "plain_train_slices_per_s": round(statistics.median(plain), 1),
                "plain_train_slices_per_s_best": round(max(plain), 1),
                "timed_epochs": len(ours), "slices_per_epoch": slices_per_epoch, "precision": policy,
                "best_val_mean_iou": round(trained.best_val_mean_iou, 4), "model_uri": trained.model_uri}
    training["ratio"] = round(statistics.median(ours) / statistics.median(plain), 3)
    results["train"] = training
    _save(out, results)  # the training figures survive a failure further on

    results["predict"] = _predict_and_evaluate(trained.model_uri, root, args.predict_batch_size)
    results["imported"] = {name: name in sys.modules for name in ("tensorflow", "SimpleITK", "optuna")}
    results["seconds"] = round(time.perf_counter() - started, 1)
    _save(out, results)
    _report(results)
    return 0


def _save(out: Path, results: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")


def _predict_and_evaluate(model_uri: str, root: Path, batch_size: int) -> dict[str, object]:
    import mlflow

    from armseg.evaluate.run import evaluate_subjects
    from armseg.predict.run import predict_subjects

    started = time.perf_counter()
    written = predict_subjects(root, [model_uri], ["SubB"], overwrite=True, batch_size=batch_size)
    stage_seconds = time.perf_counter() - started
    scores = evaluate_subjects(root, ["SubB"], [model_uri], metrics=["mean_iou", "dice_biceps"])
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    stages = sorted({run.data.tags.get("armseg.stage") for run in runs} - {None})
    return {**predict_speeds(model_uri, root, batch_size), "predict_stage_seconds": round(stage_seconds, 1),
            "predictions": len(written), "mean_iou": round(float(scores["mean_iou"].mean()), 4),
            "batch_size": batch_size, "finished_stages": stages}


def _report(results: dict) -> None:
    machine, training, predicting = results["machine"], results["train"], results["predict"]
    size, batch = results["synth"]["size"], results["arguments"]["batch_size"]
    print()
    print(f"armseg GPU check, {results['date']}: {machine.get('device', machine['placement'])}; "
          f"{machine['backend']} {machine.get('jax', '')}, Keras {machine['keras']}, {training['precision']}")
    print(f"default U-Net (depth 4, 16 filters), {size}x{size} slices, batch {batch}; "
          f"{training['slices_per_epoch']} slices per epoch, {training['timed_epochs']} timed epochs")
    rows = [
        ("armseg: train stage / predict_classes", training["armseg_train_slices_per_s"],
         training["armseg_train_slices_per_s_best"], predicting["armseg_predict_slices_per_s"]),
        ("plain fit / predict, same net, same device", training["plain_train_slices_per_s"],
         training["plain_train_slices_per_s_best"], predicting["plain_predict_slices_per_s"]),
    ]
    print(f"  {'slices/s':44s} {'train (median, best)':>22s} {'predict':>9s}")
    for name, median, best, predict in rows:
        print(f"  {name:44s} {median:>12.0f} {best:>9.0f} {predict:>9.0f}")
    reference = REFERENCE_H100_JAX
    print(f"  {'issue table: plain U-Net, 1x H100, JAX, bf16':44s} {reference['train_batch8']:>12.0f} "
          f"{'':>9s} {reference['predict_batch8']:>9.0f}")
    verdict = "meets" if training["ratio"] >= GOAL else "MISSES"
    print(f"  armseg / plain training: {training['ratio']:.2f} ({verdict} the {GOAL:.0%} goal)")
    print(f"  predict stage ({predicting['predictions']} scans read, predicted, written, tracked): "
          f"{predicting['predict_stage_seconds']} s; evaluate mean_iou {predicting['mean_iou']}, "
          f"best val_mean_iou {training['best_val_mean_iou']}")
    imported = ", ".join(f"{name} {'yes' if done else 'no'}" for name, done in results["imported"].items())
    print(f"  finished stages: {', '.join(predicting['finished_stages'])}; imported: {imported}; "
          f"synth {results['synth']['seconds']} s; total {results['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
