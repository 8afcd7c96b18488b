"""The closed loop on the drifting-stream example: how long from the shift to detection and to promotion.

    python benchmarks/closed_loop.py            # 3 streams (seeds), embedded
    python benchmarks/closed_loop.py --quick    # 1 stream

The example's configs (configs/drift/: monitor window 200 rows, retraining on 450 labelled rows since
the drift, a shadow until 100 labelled rows, a canary of 30% until it answered 60 requests) run
embedded, with online V2 requests (REST, 10 rows each, a routing key per caller) and their labels
flowing as fast as one client sends them; the loop ticks after every 200 rows. Reported, after the
shift: rows and seconds until the first drifted check, the retraining's submission, the canary and
the promotion; and beside them the **floor** the configs allow (detection: one monitor window;
promotion: the rows the retraining window, the shadow's labels and the canary's request count need,
with zero training time), as a ratio. Also the cost of one tick (checks, policies) and the traffic's
rows/s. Results are also written to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DRIFT = ROOT / "configs" / "drift"
MODEL = "drift-classifier"
WINDOW, ROWS_PER_REQUEST, SHIFT_WINDOW = 200, 10, 5


def one_stream(seed: int) -> dict:
    import httpx

    from mlrm.bus.memory import MemoryBus
    from mlrm.config import load_config
    from mlrm.deployments import Deployments, DeployRequest
    from mlrm.monitoring.checks import history as check_history
    from mlrm.monitoring.feedback import FeedbackItem, write_feedback
    from mlrm.settings import Settings
    from orchestrator import loop_events
    from orchestrator.embedded import Embedded
    from orchestrator.retrain import RetrainPolicy, apply, for_orchestrator
    from services.predict.service import PredictService
    from services.predict.v2.serve import V2Servers

    spec = importlib.util.spec_from_file_location("drift_generate", DRIFT / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    policy = load_config(DRIFT / "policy.yaml", RetrainPolicy)
    tmp = Path(tempfile.mkdtemp(prefix="mlrm-loop-bench-"))
    import os

    os.environ["DRIFT_DATA"] = str(gen.generate(tmp / "data"))
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    stream = gen.stream(WINDOW * 60, shift_at=WINDOW * SHIFT_WINDOW, seed=seed)
    marks: dict[str, tuple[int, float]] = {}
    ticks: list[float] = []
    with Embedded(settings) as mlrm:
        assert mlrm.run(DRIFT / "train.yaml", timeout=300).status == "succeeded"
        Deployments(mlrm.volume).create(DeployRequest(model=MODEL, alias="production", log={"sample": 1.0}))
        apply(mlrm.volume, DRIFT / "policy.yaml")
        loop = for_orchestrator(mlrm.orchestrator)
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0.05, worker="predict-bench")
        service.start()
        plog = service.prediction_log  # the deployment's `log`: every request
        failures = sent = 0
        with V2Servers(service, http_port=0, grpc_port=None) as servers, httpx.Client(
            base_url=f"http://127.0.0.1:{servers.http_port}", timeout=60
        ) as client:
            shifted_at = None
            started = time.perf_counter()
            for w in range(60):
                if w == SHIFT_WINDOW:
                    shifted_at = time.perf_counter()
                labels = []
                for start in range(w * WINDOW, (w + 1) * WINDOW, ROWS_PER_REQUEST):
                    chunk = stream.iloc[start : start + ROWS_PER_REQUEST]
                    rid = uuid.uuid4().hex
                    body = {"id": rid, "parameters": {"routing_key": f"user-{sent % 97}"}, "inputs": [
                        {"name": c, "datatype": "FP64", "shape": [len(chunk)], "data": chunk[c].tolist()}
                        for c in ("x1", "x2", "x3")]}  # fmt: skip
                    sent += 1
                    r = client.post(f"/v2/models/{MODEL}/versions/production/infer", json=body)
                    if r.status_code != 200:
                        failures += 1
                        continue
                    labels.append(FeedbackItem(request_id=rid, labels=chunk["y"].tolist()))
                plog.flush()
                write_feedback(mlrm.volume, MODEL, labels)
                t0 = time.perf_counter()
                loop.tick()
                ticks.append(time.perf_counter() - t0)
                service.server.sync()
                rows_after = (w + 1 - SHIFT_WINDOW) * WINDOW
                if "detected" not in marks and any(c.drifted for c in check_history(mlrm.volume, MODEL, limit=10)):
                    marks["detected"] = (rows_after, time.perf_counter())
                for event in loop_events.history(mlrm.volume, MODEL):
                    if event["step"] in ("retraining", "canary", "promoted") and event["step"] not in marks:
                        marks[event["step"]] = (rows_after, time.perf_counter())
                state = loop.state(MODEL)
                if state["phase"] == "training":
                    mlrm.orchestrator.wait(state["run_id"], timeout=300)
                if "promoted" in marks:
                    break
            elapsed = time.perf_counter() - started
        service.stop()
    data, canary = policy.data, policy.promotion.canary
    trained = data.min_rows + data.holdout
    shadow = policy.promotion.shadow.labels if policy.promotion.shadow else 0
    canary_rows = round(canary.requests / canary.share) * ROWS_PER_REQUEST
    floors = {"detected": WINDOW, "retraining": trained, "canary": trained + shadow,
              "promoted": trained + shadow + canary_rows}  # fmt: skip
    return {
        "seed": seed, "failures": failures, "requests": sent, "rows_per_s": sent * ROWS_PER_REQUEST / elapsed,
        "tick_ms_median": 1000 * statistics.median(ticks), "tick_ms_max": 1000 * max(ticks),
        "marks": {
            k: {"rows_after_shift": rows, "seconds_after_shift": t - shifted_at, "floor_rows": floors[k]}
            for k, (rows, t) in marks.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="One stream instead of three.")
    args = parser.parse_args()
    results = [one_stream(seed) for seed in ([11] if args.quick else [11, 12, 13])]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"closed_loop-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    print(f"{'seed':>4} {'step':<11} {'rows after shift':>16} {'floor':>6} {'ratio':>6} {'seconds':>8}")
    for r in results:
        for step in ("detected", "retraining", "canary", "promoted"):
            m = r["marks"].get(step)
            if m is None:
                print(f"{r['seed']:>4} {step:<11} {'never':>16}")
                continue
            ratio = m["rows_after_shift"] / m["floor_rows"]
            print(f"{r['seed']:>4} {step:<11} {m['rows_after_shift']:>16} {m['floor_rows']:>6} {ratio:>6.2f} "
                  f"{m['seconds_after_shift']:>8.2f}")  # fmt: skip
        print(f"{r['seed']:>4} failed requests {r['failures']} of {r['requests']}; traffic "
              f"{r['rows_per_s']:.0f} rows/s; tick median {r['tick_ms_median']:.0f} ms, max {r['tick_ms_max']:.0f} ms")


if __name__ == "__main__":
    main()
