"""How long `armseg table` takes over 1,000, 10,000 and 50,000 tracked evaluate runs, start-up included,
side by side with a plain `mlflow.search_runs` over the same store (what the table did before), on
SQLite and on an MLflow tracking server with a PostgreSQL backend; and how long commands that run
no network take to start.

    python benchmarks/bench_table.py [--sizes 1000 10000 50000] [--pg-sizes 1000 10000 50000] [--repeat 3]

Each store holds what `armseg evaluate` writes: per-(model, scan) runs with armseg's tags, params
and the 10 evaluate metrics, nested under evaluate parents that each scored `--cells-per-parent`
of them and list them in their `cells.json`. Models x 10 subjects x 10 scans (1,000 = 10 models).
Writing 50,000 runs through MLflow's API takes most of an hour, so the stores are filled in bulk
with MLflow's own SQLAlchemy table models (the same rows `create_run`/`log_batch` write) and the
records with armseg's own writer; a SQLite store is kept in `--cache` and reused. Every size also
checks that the table `armseg table` wrote and the one the plain search gives are equal, byte for
byte (cells and the run behind each). The PostgreSQL part needs a server on 127.0.0.1:5432 (trust
auth, user postgres); it creates and drops its own database.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from armseg.tracking.cells import Cell, cell_tags, record_text  # noqa: E402
from armseg.tracking.contract import (  # noqa: E402
    CELLS_ARTIFACT,
    CELLS_RUN_TAG,
    CELLS_TAG,
    DATA_ROOT_TAG,
    EVALUATE_METRICS,
    STAGE_TAG,
    VERSION_TAG,
)

DATA_ROOT = "/lab/data"
SUBJECTS, TRIALS = 10, 10  # scans per model: 100
FILL_FORMAT = 1  # bump when the stores below change, so cached ones are rebuilt
PG = "postgresql://postgres@127.0.0.1:5432"
PLAIN_QUERY = """
import sys, time
from pathlib import Path
start, out, root = float(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
import mlflow
runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                          filter_string="tags.`armseg.stage` = 'evaluate' and attributes.status = 'FINISHED'",
                          order_by=["attributes.start_time DESC"])
print(time.time() - start, time.process_time(), len(runs))
from armseg.table.pivot import build_table, in_scope
from armseg.table.query import runs_to_cells
table = build_table(in_scope(runs_to_cells(runs), root), ["mean_iou"])
out.write_text(table.frame.to_csv() + table.run_ids.to_csv())
"""


# --- filling a store ------------------------------------------------------------------------------

def evaluate_cells(models: int, start_time: int, seed: int = 0) -> list[Cell]:
    """Every (model, scan) cell of the store, with evaluate's metric names and plausible values."""
    rng = np.random.default_rng(seed)
    cells = []
    for model in range(models):
        for subject in range(SUBJECTS):
            letter = chr(ord("A") + subject)
            for trial in range(1, TRIALS + 1):
                values = rng.uniform(0.5, 1.0, len(EVALUATE_METRICS))
                metrics = {name: float(value * (100 if "percent" in name else 20 if "hd95" in name else 1))
                           for name, value in zip(EVALUATE_METRICS, values, strict=True)}
                if rng.uniform() < 0.01:
                    metrics["hd95_biceps"] = float("nan")  # a structure absent from both
                cells.append(Cell(run_id=uuid.uuid4().hex, start_time=start_time + len(cells),
                                  model=f"group_{model // 10 + 1}_{model % 10 + 1}", subject=f"Sub{letter}",
                                  trial=f"trial{trial}", scan=f"trial{trial}{letter}", data_root=DATA_ROOT,
                                  model_version=str(model + 1), model_run_id=uuid.uuid4().hex,
                                  model_uri=f"models:/armseg-unet/{model + 1}", metrics=metrics))
    return cells


def _run_row(run_id: str, name: str, start: int, experiment_id: str, artifact_location: str) -> dict:
    from mlflow.utils.uri import append_to_uri_path

    return {"run_uuid": run_id, "name": name, "source_type": "LOCAL", "source_name": "armseg",
            "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": start,
            "end_time": start + 1, "source_version": "", "lifecycle_stage": "active",
            "artifact_uri": append_to_uri_path(artifact_location, run_id, "artifacts"),
            "experiment_id": int(experiment_id)}


def _tags(run_id: str, tags: dict[str, str]) -> list[dict]:
    return [{"key": key, "value": value, "run_uuid": run_id} for key, value in tags.items()]


