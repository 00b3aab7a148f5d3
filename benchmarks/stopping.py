"""Stopping a run: seconds from SIGTERM (or SIGINT) to the exit of each entry point during training,
and the seconds Prefect's temporary API server takes to start (what its startup timeout must hold).

    python benchmarks/stopping.py [--signal TERM|INT] [--busy N] [--skip-flow]

Each entry point trains 300 rows of Adult (ctgan, tiny networks, 100,000 epochs) in a scratch folder
and is sent the signal once its first epoch is logged: ``python -m pipeline train``, ``python -m
pipeline run``, ``python -m flows.nightly run`` (with its own temporary API server). Then the
temporary API server is started with a fresh ``PREFECT_HOME`` (it migrates its database first) and
again with the same one. ``--busy N`` keeps N busy-looping processes running throughout, as on a
loaded machine. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
STARTUP = """
import json, os, sys, time
from prefect.server.api.server import SubprocessASGIServer
server = SubprocessASGIServer()
t0 = time.perf_counter()
server.start(timeout=600)
print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
server.stop()
"""


def _params(root: Path) -> Path:
    source = root / "adult.parquet"
    pd.read_parquet(REPO / "data/adult/train.parquet").head(300).to_parquet(source, index=False)
    params = {"seed": 3, "work_dir": str(root / "work"), "metrics_dir": str(root / "metrics"),
              "datasets": {"adult": {"source": str(source), "target": "income"}},
              "model": {"name": "ctgan", "gan": {"noise_dim": 16, "generator_dims": [32],
                                                 "discriminator_dims": [32], "pac": 2}},
              "train": {"epochs": 100_000, "batch_size": 40, "device": "cpu", "checkpoint_every": 1000},
              "score": {"thresholds": {}, "report": False}, "publish": {"release_root": str(root / "releases")}}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _stop_after_first_epoch(cmd: list[str], root: Path, signum: int, env: dict) -> dict:
    log = root / "work" / "adult" / "train_log.csv"
    out = root / "out.txt"
    with open(out, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 600
        while not (log.exists() and len(log.read_text().splitlines()) > 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{' '.join(cmd)} ended before its first epoch:\n{out.read_text()[-2000:]}")
            time.sleep(0.05)
        t0 = time.perf_counter()
        proc.send_signal(signum)
        code = proc.wait(timeout=300)
    lines = [line for line in out.read_text().splitlines() if line.startswith("cancelled by")]
    return {"seconds": round(time.perf_counter() - t0, 1), "exit": code, "line": lines[-1] if lines else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signal", choices=["TERM", "INT"], default="TERM")
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes kept running (a loaded machine)")
    ap.add_argument("--skip-flow", action="store_true", help="only the command line (no Prefect)")
    args = ap.parse_args()
    signum = getattr(signal, f"SIG{args.signal}")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    results: dict = {"signal": f"SIG{args.signal}", "busy": args.busy, "stop": {}, "api_startup": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            params = _params(root)
            env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
            env.pop("PREFECT_API_URL", None)
            common = ["--params", str(params)]
            subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--dataset", "adult", *common, "-q"],
                           cwd=REPO, check=True, env=env)
            cases = {"python -m pipeline train": ["pipeline", "train", "--dataset", "adult", *common, "-q"],
                     "python -m pipeline run": ["pipeline", "run", "--dataset", "adult", *common, "-q"]}
            if not args.skip_flow:
                cases["python -m flows.nightly run"] = ["flows.nightly", "run", *common]
            for name, cmd in cases.items():
                (root / "work" / "adult" / "train_log.csv").unlink(missing_ok=True)
                results["stop"][name] = _stop_after_first_epoch([sys.executable, "-m", *cmd], root, signum, env)
            if not args.skip_flow:
                home = {**env, "PREFECT_HOME": str(root / "fresh-home"), "PREFECT_LOGGING_LEVEL": "WARNING"}
                for kind in ("fresh PREFECT_HOME", "same PREFECT_HOME"):
                    out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, env=home,
                                         timeout=900)
                    results["api_startup"][kind] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
    finally:
        for p in busy:
            p.kill()
    print(f"{'entry point':32} {'seconds to exit':>16} {'exit':>5}")
    for name, r in results["stop"].items():
        print(f"{name:32} {r['seconds']:>16} {r['exit']:>5}")
    for kind, seconds in results["api_startup"].items():
        print(f"temporary API server, {kind}: healthy after {seconds} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
