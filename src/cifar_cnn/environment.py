"""What a result was measured with: library versions, the source commit and the machine.

Recorded in every run's metadata.json, every export's and every benchmark JSON, because
timings compare only between runs on the same host.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def environment_info() -> dict[str, str | None]:
    """Library versions and machine facts recorded with every run."""
    import keras
    import numpy
    import tensorflow as tf

    from cifar_cnn import __version__

    return {
        "cifar_cnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "commit": source_commit(),
    }


def source_commit() -> str | None:
    """The git commit of the cifar-cnn source in use, with ``-dirty`` if it has uncommitted
    changes; None when it is not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=root,
                              check=False).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except OSError:  # no git program
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo; empty where there is none (not Linux)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU model name with its family and model numbers, from /proc/cpuinfo if there.

    Virtual machines often report a bare "AMD EPYC"; the family/model numbers still tell the
    generations apart (family 25 is Zen 3/4, 26 is Zen 5), which matters for timings.
    """
    fields = _cpuinfo()
    if "model name" in fields:
        ids = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
        return f"{fields['model name']} ({ids + '; ' if ids else ''}{os.cpu_count()} cores)"
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the CPU (x86 ``flags``, Arm ``Features``); empty if unknown."""
    fields = _cpuinfo()
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())
