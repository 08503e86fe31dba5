"""The `cifar-cnn` command, driven through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.recipes import list_recipes

pytestmark = pytest.mark.slow  # every test here starts `cifar-cnn` processes

# What TensorFlow writes on its own: it must not reach users unless they ask (--verbose).
TF_CHATTER = ("I0000", "W0000", "E0000", "oneDNN", "cuInit", "cpu_feature_guard", "absl")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return clis([*args], cwd=cwd)[0]


def clis(*commands: list[str], cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """`cifar-cnn` commands, each in a fresh process, run at the same time (they must not
    depend on each other); their results in order."""
    env = os.environ.copy()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: the CLI quietens itself
    argvs = [[sys.executable, "-m", "cifar_cnn", *args] for args in commands]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=cwd, env=env) for argv in argvs]
    results = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return results


def assert_quiet(stderr: str) -> None:
    assert not [line for line in stderr.splitlines() if any(c in line for c in TF_CHATTER)]


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_recipe_is_usable_from_fresh_processes(recipe: str, folder_dataset: Path,
                                                     tmp_path: Path) -> None:
    """Train one short epoch, then evaluate, predict, load, export and serve, each in a
    process of its own."""
    r = cli("train", "--recipe", recipe, "--epochs", "1", "--batch-size", "32", "--data",
            str(folder_dataset), "--runs-dir", str(tmp_path), "--no-monitor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_quiet(r.stderr)
    run = tmp_path / recipe
    assert json.loads((run / "calibration.json").read_text())["fit_on"] == "calibration split"
    meta = json.loads((run / "metadata.json").read_text())
    used = meta["settings"]["precision"]["used"]  # "auto" resolved for this machine
    assert meta["recipe"]["precision"] == used and used in {"float32", "mixed_bfloat16"}

    # Each in a process of its own, at the same time: they only read the run (evaluate
    # writes its report/, export its own folder).
    ev, pr, ex = clis(["evaluate", str(run), "--json"],  # the run knows its data
                      ["predict", str(run), str(folder_dataset / "test"), "--json",
                       "--top-k", "2"],
                      ["export", str(run), "--format", "litert", "--out",
                       str(tmp_path / "litert")])
    assert ev.returncode == 0, ev.stderr
    assert_quiet(ev.stderr)
    metrics = json.loads(ev.stdout)
    assert metrics["num_images"] == 40 and metrics["recipe"] == recipe
    assert metrics["temperature_fit_on"] == "calibration split"
    assert (run / "report/report.html").is_file()

    assert pr.returncode == 0, pr.stderr
    assert_quiet(pr.stderr)
    out = json.loads(pr.stdout)
    classes = sorted(p.name for p in (folder_dataset / "test").iterdir())
    assert len(out) == 40
    for rec in out:
        assert list(rec["probabilities"]) == classes
        assert sum(rec["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert rec["label"] == rec["top_k"][0]["class"] and len(rec["top_k"]) == 2
        assert rec["calibrated"] is True

    code = ("import sys, cifar_cnn, keras, numpy as np; "
            "m = keras.saving.load_model(sys.argv[1]); "
            "p = m.predict(np.zeros((2, 32, 32, 3), 'uint8'), verbose=0); "
            "print(m.name, type(m.optimizer).__name__, p.shape)")
    bare = subprocess.run([sys.executable, "-c", code, str(run / "model.keras")],
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode == 0, bare.stderr
    assert "(2, 10)" in bare.stdout

    image = next((folder_dataset / "test").rglob("*.png"))
    assert ex.returncode == 0, ex.stdout + ex.stderr  # gated on the run's own test images
    pe = cli("predict", str(tmp_path / "litert"), str(image), "--json")
    assert pe.returncode == 0, pe.stderr
    assert sum(json.loads(pe.stdout)[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)

    _serve_answers(run, image)


def _serve_answers(run: Path, image: Path) -> None:
    """`cifar-cnn serve RUN` in its own process labels `image`, then stops on SIGTERM."""
    import signal
    import time

    import httpx

    from tests.serve.test_cli_serve import first_line, free_port, serve

    port = free_port()
    proc = serve(str(run), "--port", str(port))
    try:
        assert first_line(proc).startswith("Serving "), proc.poll()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        r = httpx.post(f"{base}/v1/predict", content=image.read_bytes(),
                       headers={"Content-Type": "image/png"}, timeout=60)
        assert r.status_code == 200, r.text
        (pred,) = r.json()["predictions"]
        assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


@pytest.fixture(scope="module")
def cli_run(folder_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("cli-runs")
    r = cli("train", "--model", "baseline", "--epochs", "2", "--data", str(folder_dataset),
            "--runs-dir", str(runs), "--val-size", "20", "--seed", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Epoch 2/2" in r.stdout and "img/s" in r.stdout
    assert f"cifar-cnn evaluate {runs / 'baseline'}" in r.stdout
    return runs / "baseline"


def test_evaluate_writes_report_and_json(cli_run: Path, folder_dataset: Path) -> None:
    r = cli("evaluate", str(cli_run), "--data", str(folder_dataset), "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["num_images"] == 40 and 0 <= metrics["accuracy"] <= 1
    assert set(metrics["per_class"]) == {p.name for p in (folder_dataset / "train").iterdir()}
    on_disk = json.loads((cli_run / "report/metrics.json").read_text())
    assert on_disk["accuracy"] == metrics["accuracy"]
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (cli_run / "report" / png).stat().st_size > 1000
    assert (cli_run / "calibration.json").is_file()  # learned on the validation split
    table = cli("evaluate", str(cli_run), "--data", str(folder_dataset), "--no-report")
    assert table.returncode == 0 and "macro" in table.stdout and "Report:" not in table.stdout
    shown = cli("evaluate", str(cli_run), "--data", str(folder_dataset))
    assert shown.returncode == 0, shown.stderr
    assert f"Report: {cli_run / 'report' / 'report.html'}" in shown.stdout
    assert f"{on_disk['accuracy'] * 100:.2f}%" in shown.stdout


def test_predict_reports_bad_files_and_predicts_the_rest(cli_run: Path, tmp_path: Path) -> None:
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "big.jpg")
    Image.new("LA", (20, 20)).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG junk")
    # a decompression bomb: 30,000 x 30,000 pixels in a file of under a megabyte
    Image.new("L", (30_000, 30_000)).save(tmp_path / "bomb.png")
    folder = tmp_path / "folder" / "nested"
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 40), (10, 200, 10)).save(folder / "green.png")
    (folder / "notes.txt").write_text("not an image, and not named as one: skipped")
    r = cli("predict", str(cli_run), str(tmp_path / "big.jpg"), str(tmp_path / "bad.png"),
            str(tmp_path / "bomb.png"), str(tmp_path / "small.png"), str(tmp_path / "folder"),
            str(tmp_path / "missing.png"), str(tmp_path / "*.jpg"), "--top-k", "3", "--json")
    assert r.returncode == 1
    assert_quiet(r.stderr)
    assert "bad.png: not a readable image" in r.stderr
    assert "bomb.png: the image is over the limit of 80,000,000 pixels" in r.stderr
    assert "missing.png: no such file or directory" in r.stderr
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    names = [Path(o["file"]).name for o in out]
    assert names == ["big.jpg", "bad.png", "bomb.png", "small.png", "green.png", "missing.png",
                     "big.jpg"]
    assert [("error" in o) for o in out] == [False, True, True, False, False, True, False]
    probs = [p["probability"] for p in out[0]["top_k"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    assert len(out[0]["probabilities"]) == 10

    lines = cli("predict", str(cli_run), str(tmp_path / "big.jpg"), str(folder), "--jsonl")
    assert lines.returncode == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [rec["probabilities"] for rec in records] == [out[0]["probabilities"],
                                                         out[4]["probabilities"]]
    raw = cli("predict", str(cli_run), str(tmp_path / "big.jpg"), "--json", "--uncalibrated")
    raw_probs = json.loads(raw.stdout)[0]["probabilities"]
    assert json.loads(raw.stdout)[0]["calibrated"] is False and raw_probs != out[0]["probabilities"]
    text = cli("predict", str(cli_run), str(tmp_path / "big.jpg"))
    assert text.returncode == 0 and "%" in text.stdout
    from_file = cli("predict", str(cli_run / "model.keras"), str(tmp_path / "big.jpg"), "--json")
    assert from_file.returncode == 0
    # same model, same calibration (found beside the .keras file); batch sums may differ in
    # the last bits
    alone = json.loads(from_file.stdout)[0]["probabilities"]
    assert list(alone.values()) == pytest.approx(list(out[0]["probabilities"].values()),
                                                 abs=1e-5)


def test_predict_batches_give_the_same_answers(cli_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.jpg", quality=75)
    one = cli("predict", str(cli_run), str(tmp_path), "--jsonl", "--batch-size", "1",
              "--workers", "1")
    many = cli("predict", str(cli_run), str(tmp_path), "--jsonl", "--batch-size", "3")
    assert one.returncode == many.returncode == 0
    a = [json.loads(x)["probabilities"] for x in one.stdout.splitlines()]
    b = [json.loads(x)["probabilities"] for x in many.stdout.splitlines()]
    assert len(a) == 7
    for pa, pb in zip(a, b, strict=True):
        assert list(pa.values()) == pytest.approx(list(pb.values()), abs=1e-6)
    bad = cli("predict", str(cli_run), str(tmp_path), "--batch-size", "0")
    assert bad.returncode == 2 and "batch_size" in bad.stderr and "Traceback" not in bad.stderr


def test_models_lists_recipes_and_networks() -> None:
    from cifar_cnn.models import list_models
    from cifar_cnn.recipes import get_recipe, list_recipes

    r = cli("models")
    assert r.returncode == 0, r.stderr
    recipes, models = r.stdout.split("Models")
    listed = [line.split()[0] for line in recipes.splitlines()[1:] if line.strip()]
    assert listed == list_recipes()
    for name in list_recipes():
        line = next(line for line in recipes.splitlines() if line.split()[:1] == [name])
        assert f"model={get_recipe(name).model}," in line and get_recipe(name).description in line
    # What a fresh process registers (this one may hold networks that benchmarks register).
    fresh = subprocess.run([sys.executable, "-c", "from cifar_cnn.models import list_models; "
                            "print(*list_models())"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert set(fresh) <= set(list_models())
    assert [line.strip() for line in models.splitlines()[1:] if line.strip()] == fresh


@pytest.mark.parametrize("args,message", [
    (["train", "--recipe", "nope"], "Unknown recipe 'nope'"),
    (["train", "--data", "/no/such/dir"], "does not exist"),
    (["evaluate", "/no/such/run"], "does not exist"),
    (["predict", "/no/such/run", "x.png"], "No trained model"),
])
def test_clear_errors(args: list[str], message: str) -> None:
    r = cli(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_compare_prints_table_and_plot(cli_run: Path, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.png"
    r = cli("compare", str(cli_run), str(trained_run), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert cli_run.name in r.stdout and trained_run.name in r.stdout
    assert out.stat().st_size > 1000
    row = next(line for line in r.stdout.splitlines() if line.startswith(cli_run.name))
    assert row.split()[1] == "2"  # epochs, from the run's history.csv
    saved = cli_run / "report" / "metrics.json"
    if saved.is_file():  # evaluated by an earlier test: its accuracy is in the table
        assert f"{json.loads(saved.read_text())['accuracy'] * 100:.2f}%" in row
    bad = cli("compare", str(tmp_path))
    assert bad.returncode == 2 and "metadata.json is missing" in bad.stderr


def test_compare_names_an_unreadable_history(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "metadata.json").write_text('{"name": "r", "status": "running"}')
    (run / "history.csv").write_text("epoch,loss\n")
    r = cli("compare", str(run))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{run / 'history.csv'} has a header (epoch, loss) but no data rows" in r.stderr
