"""What every benchmark records beside its numbers: commit, machine, command, versions."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str:
    """The current git commit, with '-dirty' if the tree has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=RESULTS.parent).stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


# Read when the benchmark starts: the code that ran, even if the tree moves on meanwhile.
START_COMMIT = commit()


def write_result(kind: str, numbers: dict[str, Any]) -> Path:
    """Write ``results/<kind>-<UTC time>.json`` with the context of the measurement."""
    from cifar_cnn.runs import environment_info

    env = environment_info()
    end_commit = commit()
    record = {
        "benchmark": kind,
        "commit": START_COMMIT,
        **({"commit_at_end": end_commit} if end_commit != START_COMMIT else {}),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": env["cpu"],
        "tensorflow": env["tensorflow"],
        "keras": env["keras"],
        "environment": env,
        **numbers,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
