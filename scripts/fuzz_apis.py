"""The long schemathesis run: every service's REST API and the control plane's against their own OpenAPI
documents, many examples each.

    .venv/bin/python scripts/fuzz_apis.py                  # 500 examples per operation
    .venv/bin/python scripts/fuzz_apis.py --examples 50    # quicker

The test suite runs the same checks with a few examples per operation (tests/mlrm/web/fuzz.py): no 5xx, no
status, content type or body off the document. Here the iris model is trained first in a temporary volume,
so requests naming it reach the model statistics and the V2 inference path too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlrm.bus.memory import MemoryBus  # noqa: E402
from mlrm.config import load_config  # noqa: E402
from mlrm.service import ApiSettings, services  # noqa: E402
from mlrm.settings import Settings  # noqa: E402
from mlrm.web.servers import ApiServers  # noqa: E402
from orchestrator.api.serve import ControlServers  # noqa: E402
from orchestrator.embedded import Embedded  # noqa: E402
from tests.mlrm.web.fuzz import fuzz  # noqa: E402

IRIS = ROOT / "configs" / "iris"
CONFIGS = {"collector": IRIS / "collect-train.yaml", "handler": IRIS / "clean-train.yaml",
           "features": IRIS / "features.yaml", "train": IRIS / "model.yaml", "predict": None,
           "orchestrator": None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="examples per operation")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="these services only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(volume=f"{tmp}/volume", state=f"{tmp}/runs.sqlite", retries=1)
        with Embedded(settings) as mlrm:
            assert mlrm.run(IRIS / "train.yaml", timeout=600).status == "succeeded"
            for name, config in CONFIGS.items():
                if args.only and name not in args.only:
                    continue
                started = time.perf_counter()
                if name == "orchestrator":  # the control plane, beside this process's orchestrator
                    with ControlServers(mlrm.orchestrator, configs=ROOT / "configs", http_port=0,
                                        grpc_port=None) as servers:  # fmt: skip
                        operations = fuzz(f"http://127.0.0.1:{servers.http_port}", max_examples=args.examples)
                    print(f"{name}: {operations} operations x {args.examples} examples: no failure "
                          f"({time.perf_counter() - started:.1f}s)")  # fmt: skip
                    continue
                service = services.get(name)(MemoryBus(), mlrm.volume, worker=f"{name}-fuzz")
                offered = service.api(ApiSettings(config=load_config(config) if config else None))
                with ApiServers(rest=offered.rest, http_port=0, name=name) as servers:
                    operations = fuzz(f"http://127.0.0.1:{servers.http_port}", max_examples=args.examples)
                if offered.close is not None:
                    offered.close()
                print(f"{name}: {operations} operations x {args.examples} examples: no failure "
                      f"({time.perf_counter() - started:.1f}s)")  # fmt: skip


if __name__ == "__main__":
    main()
