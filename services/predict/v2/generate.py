"""Make the gRPC code of the V2 protocol from ``grpc_predict_v2.proto``: ``python -m services.predict.v2.generate``.

Needs grpcio-tools (in the ``test`` extra). The generated modules are committed; a test
regenerates them into a temporary folder and fails when the committed ones differ.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "grpc_predict_v2.proto"
MODULES = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate() -> dict[str, str]:
    """The generated modules' text by file name (the grpc module imports its sibling relatively)."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--pyi_out={out}",
                            f"--grpc_python_out={out}", str(HERE / PROTO)])  # fmt: skip
        if code != 0:
            raise SystemExit(f"protoc failed ({code})")
        texts = {name: (Path(out) / name).read_text() for name in MODULES}
    # A pool of its own: clients such as tritonclient register the same `inference.*` names in the default
    # pool, and a process that holds both (tests, a gateway) must not fail with "duplicate symbol".
    messages = texts["grpc_predict_v2_pb2.py"]
    if "_descriptor_pool.Default()" not in messages:
        raise SystemExit("protoc's output changed: no _descriptor_pool.Default() to replace")
    texts["grpc_predict_v2_pb2.py"] = messages.replace("_descriptor_pool.Default()", "_descriptor_pool.DescriptorPool()")  # noqa: E501
    grpc_module = texts["grpc_predict_v2_pb2_grpc.py"]
    texts["grpc_predict_v2_pb2_grpc.py"] = grpc_module.replace(
        "import grpc_predict_v2_pb2 as", "from . import grpc_predict_v2_pb2 as"
    )
    return texts


def main() -> None:
    for name, text in generate().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
