"""The quality report as a reader sees it: a fresh release's ``_report.html`` opened in headless
Chromium (benchmarks/report_screenshot.py, over the DevTools protocol) shows every embedded plot
decoded and painted, and asks nothing of the network; the same check fails a page that does."""

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.report_screenshot import BROWSERS
from pipeline import publish, score
from tests.conftest import REPO

BROWSER = next(filter(None, map(shutil.which, BROWSERS)), None)
pytestmark = [
    pytest.mark.slow,  # a real browser in a subprocess
    pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH: `apt-get install chromium` (.ci/run installs it)"),
]


def _inspect(page: Path, screenshot: Path) -> tuple[int, dict]:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/report_screenshot.py"), str(page),
                          "--out", str(screenshot)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode in (0, 1) and out.stdout.strip(), out.stderr[-2000:]
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def test_a_release_report_shows_every_plot_and_fetches_nothing(scored_tiny, tmp_path):
    scored_tiny.score.report = True  # off in the tiny config: a report costs seconds
    score.run(scored_tiny, "tiny")
    report = publish.run(scored_tiny, "tiny").path / "_report.html"
    code, seen = _inspect(report, tmp_path / "report.png")
    assert code == 0 and seen["ok"], seen
    assert len(seen["images"]) == 4  # distributions, pair heatmap, privacy, training curves
    for img in seen["images"]:
        assert img["src"].startswith("data:image/png;base64,") and img["decoded"] and img["width"] > 0, img
        assert not img["blank"], img
    assert seen["requests"] == [] and seen["resources"] == []
    shot = Image.open(tmp_path / "report.png")
    assert shot.width == 1280 and shot.height > 2000  # the whole page, plots included


def test_the_check_fails_a_page_with_a_blank_a_broken_or_a_remote_image(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), "white").save(buf, "PNG")
    flat = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    page = tmp_path / "_report.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='stylesheet' href='http://example.com/s.css'></head>"
                    "<body><h1>Synthetic data quality</h1><p>" + "text " * 200 + "</p>"
                    f"<img alt='flat' src='{flat}'><img alt='broken' src='data:image/png;base64,iVBORw0KGgo='>"
                    "<img alt='remote' src='https://example.com/plot.png'></body></html>")
    code, seen = _inspect(page, tmp_path / "page.png")
    assert code == 1 and not seen["ok"]
    images = {img["alt"]: img for img in seen["images"]}
    assert images["flat"]["decoded"] and images["flat"]["blank"]
    assert not images["broken"]["decoded"] and not images["remote"]["decoded"]
    assert sorted(seen["requests"]) == ["http://example.com/s.css", "https://example.com/plot.png"]
