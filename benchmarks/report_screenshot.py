"""Open a release's quality report in headless Chromium, save a screenshot of the whole page and
check what a reader would see: every image decoded and painted (not one flat colour), and no
request made by the page other than for itself and its own data: URIs.

    apt-get install chromium                  # Debian's package: /usr/bin/chromium
    python benchmarks/report_screenshot.py [releases/adult/<version>/_report.html] [--out report.png]

With no path it takes the newest release of `adult`. The browser is driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: JSON messages ended by NUL on fds 3 and 4, so no
websocket client and no port), which records every request the page starts; networking is also
cut (no proxy, no DNS) so that nothing leaves the machine whatever the page asks for. Prints one
JSON line; exits 1 if a check fails, 2 without a browser. tests/unit/test_report_browser.py runs it
on a fresh release in the slow tier.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Every image: decoded, its natural size, and where it is painted on the page (CSS pixels).
IMAGES_JS = """(async () => {
  const imgs = [...document.images];
  const decoded = await Promise.all(imgs.map(i => i.decode().then(() => true, () => false)));
  return {height: document.documentElement.scrollHeight,
          resources: performance.getEntriesByType('resource').map(e => e.name),
          images: imgs.map((i, k) => { const r = i.getBoundingClientRect();
            return {alt: i.alt, src: i.src.slice(0, 40), decoded: decoded[k] && i.complete && i.naturalWidth > 0,
                    width: i.naturalWidth, height: i.naturalHeight,
                    box: [r.left + scrollX, r.top + scrollY, r.width, r.height]}; })};
})()"""


class DevTools:
    """A headless Chromium spoken to over ``--remote-debugging-pipe``."""

    def __init__(self, browser: str, args: list[str], log: Path) -> None:
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def fds_3_and_4() -> None:  # in the child: the pipe ends where Chromium expects them
            # Copied above 10 first: a pipe end may itself be fd 3 or 4 (dup2 onto itself keeps close-on-exec).
            ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            for target, fd in zip((3, 4), ends):
                os.dup2(fd, target)

        with open(log, "wb") as err:
            self.proc = subprocess.Popen([browser, "--remote-debugging-pipe", *args], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, close_fds=False, preexec_fn=fds_3_and_4,
                                         start_new_session=True)  # its own group: renderers go with it
        os.close(to_browser)
        os.close(from_browser)
        self.log, self.events, self._buf, self._id = log, [], b"", 0

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while (reply := self._read(deadline)).get("id") != self._id:
            self.events.append(reply)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_for(self, method: str, since: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events[since:]):
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            chunk = os.read(self._in, 1 << 20) if left > 0 and select.select([self._in], [], [], left)[0] else None
            if not chunk:
                tail = self.log.read_text(errors="replace")[-800:]
                raise RuntimeError(f"chromium {'closed the pipe' if chunk == b'' else 'did not answer'}: {tail}")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
            self.proc.wait(10)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group started above, and only it
            self.proc.wait()
        finally:
            os.close(self._out)
            os.close(self._in)


def colours(img) -> int:
    """Distinct colours of a Pillow image (65536 stands for 'at least that many')."""
    counts = img.getcolors(maxcolors=1 << 16)
    return len(counts) if counts else 1 << 16


def inspect_report(report: Path, screenshot: Path, browser: str, width: int = 1280) -> dict:
    """Load ``report`` in headless ``browser``, write a full-page screenshot and return what was
    seen: the images (decoded, painted colours), the page's requests other than for itself and
    data: URIs (``requests``, which must be empty), and ``ok``."""
    from PIL import Image  # matplotlib's dependency

    url = report.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        chrome = DevTools(browser, [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            f"--user-data-dir={profile}/profile",
            # Cut from the network, so that a page that does ask for something gets nothing.
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
            "about:blank"], Path(profile) / "chromium.log")
        try:
            target = chrome.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            page = chrome.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for method in ("Network.enable", "Page.enable"):
                chrome.call(method, session=page)
            chrome.call("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=page)
            since = len(chrome.events)
            nav = chrome.call("Page.navigate", {"url": url}, session=page)
            if nav.get("errorText"):
                raise RuntimeError(f"could not open {url}: {nav['errorText']}")
            chrome.wait_for("Page.loadEventFired", since)  # after every image has loaded or failed
            seen = chrome.call("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True,
                                                    "returnByValue": True}, session=page)["result"]["value"]
            shot = chrome.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": seen["height"], "scale": 1}}, session=page)
        finally:
            chrome.close()
    png = base64.b64decode(shot["data"])
    screenshot.write_bytes(png)
    full = Image.open(io.BytesIO(png)).convert("RGB")
    for img in seen["images"]:
        x, y, w, h = (round(v) for v in img.pop("box"))
        img["colours"] = colours(full.crop((x, y, x + w, y + h))) if w and h else 0
        img["blank"] = img["colours"] < 16  # a plot has text and anti-aliased lines: hundreds
    requests = [e["params"]["request"]["url"] for e in chrome.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == page]
    outside = [u for u in requests if u != url and not u.startswith("data:")]
    lo, hi = full.convert("L").getextrema()
    grey_levels = colours(full.convert("L"))
    ok = (hi - lo > 100 and grey_levels > 50  # text and plots, not an empty or error page
          and all(i["decoded"] and not i["blank"] for i in seen["images"])
          and not outside and not [r for r in seen["resources"] if not r.startswith("data:")])
    return {"report": str(report), "screenshot": str(screenshot), "size": full.size, "grey_levels": grey_levels,
            "images": seen["images"], "requests": outside, "resources": seen["resources"], "ok": ok}


def newest_report(dataset: str = "adult") -> Path:
    root = REPO / "releases" / dataset
    version = json.loads((root / "latest.json").read_text())["version"]
    return root / version / "_report.html"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="?", type=Path, help="an _report.html (default: the newest adult release)")
    ap.add_argument("--out", type=Path, default=Path("report.png"), help="screenshot file (default: %(default)s)")
    ap.add_argument("--width", type=int, default=1280, help="page width, pixels (the height is the page's)")
    args = ap.parse_args()
    report = (args.report or newest_report()).resolve()
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    if not browser:
        print("no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        res = inspect_report(report, args.out.resolve(), browser, args.width)
    except (OSError, RuntimeError) as exc:
        print(f"could not inspect {report} in {browser}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
