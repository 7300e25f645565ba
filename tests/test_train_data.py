"""The data pipeline: leak-free splits, OpenArm's thinning, uint8 streaming, sparse losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from armseg.errors import ArmsegError
from armseg.io.tree import Scan
from armseg.train.config import TrainConfig
from armseg.train.slices import group_folder, load_group
from armseg.train.split import block_bounds, plan_split


def scan(name: str) -> Scan:
    folder = Path("/group") / name
    return Scan(folder=folder, volume=folder / "v_vol.nii", segmentation=folder / "v_seg.nii")


def trials(split, name: str) -> list[str]:
    return [part.scan.trial for part in split.parts[name]]


def config(**changes) -> TrainConfig:
    base = dict(group="g", keep_percent=100, train_percent=60, val_percent=20, test_percent=20)
    return TrainConfig(**{**base, **changes})


def test_split_by_scan_keeps_augmented_copies_of_held_out_scans_out_of_training() -> None:
    originals = [f"trial{i}_0_fs" for i in range(1, 6)]
    copies = [f"{name}_rot10" for name in originals] + [f"{name}_ed" for name in originals]
    scans = [scan(n) for n in originals + copies]
    lengths = {s.trial: 10 for s in scans}
    split = plan_split(scans, lengths, config())
    assert split.mode == "by_scan"
    assert len(split.parts["val"]) == 1 and len(split.parts["test"]) == 1
    held = set(trials(split, "val")) | set(trials(split, "test"))
    assert not any(name.endswith(("_rot10", "_ed")) for name in held)  # copies never validate
    training = trials(split, "train")
    assert not any(t.startswith(tuple(h + "_" for h in held)) or t in held for t in training)
    assert len(training) == 3 * 3  # three sources, each with its two copies
    without = plan_split(scans, lengths, config(include_augmented=False))
    assert trials(without, "train") == [t for t in training if not t.endswith(("_rot10", "_ed"))]
    assert all(part.indices.size == 10 for part in split.parts["train"])


def test_split_is_seeded_and_percent_shapes_the_counts() -> None:
    scans = [scan(f"trial{i}_x") for i in range(1, 11)]
    lengths = {s.trial: 4 for s in scans}
    first = plan_split(scans, lengths, config(seed=1))
    assert trials(first, "val") == trials(plan_split(scans, lengths, config(seed=1)), "val")
    assert [len(first.parts[n]) for n in ("train", "val", "test")] == [6, 2, 2]
    no_test = plan_split(scans, lengths, config(train_percent=80, test_percent=0))
    assert no_test.parts["test"] == [] and len(no_test.parts["val"]) == 2


def test_single_scan_is_cut_into_blocks_with_gaps_and_copies_train_only_on_the_train_block() -> None:
    scans = [scan("trial1_0_fs"), scan("trial1_0_fs_rot5")]
    split = plan_split(scans, {"trial1_0_fs": 100, "trial1_0_fs_rot5": 100}, config())
    assert split.mode == "by_block"
    train, val, test = (np.concatenate([p.indices for p in split.parts[n] if p.scan.trial == "trial1_0_fs"])
                        for n in ("train", "val", "test"))
    assert train.max() < val.min() - 2 and val.max() < test.min() - 2  # gaps between the blocks
    assert np.all(np.diff(val) == 1) and np.all(np.diff(test) == 1)  # contiguous along the arm
    copy = next(p for p in split.parts["train"] if p.scan.trial.endswith("_rot5"))
    np.testing.assert_array_equal(copy.indices, train)
    assert trials(split, "val") == trials(split, "test") == ["trial1_0_fs"]
    with pytest.raises(ArmsegError, match="too few"):
        block_bounds(4, np.array([60.0, 20.0, 20.0]))


def test_augmented_copies_join_the_pool_without_lengthening_the_epoch() -> None:
    from armseg.train.slices import GroupData

    scans = [scan("trial1_0_fs"), scan("trial1_0_fs_rot5"), scan("trial1_0_fs_rot-5")]
    split = plan_split(scans, {s.trial: 100 for s in scans}, config())
    data = GroupData(folder=Path("/group"), split=split, sets={}, pad_multiple=16)
    originals = split.parts["train"][0].indices.size
    assert split.count("train") == 3 * originals
    assert data.steps_per_epoch(8) == -(-originals // 8)


def test_keep_percent_is_even_along_the_arm_and_total_keep_caps_training() -> None:
    scans = [scan(f"trial{i}_x") for i in range(1, 6)]
    lengths = {s.trial: 40 for s in scans}
    kept = plan_split(scans, lengths, config(keep_percent=25))
    part = kept.parts["train"][0]
    assert part.indices.size == 10 and set(np.diff(part.indices)) <= {4, 5}
    assert kept.count("val") == 10  # keep_percent thins every scan
    capped = plan_split(scans, lengths, config(total_keep=30))
    assert capped.count("train") == 30 and capped.count("val") == 40
    assert {p.scan.trial for p in capped.parts["train"]} == set(trials(kept, "train"))


def test_load_group_stacks_uint8_slices_padded_for_the_network(tiny_tree: Path) -> None:
    cfg = TrainConfig(group="group_1_2", data_root=str(tiny_tree), keep_percent=100, train_percent=70,
                      test_percent=15)
    data = load_group(cfg, pad_multiple=16, progress=False)
    assert data.split.mode == "by_scan"
    for name in ("train", "val", "test"):
        images, labels = data.sets[name].images, data.sets[name].labels
        assert images.dtype == np.uint8 and labels.dtype == np.uint8  # never float64 one-hot
        assert images.shape[1:] == (48, 64) and images.shape == labels.shape
        assert set(np.unique(labels)) <= {0, 1, 2}
    assert len(data.sets["train"]) == 24 and len(data.sets["val"]) == 12
    assert '"mode": "by_scan"' in data.split_json()
    odd = load_group(cfg, pad_multiple=32, progress=False).sets["train"]
    assert odd.images.shape[1:] == (64, 64) and not odd.labels[:, 48:].any()


def test_group_folder_prefers_existing_training_data_dir(tiny_tree: Path, tmp_path: Path) -> None:
    real = group_folder(TrainConfig(group="group_1_1", data_root=str(tiny_tree)))
    assert real.name == "group_1_1"
    assert group_folder(TrainConfig(group="x", data_root=str(tmp_path), training_data_dir=str(real))) == real
    missing = TrainConfig(group="group_1_1", data_root=str(tiny_tree),
                          training_data_dir="/elsewhere/group_2_1")
    assert group_folder(missing).name == "group_2_1"  # found under data_root by the folder's name
    with pytest.raises(ArmsegError, match="group 'nope' not found.*group_1_1"):
        group_folder(TrainConfig(group="nope", data_root=str(tiny_tree)))


def tissue_slices(count: int = 6):
    from armseg.train.slices import SliceSet

    labels = np.zeros((count, 48, 64), np.uint8)
    labels[:, 10:30, 5:40] = 2
    labels[:, 32:44, 20:30] = 1
    images = (labels * 100 + 20).astype(np.uint8)
    images += np.arange(count, dtype=np.uint8)[:, None, None]  # each slice recognisable
    return SliceSet(images, labels)


def test_batches_stack_stored_slices_and_labels_shuffled_endlessly_or_in_order() -> None:
    from armseg.train.batches import SliceBatches

    slices = tissue_slices(6)
    training = SliceBatches(slices, batch_size=4, training=True, seed=0, steps=2)
    assert len(training) == 2
    [batch] = training[0]
    assert batch.dtype == np.uint8 and batch.shape == (4, 48, 64, 2)  # bytes: the step casts on the device
    seen = []
    for _ in range(3):  # 3 epochs x 2 steps x 4 = 24 slices = 4 shuffled passes over the 6
        for index in range(len(training)):
            for pair in training[index][0]:
                number = int(pair[0, 0, 0]) - 20  # background pixel: 20 + the slice's number
                np.testing.assert_array_equal(pair[..., 1], slices.labels[number])
                seen.append(number)
        training.on_epoch_end()
    assert [sorted(seen[i:i + 6]) for i in range(0, 24, 6)] == [list(range(6))] * 4
    assert seen[:6] != seen[6:12]  # reshuffled every pass
    resumed = SliceBatches(slices, 4, True, seed=0, steps=2, first_epoch=1)  # a run resumed at epoch 2
    assert [int(pair[0, 0, 0]) - 20 for pair in resumed[0][0]] == seen[8:12]
    ordered = SliceBatches(slices, 4, training=False)
    assert len(ordered) == 2 and ordered[1][0].shape[0] == 2  # the last batch is what remains
    np.testing.assert_array_equal(np.concatenate([ordered[0][0], ordered[1][0]])[..., 0], slices.images)


def test_random_transforms_move_images_and_labels_together() -> None:
    from armseg.train.augmentation import RandomTransforms, augment_batch

    slices = tissue_slices(6)
    for seed, ranges in enumerate((RandomTransforms(), RandomTransforms(lowres_prob=1.0, rotate_deg=20))):
        images, labels = augment_batch(slices.images, slices.labels, ranges, seed=seed)
        x, y = np.asarray(images)[..., 0], np.asarray(labels)
        assert x.dtype == np.float32 and y.dtype == np.uint8 and x.shape == y.shape == (6, 48, 64)
        assert set(np.unique(y)) <= {0, 1, 2} and not np.array_equal(y, slices.labels)
        for slice_x, slice_y in zip(x, y, strict=True):
            # the image moved with its labels: brighter tissue stays where its label went
            inside = slice_x[(slice_y == 2)].mean()
            outside = slice_x[(slice_y == 0) & (slice_x > 0)].mean()
            assert inside > outside


def only_transform(**ranges: float):
    """RandomTransforms with every range off but the ones given: a new transform with a non-zero
    default cannot leak into a test of another."""
    from dataclasses import fields

    from armseg.train.augmentation import RandomTransforms

    off = {item.name: (1.0 if item.name == "crop" else 0.0) for item in fields(RandomTransforms)}
    return RandomTransforms(**{**off, **ranges})


def test_stretch_changes_a_muscle_s_proportions_not_its_area() -> None:
    """`stretch` alone widens and flattens (or narrows and deepens): the area of a labelled block
    stays, its width-to-depth ratio moves by exp(2 U(-s, s))."""
    from armseg.train.augmentation import augment_batch

    labels = np.zeros((8, 64, 64), dtype=np.uint8)
    labels[:, 24:40, 20:44] = 1  # 16 deep, 24 wide
    only_stretch = only_transform(stretch=0.3)
    _, moved = augment_batch(labels * 100, labels, only_stretch, seed=3)
    ratios = []
    for block in np.asarray(moved):
        rows, cols = np.nonzero(block)
        depth, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert abs(block.sum() / (16 * 24) - 1) < 0.12
        ratios.append(width / depth / 1.5)
    assert max(ratios) / min(ratios) > 1.15 and all(np.exp(-0.7) < r < np.exp(0.7) for r in ratios)


def test_elastic_warp_bends_image_and_labels_alike_and_keeps_class_ids() -> None:
    from armseg.train.augmentation import augment_batch

    labels = np.zeros((6, 64, 96), dtype=np.uint8)
    labels[:, 20:44, 20:70] = 2
    labels[:, 50:60, 40:50] = 1
    only_elastic = only_transform(elastic=0.05)
    images, moved = augment_batch(labels * 100, labels, only_elastic, seed=1)
    images, moved = np.asarray(images)[..., 0], np.asarray(moved)
    assert set(np.unique(moved)) == {0, 1, 2}
    assert all(not np.array_equal(block, labels[0]) for block in moved)  # every slice bent
    assert np.std([(block == 2).sum() for block in moved]) > 0  # by its own field
    # the image went where its labels went: off only along the edges, where bilinear meets nearest
    assert np.abs(images - moved * 100.0).mean() < 3.0


def test_display_offset_shifts_a_slice_by_one_level_clips_and_leaves_padding_black() -> None:
    from armseg.train.augmentation import augment_batch

    images = np.tile(np.linspace(1, 200, 64, dtype=np.float32), (6, 48, 1))
    images[:, :, 56:] = 0  # padding beyond the scan
    images[:, :, 55] = 200  # the slice's peak, to which the level is relative
    only_offset = only_transform(offset=0.4)
    moved, _ = augment_batch(images, np.zeros(images.shape, np.uint8), only_offset, seed=2)
    moved = np.asarray(moved)[..., 0]
    assert np.all(moved[:, :, 56:] == 0)
    shifts = []
    for before, after in zip(images[:, 0, :55], moved[:, 0, :55], strict=True):
        inside = (after > 0) & (after < 200)
        shift = after[inside] - before[inside]
        assert np.ptp(shift) < 1e-3 and abs(shift[0]) <= 0.4 * 200  # one level for the slice
        assert np.all(after >= 0) and np.all(after <= 200)  # clipped to black and white
        shifts.append(shift[0])
    assert np.ptp(shifts) > 10  # drawn per slice


def position_coded(batch: int) -> np.ndarray:
    """(batch, 48, 64, 1) slices whose every pixel holds row * 64 + column, so a crop's first pixel
    says where its window starts."""
    rows, cols = np.meshgrid(np.arange(48), np.arange(64), indexing="ij")
    return np.broadcast_to((rows * 64 + cols).astype(np.float32)[None, ..., None], (batch, 48, 64, 1))


def test_random_crop_takes_one_window_of_image_and_labels_sized_for_the_unet() -> None:
    from armseg.train.augmentation import RandomTransforms, random_crop

    images = position_coded(3)
    labels = (images % 3).astype(np.float32)
    windows = set()
    for seed in range(6):
        cropped, cropped_labels = (np.asarray(a) for a in random_crop(images, labels, 0.6, 0.6, 8, seed))
        assert cropped.shape == cropped_labels.shape == (3, 24, 32, 1)  # 28.8, 38.4 -> multiples of 8
        top, left = divmod(int(cropped[0, 0, 0, 0]), 64)
        np.testing.assert_array_equal(cropped, images[:, top:top + 24, left:left + 32])
        np.testing.assert_array_equal(cropped_labels, labels[:, top:top + 24, left:left + 32])
        windows.add((top, left))
    assert len(windows) > 1
    whole, _ = random_crop(images, labels, 1.0, 1.0, 8, 0)
    assert np.asarray(whole).shape == images.shape
    with pytest.raises(ArmsegError, match="--rand-crop:"):
        RandomTransforms(crop=0.05).check()
    with pytest.raises(ArmsegError, match="--rand-crop-depth: 1.5 .* depth"):
        RandomTransforms(crop_depth=1.5).check()


def test_default_crop_keeps_the_whole_depth_from_the_probe_down() -> None:
    """The default window is a lateral strip: every crop starts at the probe (row 0) and ends at
    the slice's bottom, so the layers keep their order and the bone its depth."""
    from armseg.train.augmentation import RandomTransforms, random_crop

    defaults = RandomTransforms()
    images = position_coded(2)
    lefts = set()
    for seed in range(6):
        cropped, _ = random_crop(images, images, defaults.crop, defaults.crop_depth, 8, seed)
        cropped = np.asarray(cropped)
        assert cropped.shape == (2, 48, 32, 1)  # 0.56 x 64 = 35.8 -> 32; all 48 rows
        top, left = divmod(int(cropped[0, 0, 0, 0]), 64)
        assert top == 0
        lefts.add(left)
    assert len(lefts) > 1


