"""The `cifar-cnn` command, driven through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_cnn", *args], capture_output=True,
                          text=True, cwd=cwd, env=os.environ.copy(), timeout=300)


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
    assert table.returncode == 0 and "macro" in table.stdout


def test_predict_reports_bad_files_and_predicts_the_rest(cli_run: Path, tmp_path: Path) -> None:
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "big.jpg")
    Image.new("LA", (20, 20)).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG junk")
    r = cli("predict", str(cli_run), str(tmp_path / "big.jpg"), str(tmp_path / "bad.png"),
            str(tmp_path / "small.png"), "--top-k", "3", "--json")
    assert r.returncode == 1
    assert "bad.png: not a readable image" in r.stderr
    out = json.loads(r.stdout)
    assert [("error" in o) for o in out] == [False, True, False]
    probs = [p["probability"] for p in out[0]["predictions"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    text = cli("predict", str(cli_run), str(tmp_path / "big.jpg"), "--calibrated")
    assert text.returncode == 0 and "%" in text.stdout
    from_file = cli("predict", str(cli_run / "model.keras"), str(tmp_path / "big.jpg"), "--json")
    assert from_file.returncode == 0
    assert json.loads(from_file.stdout)[0]["predictions"] == out[0]["predictions"]


def test_models_lists_recipes_and_networks() -> None:
    r = cli("models")
    assert r.returncode == 0 and "baseline" in r.stdout


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
    bad = cli("compare", str(tmp_path))
    assert bad.returncode == 2 and "metadata.json is missing" in bad.stderr