def fill(engine, experiment_id: str, artifact_location: str, experiment_folder: Path, models: int,
         cells_per_parent: int) -> int:
    """Write the runs in bulk (MLflow's own table models) and each parent's record; returns the cells.

    `experiment_folder` is where the experiment's `artifact_location` lies on this machine.
    """
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import insert

    cells = evaluate_cells(models, start_time=int(time.time() * 1000) - 10_000_000)
    common = {VERSION_TAG: "0.2.0", "mlflow.user": "bench", "mlflow.source.type": "LOCAL",
              "mlflow.source.name": "armseg"}
    with engine.begin() as connection:
        for first in range(0, len(cells), cells_per_parent):
            batch = cells[first:first + cells_per_parent]
            parent_id = uuid.uuid4().hex
            runs = [_run_row(parent_id, f"evaluate-{batch[0].model}", batch[0].start_time - 1, experiment_id,
                             artifact_location)]
            tags = _tags(parent_id, {**common, STAGE_TAG: "evaluate", DATA_ROOT_TAG: DATA_ROOT,
                                     CELLS_TAG: CELLS_ARTIFACT, "mlflow.runName": runs[0]["name"]})
            params = [{"key": "data_root", "value": DATA_ROOT, "run_uuid": parent_id}]
            metrics = []
            for cell in batch:
                name = f"{cell.model} {cell.scan}"
                runs.append(_run_row(cell.run_id, name, cell.start_time, experiment_id, artifact_location))
                tags += _tags(cell.run_id, {**common, STAGE_TAG: "evaluate", **cell_tags(cell),
                                            CELLS_RUN_TAG: parent_id, "mlflow.parentRunId": parent_id,
                                            "mlflow.runName": name})
                params += [{"key": key, "value": value, "run_uuid": cell.run_id} for key, value in
                           {"model": cell.model, "subject": cell.subject, "trial": cell.trial,
                            "prediction": f"{DATA_ROOT}/{cell.subject}/predictions/{cell.model}/x.nii",
                            "reference": f"{DATA_ROOT}/{cell.subject}/prediction_sources/x_seg.nii"}.items()]
                metrics += [{"key": key, "value": 0.0 if value != value else value, "is_nan": value != value,
                             "timestamp": cell.start_time, "step": 0, "run_uuid": cell.run_id}
                            for key, value in cell.metrics.items()]
            connection.execute(insert(SqlRun.__table__), runs)
            connection.execute(insert(SqlTag.__table__), tags)
            connection.execute(insert(SqlParam.__table__), params)
            connection.execute(insert(SqlMetric.__table__), metrics)
            connection.execute(insert(SqlLatestMetric.__table__), metrics)
            folder = experiment_folder / parent_id / "artifacts"
            folder.mkdir(parents=True)
            (folder / CELLS_ARTIFACT).write_text(record_text(batch))
    return len(cells)


def sqlite_store(cache: Path, cells: int, cells_per_parent: int) -> str:
    """A cached SQLite store of `cells` evaluate runs; made (in bulk) when missing."""
    folder = cache / f"sqlite-{cells}-{cells_per_parent}-v{FILL_FORMAT}"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if (folder / "done").exists():
        return uri
    import mlflow
    from sqlalchemy import create_engine

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    artifacts = folder / "artifacts"
    experiment_id = mlflow.MlflowClient(uri).create_experiment("bench", artifact_location=str(artifacts))
    engine = create_engine(uri)
    fill(engine, experiment_id, str(artifacts), artifacts, cells // 100, cells_per_parent)
    engine.dispose()
    # The default experiment's artifacts (the `table` runs) land in the store's folder too.
    (folder / "done").write_text("")
    print(f"  filled a SQLite store with {cells} evaluate runs in {time.perf_counter() - started:.0f} s")
    return uri


# --- timing -----------------------------------------------------------------------------------------

def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def armseg_table(uri: str, workdir: Path, metric: str = "mean_iou") -> tuple[float, float, Path]:
    """Wall and CPU time of a fresh `armseg table` process (start-up included), and the CSV it wrote."""
    out = workdir / "table.csv"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_RUN_ID", None)
    cpu, started = child_cpu(), time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "armseg"), "table", "--metric", metric,
                           "--data-root", DATA_ROOT, "--out", str(out)], cwd=workdir, env=env,
                          capture_output=True, text=True)
    took, cpu = time.perf_counter() - started, child_cpu() - cpu
    if done.returncode:
        raise SystemExit(f"armseg table failed:\n{done.stderr[-3000:]}")
    return took, cpu, out


def plain_search(uri: str, workdir: Path) -> tuple[float, float, int, str]:
    """A fresh process that imports MLflow and runs the plain search (wall and CPU until the search
    returns); then the table it pivots, as text, to compare."""
    out = workdir / "plain.txt"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PLAIN_QUERY, repr(time.time()), str(out), DATA_ROOT],
                          cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"plain search failed:\n{done.stderr[-3000:]}")
    took, cpu, runs = done.stdout.split()[:3]
    return float(took), float(cpu), int(runs), out.read_text()