def test_trainer_transforms_in_the_step_and_scores_against_the_moved_labels() -> None:
    import keras

    from armseg.train.batches import SliceBatches
    from armseg.train.run import compiled_trainer

    config = TrainConfig(group="g", depth=2, base_filters=4, batch_size=3, epochs=1, precision="float32")
    model = compiled_trainer(config, "float32", steps_per_epoch=2)
    slices = tissue_slices(6)
    [pairs] = SliceBatches(slices, 3, training=False)[0]
    plain = np.asarray(model(pairs, training=False))
    assert plain.shape == (3, 48, 64, 4)  # 3 class probabilities, then the labels it scores against
    np.testing.assert_array_equal(plain[..., 3], slices.labels[:3])
    np.testing.assert_allclose(plain[..., :3], np.asarray(model.unet(pairs[..., :1].astype(np.float32))),
                               atol=1e-5)
    moved = np.asarray(model(pairs, training=True))[..., 3]
    assert not np.array_equal(moved, slices.labels[:3]) and set(np.unique(moved)) <= {0.0, 1.0, 2.0}
    history = model.fit(SliceBatches(slices, 3, True, steps=2), epochs=1, verbose=0).history
    assert {"loss", "mean_iou", "iou_humerus", "iou_biceps"} <= set(history)
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model)),
                      type(model))


