"""Render report.html in headless Chromium: every image decodes and the headline is right.

Needs a Chromium binary (Debian: ``apt-get install chromium``). Without one the test is
skipped locally but fails under CI (``CI`` set), where the browser is expected to exist.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cifar_cnn.evaluation.metrics import classification_metrics
from cifar_cnn.evaluation.report import write_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # starts Chromium

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Runs after every image has loaded (or failed) and writes what it saw into the DOM, which
# --dump-dom then prints.
PROBE = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var headline = document.getElementById("headline-accuracy");
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({
    widths: images.map(function (img) { return img.naturalWidth; }),
    headline: headline ? headline.textContent.trim() : null
  });
  document.body.appendChild(pre);
});
</script>
"""


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = f"no headless browser found (looked for {', '.join(BROWSERS)})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must install chromium")
    pytest.skip(message)


def render(browser: str, page: Path, profile: Path) -> dict:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, (
        f"no probe output from {browser} (exit {result.returncode}); "
        f"stderr tail:\n{result.stderr[-2000:]}"
    )
    return json.loads(html.unescape(match.group(1)))


def test_report_renders_in_chromium(tmp_path: Path, make_data) -> None:
    browser = find_browser()
    data = make_data(n=40)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    metrics["temperature"] = 1.3
    history = {"epoch": [0.0, 1.0], "loss": [1.5, 1.1], "accuracy": [0.4, 0.6]}
    report_dir = write_report(
        tmp_path / "report",
        metrics=metrics,
        images=data.images,
        y_true=data.y_true,
        probs=data.probs,
        class_names=data.class_names,
        history=history,
        info={"run": "browser-check"},
    )
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "</body>" in page
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")

    seen = render(browser, probe_page, tmp_path / "profile")

    assert len(seen["widths"]) == 6, seen
    assert all(width > 0 for width in seen["widths"]), f"images failed to load: {seen['widths']}"
    assert seen["headline"] == f"{metrics['accuracy'] * 100:.2f}%"


# For the 100-class report: what a reader sees, no horizontal scrolling, a per-class table
# that scrolls inside its own box, and the ranked confusions.
PROBE_MANY = """
<script>
window.addEventListener("load", function () {
  var box = document.querySelector(".scroll");
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({
    widths: Array.prototype.map.call(document.images, function (img) { return img.naturalWidth; }),
    pageWidth: document.documentElement.scrollWidth,
    viewWidth: window.innerWidth,
    boxHeight: box ? box.clientHeight : null,
    tableHeight: box ? box.scrollHeight : null,
    confusions: document.querySelectorAll("#top-confusions tbody tr").length
  });
  document.body.appendChild(pre);
});
</script>
"""


def test_report_with_100_classes_renders_in_chromium(tmp_path: Path, make_data) -> None:
    browser = find_browser()
    data = make_data(n=400, num_classes=100)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    report_dir = write_report(
        tmp_path / "report",
        metrics=metrics,
        images=data.images,
        y_true=data.y_true,
        probs=data.probs,
        class_names=data.class_names,
    )
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", PROBE_MANY + "</body>", 1), encoding="utf-8")

    seen = render(browser, probe_page, tmp_path / "profile")

    assert len(seen["widths"]) == 5 and all(w > 0 for w in seen["widths"]), seen
    assert seen["pageWidth"] <= seen["viewWidth"], seen  # nothing wider than the window
    assert 0 < seen["boxHeight"] < seen["tableHeight"], seen  # 100 rows scroll in a box
    assert seen["confusions"] == len(metrics["top_confusions"]) == 20