def compare(uri: str, label: str, cells: int, repeat: int, plain_repeat: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        tables = [armseg_table(uri, workdir) for _ in range(repeat)]
        fast, fast_cpu = (statistics.median(t[i] for t in tables) for i in (0, 1))
        written = tables[-1][2]
        table_text = written.read_text() + written.with_name("table_runs.csv").read_text()
        plains = [plain_search(uri, workdir) for _ in range(plain_repeat)]
        plain, plain_cpu = (statistics.median(p[i] for p in plains) for i in (0, 1))
        same = plains[-1][3] == table_text
        print(f"  {label} {cells:>6} runs: armseg table {fast:6.2f} s (CPU {fast_cpu:5.2f} s) | plain "
              f"mlflow.search_runs {plain:6.2f} s (CPU {plain_cpu:6.2f} s, {plains[-1][2]} runs) | "
              f"{plain / fast:4.1f}x | same cells: {same} | load {os.getloadavg()[0]:.1f}", flush=True)
        if not same:
            raise SystemExit("the fast table and the plain search disagree")


# --- PostgreSQL behind an MLflow server -------------------------------------------------------------

def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend: str, artifacts: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None:
                raise SystemExit("mlflow server exited: " + log.read_text()[-2000:]) from None
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("mlflow server did not start in 3 minutes")


def postgres_run(cells: int, cells_per_parent: int, repeat: int, plain_repeat: int) -> None:
    """One fresh database per size: schema by MLflow, rows in bulk, queries through the server."""
    import mlflow
    import sqlalchemy

    name = f"armseg_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    backend = f"{PG}/{name}"
    scratch = Path(tempfile.mkdtemp(prefix="armseg_bench_pg_"))
    server = None
    try:
        server, uri = start_server(backend, scratch / "artifacts", scratch / "server.log")
        client = mlflow.MlflowClient(uri)
        location = client.get_experiment(client.create_experiment("bench")).artifact_location
        if not location.startswith("mlflow-artifacts:/"):
            raise SystemExit(f"unexpected artifact location {location} (expected mlflow-artifacts:/)")
        started = time.perf_counter()
        engine = sqlalchemy.create_engine(backend)
        experiment_id = location.rsplit("/", 1)[-1]
        fill(engine, experiment_id, location, scratch / "artifacts" / location.split(":/", 1)[1].strip("/"),
             cells // 100, cells_per_parent)
        engine.dispose()
        print(f"  filled PostgreSQL database {name} with {cells} evaluate runs in "
              f"{time.perf_counter() - started:.0f} s")
        compare(uri, "PostgreSQL+server", cells, repeat, plain_repeat)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
        shutil.rmtree(scratch, ignore_errors=True)


# --- start-up -----------------------------------------------------------------------------------------

NO_NETWORK = ("table", "evaluate", "synth", "augment", "register")
LOADED_CHECK = ("import sys; import armseg.cli, " + ", ".join(
    f"armseg.{'registration' if c == 'register' else c}.run" for c in NO_NETWORK)
    + "; print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")


def startup(repeat: int) -> None:
    armseg = str(Path(sys.executable).parent / "armseg")

    def median(command: list[str]) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    print(f"start-up: armseg --help {median([armseg, '--help']):.2f} s, armseg table --help "
          f"{median([armseg, 'table', '--help']):.2f} s, import mlflow alone "
          f"{median([sys.executable, '-c', 'import mlflow']):.2f} s (goal for --help: under 1 s)")
    loaded = subprocess.run([sys.executable, "-c", LOADED_CHECK], capture_output=True, text=True, check=True)
    print(f"network libraries loaded by the run modules of {', '.join(NO_NETWORK)}: {loaded.stdout.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 50000])
    parser.add_argument("--pg-sizes", type=int, nargs="*", default=[1000, 10000, 50000])
    parser.add_argument("--cells-per-parent", type=int, default=100,
                        help="runs each evaluate parent scored (100: one evaluate per model)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plain-repeat", type=int, default=1, help="the plain search is slow: once")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench_cache",
                        help="where the SQLite stores are kept between runs")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start (CPU times "
          "are the client process's; the tracking server's are not counted)")
    startup(args.repeat)
    print(f"armseg table --metric mean_iou (fresh process, start-up included; median of {args.repeat}), "
          f"{args.cells_per_parent} runs per evaluate parent:")
    for cells in args.sizes:
        compare(sqlite_store(args.cache, cells, args.cells_per_parent), "SQLite", cells, args.repeat,
                args.plain_repeat)
    if args.pg_sizes and not postgres_reachable():
        print("  PostgreSQL: no server on 127.0.0.1:5432, skipped")
        return
    for cells in args.pg_sizes:
        postgres_run(cells, args.cells_per_parent, args.repeat, args.plain_repeat)


if __name__ == "__main__":
    main()