def test_sparse_dice_equals_the_one_hot_formula() -> None:
    from armseg.model.losses import SparseDice, make_loss

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (2, 8, 8))
    probabilities = rng.dirichlet(np.ones(3), (2, 8, 8)).astype(np.float32)
    one_hot = np.eye(3)[truth]
    overlap = (one_hot * probabilities).sum((0, 1, 2))
    dice = (2 * overlap + 1) / (one_hot.sum((0, 1, 2)) + probabilities.sum((0, 1, 2)) + 1)
    expected = 1 - dice[1:].mean()
    assert float(SparseDice(3)(truth, probabilities)) == pytest.approx(expected, rel=1e-5)
    combined = float(make_loss("ce+dice", 3)(truth, probabilities))
    ce = -np.log(np.take_along_axis(probabilities, truth[..., None], -1)).mean()
    assert combined == pytest.approx(ce + expected, rel=1e-4)
    assert float(make_loss("dice", 3)(truth, np.eye(3, dtype=np.float32)[truth])) < 0.01


@pytest.mark.parametrize("suffix", ["_ed", "_rot", "_rot-10", "_rot10"])
def test_no_augmented_copy_of_a_held_out_scan_trains(suffix: str) -> None:
    """OpenArm marked copies `_ed` or bare `_rot`; armseg's rotations say their degrees. None may leak."""
    originals = [f"trial{i}_0_fs" for i in range(1, 6)]
    scans = [scan(n) for n in originals] + [scan(n + suffix) for n in originals]
    split = plan_split(scans, {s.trial: 10 for s in scans}, config())
    held = set(trials(split, "val")) | set(trials(split, "test"))
    assert held and held <= set(originals)
    assert not [t for t in trials(split, "train") if t.removesuffix(suffix) in held]
    assert len(trials(split, "train")) == 2 * (len(originals) - len(held))


