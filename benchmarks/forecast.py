"""One forecast request, end to end, over V2 REST and gRPC, beside a direct in-process Keras call, in one run.

    python benchmarks/forecast.py            # 300 requests per cell
    python benchmarks/forecast.py --quick    # 30 requests per cell (a smoke run)

Trains the power example's two forecasters (``configs/power``: a GRU and a CNN-LSTM reading a window
of shape (672, 7) and forecasting the next 8 readings) into a temporary volume, starts
``mlrm serve predict --no-bus`` on it (both models served by one process), and sends one request at a
time: the 672 raw rows (timestamps as text, power as FP64) with tritonclient over REST and over gRPC.
The server makes the window (time features, normalisation with the stored statistics), calls the
network, and de-normalises and dates the 8 forecasts. In the same run, in this process, on the same
window: the network alone (the served ``tf.function``, and Keras's ``model.predict``), and the whole
path without a transport (the data plane: pipeline + network + post-processing).

The thesis this project grew from measured, on CPU, 2.27 s mean per request for this path (FastAPI in
front of TensorFlow Serving, authentication included) and 0.62 s for the inference call alone over
gRPC; they are printed beside ours (authentication is off here: the control plane has not landed).
Results go to ``benchmarks/results/``. On a shared 2-core machine the figures are noisy; compare
the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import Server, free_port  # noqa: E402

POWER = ROOT / "configs" / "power"
MODELS = {"gru": "power-gru", "cnn-lstm": "power-cnn-lstm"}
THESIS_MS = {"path": 2270.0, "inference over gRPC": 620.0}


def timed(fn: Callable[[], Any], n: int) -> dict[str, float]:
    fn()  # one untimed call: connections open, caches warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "n": n, "mean_ms": round(statistics.fmean(times), 3), "p50_ms": round(times[len(times) // 2], 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
    }  # fmt: skip


def train(tmp: Path) -> tuple[Path, pd.DataFrame]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("power_generate", POWER / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    history, week = module.generate(tmp / "data")
    os.environ["POWER_DATA"], os.environ["POWER_INPUT"] = str(history), str(week)
    from mlrm.settings import Settings
    from orchestrator.embedded import Embedded

    volume = tmp / "volume"
    with Embedded(Settings(volume=str(volume), state=str(tmp / "runs.sqlite"), retries=1)) as mlrm:
        for kind in MODELS:
            t0 = time.perf_counter()
            run = mlrm.run(POWER / f"train-{kind}.yaml", timeout=900)
            if run.status != "succeeded":
                raise SystemExit(f"training {kind} failed: {run.error}")
            metrics = run.result("train")["metrics"]
            figures = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())
            print(f"trained {MODELS[kind]} in {time.perf_counter() - t0:.1f} s: {figures}", flush=True)
    return volume, pd.read_csv(week)


def triton_request(module: Any, model: str, raw: pd.DataFrame) -> Callable[[Any], Any]:
    timestamp = module.InferInput("timestamp", [len(raw)], "BYTES")
    timestamp.set_data_from_numpy(np.asarray(raw["timestamp"].astype(str).tolist(), dtype=object))
    power = module.InferInput("power", [len(raw)], "FP64")
    power.set_data_from_numpy(raw["power"].to_numpy(dtype=np.float64))

    def call(client: Any) -> Any:
        result = client.infer(model, [timestamp, power], model_version="candidate")
        assert result.as_numpy("prediction").shape == (8,)
        return result

    return call


def in_process(volume: Path, model: str, raw: pd.DataFrame, n: int) -> dict[str, dict[str, float]]:
    """The same window without a transport: the data plane, the served tf.function, Keras's predict."""
    from mlrm.volume.local import LocalVolume
    from services.predict.dataplane import DataPlane, InferenceRequest
    from services.predict.server import ModelServer, Target

    server = ModelServer(LocalVolume(volume), worker="bench")
    plane = DataPlane(server)
    served = server.get(Target(model, alias="candidate"))
    frame = served.coerce(raw)
    window = served.transform(frame)[served.features].to_numpy(dtype=np.float32)
    keras_model = served.model
    x = window.reshape(-1, *keras_model.input_shape)
    return {
        "data plane (pipeline + network + post-processing)": timed(
            lambda: plane.infer(InferenceRequest(model, raw, alias="candidate")), n
        ),
        "network: served tf.function": timed(lambda: keras_model.call(x).numpy(), n),
        "network: keras model.predict": timed(lambda: keras_model.network.predict(x, verbose=0), n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 requests per cell instead of 300")
    args = parser.parse_args()
    n = 30 if args.quick else 300
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient
    results: dict[str, Any] = {"requests_per_cell": n, "thesis_ms": THESIS_MS, "models": {}}
    with tempfile.TemporaryDirectory(prefix="mlrm-forecast-bench-") as tmp_name:
        tmp = Path(tmp_name)
        volume, raw = train(tmp)
        http, grpc_port = free_port(), free_port()
        env = {**os.environ, "MLRM_VOLUME": str(volume), "MLRM_BUS": "memory://", "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, "-m", "mlrm", "serve", "predict", "--no-bus", "--host", "127.0.0.1",
               "--http-port", str(http), "--grpc-port", str(grpc_port)]  # fmt: skip
        server = Server("mlrm", cmd, env, http, grpc_port, tmp / "mlrm.log")
        try:
            server.wait_ready(list(MODELS.values()), timeout=300)
            rest = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
            rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            for model in MODELS.values():
                call = triton_request(httpclient, model, raw)
                cells = {"REST (tritonclient)": timed(lambda c=call: c(rest), n)}
                call = triton_request(grpcclient, model, raw)
                cells["gRPC (tritonclient)"] = timed(lambda c=call: c(rpc), n)
                results["models"][model] = cells
            rest.close()
            rpc.close()
        finally:
            server.stop()
        for model in MODELS.values():  # after the server stopped: the two never share the CPU
            results["models"][model] |= in_process(volume, model, raw, n)
    print_table(results)
    out = ROOT / "benchmarks" / "results" / f"forecast-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


def print_table(results: dict[str, Any]) -> None:
    print(f"\none forecast request: 672 raw rows in, 8 forecasts out ({results['requests_per_cell']} requests a cell)")
    print(f"{'model':16} {'path':52} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'thesis ms':>10} {'x faster':>9}")
    for model, cells in results["models"].items():
        for path, cell in cells.items():
            thesis = THESIS_MS["path"] if path.startswith("REST") else (
                THESIS_MS["inference over gRPC"] if path.startswith("gRPC") else None)  # fmt: skip
            ratio = f"{thesis / cell['mean_ms']:.0f}" if thesis else "-"
            print(f"{model:16} {path:52} {cell['mean_ms']:9.2f} {cell['p50_ms']:9.2f} {cell['p99_ms']:9.2f} "
                  f"{thesis if thesis else '-':>10} {ratio:>9}")  # fmt: skip
    print("thesis: FastAPI + TensorFlow Serving on CPU, authentication included (2.27 s a request); the inference "
          "call alone over gRPC 0.62 s. Ours: authentication off.")  # fmt: skip


if __name__ == "__main__":
    main()
