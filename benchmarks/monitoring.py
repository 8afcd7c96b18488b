"""The cost of monitoring on online inference: mlrm's V2 REST throughput with the prediction log on and off.

    python benchmarks/monitoring.py            # the whole table (a few minutes)
    python benchmarks/monitoring.py --quick    # a short smoke run

The iris example (``configs/iris/train.yaml``: median fill, standard scaling, a random forest,
served by its exact ONNX conversion) is trained once into a volume that is copied three times,
each served by its own ``mlrm serve predict --no-bus``:

- ``off``: deployed without ``log`` (the baseline);
- ``log``: deployed with ``log: {sample: 1.0}``: every request's features and outputs logged;
- ``log+checks``: logged, and a second process runs a ``MonitorConfig`` (PSI, KS, chi-square,
  Wasserstein on the four features and the prediction, window of the newest 1000 rows) in a loop
  with a pause of ``--check-every`` seconds, on the same machine (as an orchestrator beside the
  replica would). The checker is paused (SIGSTOP) while the other variants are measured.

The load generator is benchmarks/serving.py's: N client threads on keep-alive connections, one
2-D ``FP64`` input ``[rows, 4]`` asking for the class probabilities. Loads: rows=1 at concurrency
1 and 8, rows=256 at concurrency 4. A shared 2-core machine drifts in speed by tens of percent
over minutes, so the variants are compared **paired**: each round measures the three servers
back to back in a fresh random order with short bursts (``--burst`` seconds), and the cost of a
variant in that round is ``1 - rps_variant / rps_off``; the table gives the median over
``--rounds`` rounds (the target is under 10%), beside the server's CPU time per request (what
logging adds whatever the machine's load), the rows logged, and the seconds one run of the
checks takes. Results are printed and written to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
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
    time.sleep(float(sys.argv[3]))
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run: few rounds of short bursts")
    parser.add_argument("--rounds", type=int, default=9, help="paired rounds per load")
    parser.add_argument("--burst", type=float, default=3.0, help="seconds each server is loaded per round")
    parser.add_argument(
        "--check-every",
        type=float,
        default=10.0,
        help="pause between two runs of the checks (the orchestrator's MLRM_LOOP_INTERVAL default)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.burst = 2, 1.5
    rng = np.random.default_rng(0)
    order = random.Random(0)
    tmp = Path(tempfile.mkdtemp(prefix="mlrm-bench-monitoring-"))
    logs = tmp / "logs"
    logs.mkdir()
    train(tmp / "trained")
    servers: dict[str, Server] = {}
    checker = None
    try:
        for variant in VARIANTS:
            volume = tmp / variant.replace("+", "-")
            shutil.copytree(tmp / "trained", volume)
            deploy(volume, log=variant != "off")
            servers[variant] = start(volume, logs, variant)
        checker = subprocess.Popen(
            [sys.executable, "-c", CHECKER, str(tmp / "log-checks"), json.dumps(MONITOR), str(args.check_every)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=(logs / "checker.log").open("wb"), text=True,
        )  # fmt: skip
        checker.send_signal(signal.SIGSTOP)
        data = {rows: rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.7, 0.7], (rows, 4)) for rows, _ in LOADS}
        table = []
        for rows, concurrency in LOADS:
            payload = rest_payload(MODEL, data[rows], "probabilities")
            for server in servers.values():  # warm each server for this payload
                run_cell("rest", server.http, payload, concurrency, 50, 1.0)
            rps: dict[str, list[float]] = {v: [] for v in VARIANTS}
            cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for round_ in range(args.rounds):
                variants = list(VARIANTS)
                order.shuffle(variants)
                for variant in variants:
                    server = servers[variant]
                    if variant == "log+checks":
                        checker.send_signal(signal.SIGCONT)
                    before = cpu_seconds(server.proc.pid)
                    cell = run_cell("rest", server.http, payload, concurrency, 10**9, args.burst)
                    used = cpu_seconds(server.proc.pid) - before
                    if variant == "log+checks":
                        checker.send_signal(signal.SIGSTOP)
                    if cell["errors"]:
                        raise SystemExit(f"{variant}: {cell['errors']} failed requests; see {logs}")
                    rps[variant].append(cell["rps"])
                    cpu[variant].append(used / max(cell["requests"], 1) * 1000)
                    print(f"round {round_} {variant:>10} rows={rows:<3} c={concurrency}: {cell}", flush=True)
                    time.sleep(1.2)  # the log writer's interval: its flush does not spill into the next burst
            row: dict[str, object] = {"rows": rows, "concurrency": concurrency,
                                      "rps_off": statistics.median(rps["off"]),
                                      "cpu_ms_off": round(statistics.median(cpu["off"]), 3)}  # fmt: skip
            for variant in VARIANTS[1:]:
                paired = [1 - v / o for v, o in zip(rps[variant], rps["off"], strict=True)]
                row[f"rps_{variant}"] = statistics.median(rps[variant])
                row[f"cost_{variant}"] = round(statistics.median(paired), 3)
                row[f"cpu_ms_{variant}"] = round(statistics.median(cpu[variant]), 3)
            table.append(row)
    finally:
        for server in servers.values():
            server.stop()
        checks: dict[str, float] = {}
        if checker is not None:
            checker.send_signal(signal.SIGCONT)
            checker.terminate()
            out, _ = checker.communicate(timeout=30)
            lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            checks = lines[-1] if lines else {}
    summary = {"table": table, "rows_logged": logged_rows(tmp / "log"), "checks": checks, "rounds": args.rounds,
               "burst": args.burst, "check_every": args.check_every}  # fmt: skip
    print()
    print(f"{'rows':>5} {'conc':>5} {'off rps':>9} {'log rps':>9} {'cost':>7} {'log+checks':>11} {'cost':>7}"
          f"   cpu ms/request off / log / log+checks")  # fmt: skip
    for r in table:
        print(f"{r['rows']:>5} {r['concurrency']:>5} {r['rps_off']:>9.1f} {r['rps_log']:>9.1f} "
              f"{r['cost_log']:>7.1%} {r['rps_log+checks']:>11.1f} {r['cost_log+checks']:>7.1%}"
              f"   {r['cpu_ms_off']} / {r['cpu_ms_log']} / {r['cpu_ms_log+checks']}")  # fmt: skip
    print(f"rows logged: {summary['rows_logged']}; one run of the checks: {checks}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"monitoring-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