def test_unlabelled_slices_are_left_out_of_every_split_and_counted() -> None:
    scans = [scan(f"trial{i}_x") for i in range(1, 6)]
    lengths = {s.trial: 40 for s in scans}
    labelled = {s.trial: np.arange(10, 30) for s in scans}  # segmented over half of the arm
    labelled["trial5_x"] = np.array([], dtype=int)  # not segmented at all
    split = plan_split(scans, lengths, config(seed=3), labelled)
    assert "trial5_x" not in trials(split, "val") + trials(split, "test") + trials(split, "train")
    for name in ("train", "val", "test"):
        for part in split.parts[name]:
            assert part.indices.min() >= 10 and part.indices.max() < 30
    assert split.count("train") + split.count("val") + split.count("test") == 4 * 20
    assert split.skipped_empty == 4 * 20 + 40
    assert split.describe()["skipped_unlabelled_slices"]["trial5_x"] == 40
    kept = plan_split(scans, lengths, config(seed=3))
    assert kept.skipped_empty == 0 and kept.count("train") + kept.count("val") + kept.count("test") == 200


def test_one_partly_labelled_scan_is_cut_into_blocks_along_its_labelled_slices() -> None:
    scans = [scan("trial1_0_fs"), scan("trial1_0_fs_rot")]
    lengths = {"trial1_0_fs": 100, "trial1_0_fs_rot": 100}
    labelled = {"trial1_0_fs": np.arange(50, 100), "trial1_0_fs_rot": np.arange(52, 100)}
    split = plan_split(scans, lengths, config(), labelled)
    assert split.mode == "by_block"
    blocks = {name: np.concatenate([p.indices for p in split.parts[name] if p.scan.trial == "trial1_0_fs"])
              for name in ("train", "val", "test")}
    assert blocks["train"].min() == 50 and blocks["train"].max() < blocks["val"].min() - 2
    assert blocks["val"].max() < blocks["test"].min() - 2 and blocks["test"].max() <= 99
    copy = next(p for p in split.parts["train"] if p.scan.trial == "trial1_0_fs_rot")
    assert copy.indices.min() == 52 and set(copy.indices) <= set(blocks["train"])
    with pytest.raises(ArmsegError, match="all 0"):
        plan_split(scans, lengths, config(), {"trial1_0_fs": np.array([], int),
                                              "trial1_0_fs_rot": np.arange(3)})


