"""At scale: commands that run no network never load one; predict loads each model once; the
cells record keeps every value exactly; the heat-map helper draws what this process would."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from armseg.predict.models import ResolvedModel
from armseg.tracking.cells import Cell, read_record, record_text

NETWORK_LIBRARIES = ("keras", "tensorflow", "jax", "torch")


def test_commands_that_run_no_network_never_load_one(tracking: str, tmp_path: Path) -> None:
    """`armseg table` end to end, and the run modules of every command that runs no network."""
    code = ("import sys\n"
            "import armseg.evaluate.run, armseg.synth.run, armseg.augment.run, armseg.registration.run\n"
            "from armseg.cli import main\n"
            "import mlflow\n"
            "with mlflow.start_run():\n"
            "    mlflow.set_tags({'armseg.stage': 'evaluate', 'armseg.model': 'm',\n"
            "                     'armseg.scan': 'trial1A', 'armseg.data_root': '/d'})\n"
            "    mlflow.log_metric('mean_iou', 0.5)\n"
            "code = main(['table', '--data-root', '/d', '--out', 't.csv'])\n"
            f"print(code, [m for m in {NETWORK_LIBRARIES!r} if m in sys.modules])\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert (tmp_path / "t.png").is_file()


def test_predict_loads_each_model_once(tracking: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A subject of 40 scans and 10 models: 10 loads, 400 predictions."""
    from armseg.predict import run as predict_run

    root = tmp_path / "data"
    for trial in range(1, 41):
        folder = root / "SubA" / "prediction_sources" / f"trial{trial}_0_fs"
        folder.mkdir(parents=True)
        (folder / f"trial{trial}_0_fs_volume.nii").touch()
    loads: list[str] = []
    fake_registry = types.ModuleType("armseg.model.registry")
    fake_registry.load_unet = lambda uri: (loads.append(uri) or object(), None)
    monkeypatch.setitem(sys.modules, "armseg.model.registry", fake_registry)
    monkeypatch.setattr(predict_run, "resolve_model",
                        lambda spec, data_root=None: ResolvedModel(spec, f"runs:/{spec}/model", spec))
    predicted: list[tuple[str, Path]] = []
    monkeypatch.setattr(predict_run, "predict_file",
                        lambda model, info, volume, out, batch_size, description, **refine:
                        predicted.append((description, out)) or (0.01, 0))
    models = [f"group_{i}_1" for i in range(1, 11)]
    predict_run.predict_subjects(root, models, ["SubA"])
    assert sorted(loads) == sorted(f"runs:/{m}/model" for m in models)
    assert len(predicted) == 400 and len({out for _, out in predicted}) == 400


def test_the_cells_record_keeps_values_exactly() -> None:
    extremes = {"mean_iou": 0.1 + 0.2, "hd95_biceps": math.nan, "tiny": 5e-324, "big": 1.7976931348623157e308}
    cells = [Cell("a" * 32, 1, "group_1_1", "SubA", "trial1", "trial1A", "/d", "3", "b" * 32, "models:/x/3",
                  extremes),
             Cell("c" * 32, 2, "registration-trial1", "SubA", "trial2", "trial2A", None, None, None, None,
                  {"mean_iou": 1.0})]
    back = read_record(record_text(cells))
    assert back[1] == cells[1]
    assert {k: v for k, v in back[0].metrics.items() if k != "hd95_biceps"} == \
           {k: v for k, v in cells[0].metrics.items() if k != "hd95_biceps"}
    assert math.isnan(back[0].metrics["hd95_biceps"]) and "hd95_biceps" not in back[1].metrics
    with pytest.raises(ValueError, match="not an armseg-cells/1 record"):
        read_record('{"format": "something else"}')


def test_the_heat_map_helper_draws_what_this_process_would() -> None:
    import subprocess as sp

    from armseg.table.formats import grid
    from armseg.table.pivot import build_table
    from armseg.table.render import Renderer, draw

    cells = [Cell(f"{i:032x}", i, f"group_1_{i % 3 + 1}", "SubA", f"trial{i}", f"trial{i}A", "/d", None, None,
                  None, {"mean_iou": i / 10}) for i in range(1, 7)]
    table = grid(build_table(cells, ["mean_iou"]))
    here = draw(table)
    assert Renderer.start().pictures(table) == here
    assert Renderer(None).pictures(table) == here
    crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
    broken = Renderer(sp.Popen(crash, stdin=sp.PIPE, stdout=sp.PIPE))
    assert broken.pictures(table) == here and broken.process is None


def test_records_come_through_any_artifact_repository(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The route for records on a tracking server or S3, here through the local repository."""
    import mlflow

    from armseg.table import query

    cell = Cell("a" * 32, 1, "m", "SubA", "trial1", "trial1A", "/d", None, None, None, {"mean_iou": 0.5})
    with mlflow.start_run() as run:
        mlflow.log_text(record_text([cell]), "cells.json")
        mlflow.set_tag("armseg.cells", "cells.json")
    parent = mlflow.get_run(run.info.run_id)
    assert query._remote_record_texts([parent]) == [record_text([cell])]
    monkeypatch.setattr(query, "get_artifact_repository", lambda root: object())  # no short route
    assert query._remote_record_texts([parent]) == [record_text([cell])]
