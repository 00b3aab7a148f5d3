"""Open a release's quality report in headless Chromium and save a screenshot of the whole page.

    apt-get install chromium                  # Debian's package: /usr/bin/chromium
    python benchmarks/report_screenshot.py [releases/adult/<version>/_report.html] [--out report.png]

With no path it takes the newest release of `adult`. Chromium runs with networking disabled
(a proxy that does not exist), so the page can only show what the file itself contains. The
check fails unless the screenshot is written and is not blank; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def newest_report(dataset: str = "adult") -> Path:
    root = REPO / "releases" / dataset
    version = json.loads((root / "latest.json").read_text())["version"]
    return root / version / "_report.html"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="?", type=Path)
    ap.add_argument("--out", type=Path, default=Path("report.png"))
    ap.add_argument("--height", type=int, default=6000, help="page height to capture, pixels")
    args = ap.parse_args()
    report = (args.report or newest_report()).resolve()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        print("no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--window-size=1280,{args.height}", f"--screenshot={args.out.resolve()}", report.as_uri()]
        subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if not args.out.exists():
        print(f"chromium wrote no screenshot of {report}", file=sys.stderr)
        return 1
    from PIL import Image  # matplotlib's dependency

    img = Image.open(args.out).convert("L")
    lo, hi = img.getextrema()
    colours = len(img.getcolors(maxcolors=1 << 16) or [])
    ok = hi - lo > 100 and colours > 50  # text and plots, not an empty or error page
    print(json.dumps({"report": str(report), "screenshot": str(args.out), "size": img.size,
                      "grey_levels": colours, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
