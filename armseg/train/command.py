"""`armseg train`: flags in, `train()` or `resume()` called, where the model went printed.

Every hyperparameter flag defaults to None so "not given" stays distinguishable from a value:
the ini file (`--config`) and armseg's defaults fill only what the user left out. An empty
value means the same as not giving the flag.
"""

from __future__ import annotations

import argparse
import dataclasses

from armseg.backend import load_keras
from armseg.errors import ArmsegError
from armseg.params import empty_as_none
from armseg.train.config import HYPERPARAMETERS, TrainConfig, resolve_config

HELP = {
    "epochs": "maximum epochs (early stopping may end sooner)",
    "time_budget": "minutes of training: as many epochs as fit (up to --epochs), the learning rate "
                   "annealed over the time instead of the steps (None = no budget)",
    "batch_size": "slices per batch",
    "train_percent": "share of scans for training (of each scan's slices, as blocks, when a group has "
                     "too few scans to split whole)",
    "val_percent": "share for validation (chooses the best epoch; never adjacent to training slices)",
    "test_percent": "share for the final test_* metrics (0 = none: the held-out subjects are the test)",
    "keep_percent": "percent of each scan's slices kept, evenly spaced along the arm",
    "total_keep": "cap on the number of training slices (None = no cap)",
    "mean": "intensity subtracted when --normalization mean (OpenArm's mean)",
    "weight_decay": "L2 penalty on convolution kernels",
    "learning_rate": "Adam's initial learning rate (cosine-decayed over the epochs)",
    "ema_momentum": "validate, checkpoint and log an exponential moving average of the weights, each "
                    "step new = m x old + (1 - m) x current (Keras's use_ema; 0 = the raw weights)",
    "dropout": "dropout rate at the bottom of the U-Net",
    "base_filters": "filters of the first level, doubling per level (OpenArm: 64)",
    "depth": "poolings; slices are padded to multiples of downsample x 2**depth (OpenArm: 5)",
    "context": "neighbouring slices on each side given to the network as more input channels (2.5D; "
               "0 = the slice alone): the network sees the arm's third dimension",
    "downsample": "the U-Net works at 1/f of the scan's in-plane resolution (1, 2 or 4): the slice is "
                  "averaged over f x f pixels going in and the class scores interpolated back to every "
                  "pixel coming out; the convolutions see 1/f^2 of the pixels and f times as far",
    "loss": "ce, dice or ce+dice (sparse: integer labels, no one-hot)",
    "include_augmented": "train on the group's augmented copies (*_ed, *_rot*) too (true/false)",
    "precision": "float32, mixed_bfloat16 or auto (bf16 where AMX/AVX512-BF16 or a bf16 GPU exists)",
    "seed": "seed of the split, the shuffling, the augmentation and the weights",
    "slice_axis": "array axis along the arm (slices are taken across it)",
    "labels": "the classes the network learns: openarm (background, humerus, biceps; other tissues "
              "background) or openarm-all (every OpenArm tissue its own class, as OpenArm's network)",
    "label_map": 'any other classes as JSON {class: [raw values]}, background first, e.g. '
                 '\'{"background": [0], "humerus": [7], "biceps": [52]}\' (instead of --labels)',
    "skip_empty": "leave out slices whose segmentation is all 0 (unlabelled), as OpenArm's no_empty did, "
                  "from every split (true/false)",
    "ckpt_n_epochs": "every n epochs, log the weights as checkpoints/epoch_<i> for `armseg select-epoch` "
                     "(OpenArm's ini key; None or 0 = only the last and best)",
    "normalization": "slice (per-slice z-score, inside the model) or mean (x/255 - mean/255)",
    "batch_norm": "batch normalisation after every convolution (true/false; false trains faster, "
                  "with a bias per convolution instead)",
    "patience": "epochs without a better val_mean_iou before stopping, counted from half the epochs on "
                "(0 = never stop early)",
    "keep_weights": "which epoch's weights become the model: last (the cosine-annealed end of training) "
                    "or best (the highest val_mean_iou); best_epoch and best_val_mean_iou name the kept "
                    "epoch",
    "random_transforms": "random flips, zoom, stretch, elastic warp, tilt, gain, offset, gamma, TGC ramp, "
                         "speckle, blur and crop of each training batch, drawn on the fly (true/false; not "
                         "the `armseg augment` copies)",
    "rand_flip_prob": "chance of a lateral flip",
    "rand_zoom": "zoom factor exp(U(-z, z))",
    "rand_stretch": "aspect factor exp(U(-s, s)): lateral scaled by it, depth by its inverse",
    "rand_elastic": "smooth elastic warp: control-point shifts N(0, e) as a fraction of the slice size",
    "rand_rotate_deg": "in-plane tilt in degrees, U(-r, r)",
    "rand_shift": "shift as a fraction of the slice size, U(-s, s)",
    "rand_gain": "intensity gain exp(U(-g, g))",
    "rand_offset": "display offset: U(-o, o) x the slice's peak added, clipped to black and white",
    "rand_gamma": "gamma exponent exp(U(-g, g))",
    "rand_tgc": "depth (time-gain) ramp slope, U(-t, t)",
    "rand_speckle_prob": "chance of multiplicative speckle noise on a slice",
    "rand_speckle": "that noise's largest standard deviation",
    "rand_lowres_prob": "chance a batch is blurred (down- and up-sampled)",
    "rand_crop": "fraction of the width a training batch is cropped to, at random (1 = whole width)",
    "rand_crop_depth": "fraction of the depth a training batch is cropped to (1 = from the probe to the "
                       "slice's bottom, the default: a window starting inside the fat misleads)",
    "nonfinite": "NaN or infinite voxels in a training scan: error (refuse the scan, naming it and the "
                 "count) "
                 "or replace (by 0, the count logged as nonfinite_voxels_replaced)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=None,
                        help="training group folder name under <data-root>/training_groups, e.g. group_1_1")
    parser.add_argument("--config", default=None,
                        help="an OpenArm trainingconfig.ini; given flags win over it")
    parser.add_argument("--section", default=None, help="the ini section to read (default: the group)")
    parser.add_argument("--training-data-dir", default=None,
                        help="the group's folder, if not under <data-root>/training_groups")
    parser.add_argument("--resume", default=None, metavar="RUN_ID",
                        help="continue that interrupted train run from its last checkpoint")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults["labels"] = "openarm: 7 humerus, 52 biceps (6, 1 as 7), other known values background"
    for name in HYPERPARAMETERS:
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, metavar="VALUE",
                            help=f"{HELP[name]} (default: {defaults[name]})")


