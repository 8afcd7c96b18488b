"""The cost of monitoring on online inference: mlrm's V2 REST throughput with the prediction log on and off.

    python benchmarks/monitoring.py            # the whole table (a few minutes)
    python benchmarks/monitoring.py --quick    # a short smoke run

The iris example (``configs/iris/train.yaml``: median fill, standard scaling, a random forest,
served by its exact ONNX conversion) is trained into a temporary volume and served by
``mlrm serve predict --no-bus``, three ways, one server at a time:

- ``off``: deployed without ``log`` (the baseline);
- ``log``: deployed with ``log: {sample: 1.0}``: every request's features and outputs logged;
- ``log+checks``: logged, and a second process runs a ``MonitorConfig`` (PSI, KS, chi-square,
  Wasserstein on the four features and the prediction, window of the newest 1000 rows) in a loop
  with a pause of one second, on the same machine (as an orchestrator beside the replica would).

The load generator is benchmarks/serving.py's: N client threads on keep-alive connections, one
2-D ``FP64`` input ``[rows, 4]`` asking for the class probabilities. Loads: rows=1 at concurrency
1 and 8, rows=256 at concurrency 4. Each variant runs ``--rounds`` times, interleaved (off, log,
log+checks, off, ...), and the best throughput of its rounds is kept: on a shared 2-core machine
the noise is one-sided. Reported per cell: requests/s of each variant and the cost of each
(``1 - rps_variant / rps_off``; the target is under 10%), the rows logged, and the seconds one
run of the checks takes. Results are printed and written to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import IRIS, Server, free_port, rest_payload, run_cell  # noqa: E402

MODEL = "iris-classifier"
LOADS = [(1, 1), (1, 8), (256, 4)]  # (rows, concurrency)
VARIANTS = ["off", "log", "log+checks"]
MONITOR = {
    "kind": "MonitorConfig", "model": MODEL, "window": {"count": 1000}, "min_samples": 50,
    "detectors": [{"type": t} for t in ("psi", "ks", "chi2", "wasserstein")]
    + [{"type": "chi2", "on": "predictions", "features": ["prediction"]}],
}  # fmt: skip
CHECKER = """
import json, sys, time
from mlrm.monitoring import MonitorConfig, run_checks
from mlrm.volume import open_volume
volume, config = open_volume(sys.argv[1]), MonitorConfig.model_validate(json.loads(sys.argv[2]))
took = []
while True:
    t0 = time.perf_counter()
    run_checks(volume, config)
    took.append(time.perf_counter() - t0)
    print(json.dumps({"runs": len(took), "seconds": sum(took) / len(took)}), flush=True)
    time.sleep(1.0)
"""


def train(volume: Path) -> None:
    code = (
        "import sys\nfrom orchestrator.embedded import Embedded\nwith Embedded() as m:\n"
        " r = m.run(sys.argv[1], timeout=600); assert r.status == 'succeeded', r.error"
    )
    env = {**os.environ, "MLRM_VOLUME": str(volume), "MLRM_STATE": str(volume.parent / "runs.sqlite")}
    subprocess.run([sys.executable, "-c", code, str(IRIS / "train.yaml")], check=True, env=env, cwd=ROOT)


def deploy(volume: Path, log: bool) -> None:
    """One active deployment of the model, with or without the prediction log."""
    from mlrm.deployments import Deployments, DeployRequest
    from mlrm.volume import open_volume

    deployments = Deployments(open_volume(str(volume)))
    for dep in deployments.active():
        deployments.unload(dep.id)
    deployments.create(DeployRequest(model=MODEL, alias="production", log={"sample": 1.0} if log else None))


def start(volume: Path, logs: Path, label: str) -> Server:
    http, grpc_port = free_port(), free_port()
    env = {**os.environ, "MLRM_VOLUME": str(volume), "MLRM_BUS": "memory://"}
    cmd = [sys.executable, "-m", "mlrm", "serve", "predict", "--no-bus", "--host", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc_port)]  # fmt: skip
    server = Server(label, cmd, env, http, grpc_port, logs / f"mlrm-{label}.log")
    server.wait_ready([MODEL])
    return server


def logged_rows(volume: Path) -> int:
    from mlrm.monitoring import read_log
    from mlrm.monitoring.paths import predictions_prefix
    from mlrm.volume import open_volume

    return len(read_log(open_volume(str(volume)), predictions_prefix(MODEL)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run: few requests per cell, one round")
    parser.add_argument("--requests", type=int, default=600, help="requests per client in a rows=1 cell")
    parser.add_argument("--cap", type=float, default=10.0, help="seconds at most per cell")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant, interleaved")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.cap, args.rounds = 200, 4.0, 1
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="mlrm-bench-monitoring-"))
    volume, logs = tmp / "volume", tmp / "logs"
    logs.mkdir()
    train(volume)
    data = {rows: rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.7, 0.7], (rows, 4)) for rows, _ in LOADS}
    best: dict[tuple[int, int, str], float] = {}
    checks: dict[str, float] = {}
    for round_ in range(args.rounds):
        for variant in VARIANTS:
            deploy(volume, log=variant != "off")
            server = start(volume, logs, f"{variant}-{round_}")
            checker = None
            if variant == "log+checks":
                checker = subprocess.Popen(
                    [sys.executable, "-c", CHECKER, str(volume), json.dumps(MONITOR)], cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=(logs / "checker.log").open("wb"), text=True,
                )  # fmt: skip
            try:
                for rows, concurrency in LOADS:
                    per = args.requests if rows == 1 else max(10, args.requests // 6)
                    payload = rest_payload(MODEL, data[rows], "probabilities")
                    cell = run_cell("rest", server.http, payload, concurrency, per, args.cap)
                    if cell["errors"]:
                        raise SystemExit(f"{variant}: {cell['errors']} failed requests; see {logs}")
                    key = (rows, concurrency, variant)
                    best[key] = max(best.get(key, 0.0), cell["rps"])
                    print(f"round {round_} {variant:>10} rows={rows:<3} c={concurrency}: {cell}", flush=True)
            finally:
                server.stop()
                if checker is not None:
                    checker.terminate()
                    out, _ = checker.communicate(timeout=30)
                    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                    if lines:
                        checks = lines[-1]
    table = []
    for rows, concurrency in LOADS:
        off = best[(rows, concurrency, "off")]
        row = {"rows": rows, "concurrency": concurrency, "rps_off": off}
        for variant in VARIANTS[1:]:
            row[f"rps_{variant}"] = best[(rows, concurrency, variant)]
            row[f"cost_{variant}"] = round(1 - best[(rows, concurrency, variant)] / off, 3)
        table.append(row)
    summary = {"table": table, "rows_logged": logged_rows(volume), "checks": checks, "rounds": args.rounds}
    print()
    print(f"{'rows':>5} {'conc':>5} {'off rps':>9} {'log rps':>9} {'cost':>7} {'log+checks':>11} {'cost':>7}")
    for r in table:
        print(f"{r['rows']:>5} {r['concurrency']:>5} {r['rps_off']:>9.1f} {r['rps_log']:>9.1f} "
              f"{r['cost_log']:>7.1%} {r['rps_log+checks']:>11.1f} {r['cost_log+checks']:>7.1%}")  # fmt: skip
    print(f"rows logged: {summary['rows_logged']}; one run of the checks: {checks}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"monitoring-{stamp}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
