"""Train's parameters: OpenArm's trainingconfig.ini read as it is, explicit values winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from armseg.errors import ArmsegError
from armseg.model.precision import resolve_precision
from armseg.train.config import TrainConfig, resolve_config

EXAMPLE_INI = Path("/work/shared/openarm/trainingconfig.example.ini")
EXAMPLE_TEXT = """\
[DEFAULT]
models_dir = /data/openarm/models/u-net_v1-0/groups_15e
training_data_dir = /data/openarm/training_groups
epochs = 15
batch_size = 1
train_percent = 65
val_percent = 5
test_percent = 30
mean = 0
weight_decay = 1e-6
learning_rate = 1e-4
dropout = 0.5
max_to_keep = 10000
ckpt_n_hours = 1
ckpt_n_epochs = 1

[group_1_1]
training_data_dir = /data/openarm/training_groups/group_1/group_1_1
keep_percent = 100

[group_2_3]
training_data_dir = /data/openarm/training_groups/group_2/group_2_3
keep_percent = 50
epochs = 10
learning_rate = 5e-5
"""


@pytest.fixture
def example_ini(tmp_path: Path) -> Path:
    """The shared example when present, else the same text (OpenArm's format, verbatim keys)."""
    if EXAMPLE_INI.is_file():
        return EXAMPLE_INI
    path = tmp_path / "trainingconfig.ini"
    path.write_text(EXAMPLE_TEXT)
    return path


def test_example_ini_section_is_read_with_default_filling_gaps(example_ini: Path) -> None:
    config = resolve_config({"group": "group_2_3"}, str(example_ini), None)
    assert (config.epochs, config.keep_percent, config.learning_rate) == (10, 50.0, 5e-5)  # section
    assert (config.batch_size, config.dropout, config.weight_decay) == (1, 0.5, 1e-6)  # DEFAULT
    assert (config.train_percent, config.val_percent, config.test_percent) == (65, 5, 30)
    assert config.training_data_dir == "/data/openarm/training_groups/group_2/group_2_3"
    # OpenArm's checkpoint keys are accepted and kept, so they are logged as params
    assert (config.models_dir, config.max_to_keep, config.ckpt_n_hours, config.ckpt_n_epochs) == (
        "/data/openarm/models/u-net_v1-0/groups_15e", 10000, 1.0, 1)
    assert {"models_dir", "max_to_keep", "ckpt_n_hours", "ckpt_n_epochs"} <= set(config.params())
    # what neither the file nor the user set takes armseg's default
    assert (config.depth, config.loss) == (TrainConfig.depth, TrainConfig.loss)


def test_explicit_values_win_and_empty_strings_mean_not_given(example_ini: Path) -> None:
    values = {"group": "group_2_3", "epochs": "3", "dropout": "", "batch_size": None, "depth": "2"}
    config = resolve_config(values, str(example_ini), "")
    assert (config.epochs, config.dropout, config.batch_size, config.depth) == (3, 0.5, 1, 2)


def test_section_defaults_to_group_and_names_the_group_when_alone(example_ini: Path) -> None:
    assert resolve_config({"group": "group_1_1"}, str(example_ini), None).keep_percent == 100
    from_section = resolve_config({}, str(example_ini), "group_1_1")
    assert from_section.group == "group_1_1" and from_section.epochs == 15
    other = resolve_config({"group": "mine"}, str(example_ini), "group_2_3")
    assert other.group == "mine" and other.epochs == 10


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "trainingconfig.ini"
    path.write_text("[DEFAULT]\nepochs = 3\n[group_1_1]\nlearning_rat = 1e-3\n")
    with pytest.raises(ArmsegError, match=r"trainingconfig\.ini.*unknown key 'learning_rat'"):
        resolve_config({"group": "group_1_1"}, str(path), None)


def test_missing_section_and_bad_values_name_what_is_wrong(tmp_path: Path, example_ini: Path) -> None:
    with pytest.raises(ArmsegError, match=r"no section \[group_9_9\].*group_1_1, group_2_3"):
        resolve_config({"group": "group_9_9"}, str(example_ini), None)
    bad = tmp_path / "bad.ini"
    bad.write_text("[g]\nepochs = many\n")
    with pytest.raises(ArmsegError, match=r"bad\.ini.*epochs"):
        resolve_config({"group": "g"}, str(bad), None)
    with pytest.raises(ArmsegError, match="no such config file"):
        resolve_config({"group": "g"}, str(tmp_path / "missing.ini"), None)


@pytest.mark.parametrize(("values", "flag"), [
    ({"epochs": "two"}, "--epochs"), ({"loss": "focal"}, "--loss"), ({"depth": "0"}, "--depth"),
    ({"keep_percent": "0"}, "--keep-percent"), ({"val_percent": "0"}, "--val-percent"),
    ({"precision": "fp8"}, "--precision"), ({"ema_momentum": "1"}, "--ema-momentum"),
    ({"include_augmented": "maybe"}, "--include-augmented"), ({"label_map": "{7: humerus}"}, "label map"),
])
def test_bad_parameters_are_one_sentence_naming_the_flag(values: dict, flag: str) -> None:
    with pytest.raises(ArmsegError, match=flag):
        resolve_config({"group": "g", **values})


def test_defaults_typing_and_required_group() -> None:
    config = resolve_config({"group": "g", "include_augmented": "false", "total_keep": "None",
                             "batch_size": "4", "label_map": '{"background": [0], "bone": [7]}'})
    assert config.include_augmented is False and config.total_keep is None and config.batch_size == 4
    assert config.label_mapping.classes == ("background", "bone")
    assert resolve_config({"group": "g"}) == TrainConfig(group="g")
    with pytest.raises(ArmsegError, match="--group is required"):
        resolve_config({"group": ""})
    with pytest.raises(ArmsegError, match="unknown train parameter"):
        resolve_config({"group": "g", "epoch": 3})


def test_seed_shape_of_openarm_is_expressible() -> None:
    config = resolve_config({"group": "g", "depth": "5", "base_filters": "64"})
    assert config.base_filters * 2 ** config.depth == 2048


def test_auto_precision_follows_cpu_flags() -> None:
    assert resolve_precision("auto", {"amx_bf16", "avx512f"}) == "mixed_bfloat16"
    assert resolve_precision("auto", {"avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", {"avx2"}) == "float32"  # this test machine has no GPU
    assert resolve_precision("float32", {"amx_bf16"}) == "float32"


def test_label_presets_and_openarms_checkpoint_key() -> None:
    default = resolve_config({"group": "g"})
    assert default.label_mapping.classes == ("background", "humerus", "biceps") and default.skip_empty
    every = resolve_config({"group": "g", "labels": "openarm-all", "skip_empty": "false",
                            "ckpt_n_epochs": "2"})
    assert every.label_mapping.classes == ("background", "humerus", "tissue_8", "tissue_9", "tissue_45",
                                           "tissue_51", "biceps", "tissue_53", "tissue_68")
    assert every.label_mapping.raw_values["humerus"] == (7, 6, 1)  # the known mislabels still read as 7
    assert every.skip_empty is False and every.ckpt_n_epochs == 2
    with pytest.raises(ArmsegError, match="--labels openarm-some: unknown preset .*openarm, openarm-all"):
        resolve_config({"group": "g", "labels": "openarm-some"})
    with pytest.raises(ArmsegError, match="--labels and --label-map both given"):
        resolve_config({"group": "g", "labels": "openarm", "label_map": '{"background": [0], "b": [7]}'})
    with pytest.raises(ArmsegError, match="--ckpt-n-epochs"):
        resolve_config({"group": "g", "ckpt_n_epochs": "-1"})


def test_a_run_logged_before_percents_had_to_add_to_100_still_loads_with_the_same_proportions() -> None:
    from armseg.train.run import logged_config

    config, _ = logged_config({"group": "group_1_1", "train_percent": "70.0", "val_percent": "15.0",
                               "test_percent": "0.0"})
    assert config.train_percent + config.val_percent == pytest.approx(100)
    assert config.train_percent / config.val_percent == pytest.approx(70 / 15) and config.test_percent == 0


def test_a_run_logged_before_crop_depth_resumes_cropping_as_it_started() -> None:
    """`rand_crop` once cropped both sides; a run without it did not crop. Today's defaults (a
    lateral strip) apply only to runs that logged `rand_crop_depth`."""
    from armseg.train.run import logged_config

    both, _ = logged_config({"group": "g", "rand_crop": "0.75"})
    assert (both.rand_crop, both.rand_crop_depth) == (0.75, 0.75)
    none, _ = logged_config({"group": "g"})
    assert (none.rand_crop, none.rand_crop_depth) == (1.0, 1.0)
    today, _ = logged_config({"group": "g", "rand_crop": "0.56", "rand_crop_depth": "1.0"})
    assert (today.rand_crop, today.rand_crop_depth) == (0.56, 1.0)


def test_a_run_logged_before_weight_averaging_resumes_on_its_raw_weights() -> None:
    from armseg.train.run import logged_config

    before, _ = logged_config({"group": "g"})
    assert before.ema_momentum == 0.0
    averaged, _ = logged_config({"group": "g", "ema_momentum": "0.98"})
    assert averaged.ema_momentum == 0.98


def test_early_stopping_watches_from_half_the_epochs_on() -> None:
    """Validation swings while the learning rate is high: an early dip must not end the run."""
    import keras

    from armseg.train.callbacks import ResumableEarlyStopping, TrainingState

    stopper = ResumableEarlyStopping(patience=2, state=TrainingState(), start=6)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # what fit sets before the first epoch
    stopper.set_model(model)
    stopper.on_train_begin()
    swings = [0.2, 0.6, 0.3, 0.2, 0.1, 0.1, 0.7, 0.8, 0.8, 0.8]
    stopped_at = None
    for epoch, value in enumerate(swings):
        stopper.on_epoch_end(epoch, {"val_mean_iou": value})
        if stopper.model.stop_training and stopped_at is None:
            stopped_at = epoch
    assert stopped_at == 9  # best 0.8 at epoch 7, two epochs without better; never during the first 6


def test_a_run_logged_before_keep_weights_resumes_keeping_the_best_epoch() -> None:
    """Runs logged before the choice existed kept the best epoch; a resume or select-epoch keeps
    doing what they started with, and a run that logged its choice keeps it."""
    from armseg.errors import ParameterError
    from armseg.train.run import logged_config

    old, _ = logged_config({"group": "g", "epochs": "4"})
    assert old.keep_weights == "best"
    new, _ = logged_config({"group": "g", "keep_weights": "last"})
    assert new.keep_weights == "last" and TrainConfig(group="g").keep_weights == "last"
    with pytest.raises(ParameterError, match="--keep-weights"):
        TrainConfig(group="g", keep_weights="middle")