def values_from(args: argparse.Namespace) -> dict:
    """The train parameters the user gave (None = not given), as resolve_config takes them."""
    names = ("group", "data_root", "training_data_dir", *HYPERPARAMETERS)
    return {name: empty_as_none(getattr(args, name, None)) for name in names}


def check(args: argparse.Namespace) -> None:
    """Every parameter typed and checked before Keras loads or a run opens (README "Commands")."""
    values = values_from(args)
    resume_id = empty_as_none(args.resume)
    if resume_id is not None:
        given = [f"--{n.replace('_', '-')}" for n, v in values.items()
                 if v is not None and n not in ("group", "data_root")]
        if given or empty_as_none(args.config):
            raise ArmsegError(f"--resume {resume_id} continues with that run's own parameters; "
                              f"drop {', '.join(given) or '--config'}")
        args.train_config = None
    else:
        args.train_config = resolve_config(values, empty_as_none(args.config), empty_as_none(args.section))


def run(args: argparse.Namespace) -> None:
    if not hasattr(args, "train_config"):
        check(args)
    if args.train_config is None:
        from armseg.train.heartbeat import resumable_run

        resumable_run(empty_as_none(args.resume))  # before Keras loads: a refusal costs no start-up
        load_keras()
        from armseg.train.run import resume

        result = resume(empty_as_none(args.resume))
    else:
        load_keras()
        from armseg.train.run import train

        result = train(args.train_config)
    print(f"[armseg train] model: {result.model_uri}"
          + (f" (version {result.model_version} of armseg-unet)" if result.model_version else ""))
    print(f"[armseg train] MLflow run: {result.run_id}; `mlflow ui` shows its curves and overlays")