def test_load_group_skips_unlabelled_slices_unless_told(tiny_tree: Path, tmp_path: Path) -> None:
    import shutil

    import nibabel as nib

    group = tmp_path / "data" / "training_groups" / "group_9" / "group_9_1"
    source = group_folder(TrainConfig(group="group_1_2", data_root=str(tiny_tree)))
    shutil.copytree(source, group)
    seg = next(group.glob("trial1_0_fs/*_seg.nii"))
    image = nib.load(str(seg))
    labels = np.asarray(image.dataobj).copy()
    labels[..., :5] = 0  # the first 5 of 12 slices were never segmented
    nib.save(nib.Nifti1Image(labels, image.affine, image.header), str(seg))
    cfg = TrainConfig(group="group_9_1", data_root=str(tmp_path / "data"), keep_percent=100)
    data = load_group(cfg, pad_multiple=16, progress=False)
    assert data.split.skipped_empty == 5 and '"trial1_0_fs": 5' in data.split_json()
    total = sum(len(data.sets[name]) for name in ("train", "val", "test"))
    assert total == 4 * 12 - 5
    everything = load_group(cfg.replace(skip_empty=False), pad_multiple=16, progress=False)
    assert everything.split.skipped_empty == 0
    assert sum(len(everything.sets[name]) for name in ("train", "val", "test")) == 4 * 12
