"""Make the gRPC code of every ``.proto`` in the packages: ``python -m mlrm.web.protos``.

Needs grpcio-tools (in the ``test`` extra). The generated modules (``<name>_pb2.py``, ``.pyi`` and
``_pb2_grpc.py`` beside each ``<name>.proto``) are committed; a test regenerates them into a
temporary folder and fails when the committed ones differ.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mlrm", "services", "orchestrator", "cli")


def protos() -> list[Path]:
    """Every ``.proto`` file of the project's packages."""
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.proto"))


def generate(proto: Path) -> dict[Path, str]:
    """The generated modules' text by path, for one ``.proto`` (the grpc module imports its sibling relatively)."""
    from importlib.resources import files

    stem, here = proto.stem, proto.parent
    well_known = str(files("grpc_tools") / "_proto")
    names = (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py")
    with tempfile.TemporaryDirectory() as out:
        # protoc in a process of its own: in one that has loaded another protobuf runtime (TensorFlow's)
        # the compiler's C++ crashes
        done = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{here}", f"-I{well_known}", f"--python_out={out}",
             f"--pyi_out={out}", f"--grpc_python_out={out}", str(proto)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"protoc failed on {proto} ({done.returncode}): {done.stderr.strip()}")
        texts = {name: (Path(out) / name).read_text() for name in names}
    messages = texts[names[0]]
    if "import " not in "".join(line for line in proto.read_text().splitlines() if line.startswith("import ")):
        # A pool of its own for a self-contained .proto: clients such as tritonclient register the same
        # `inference.*` names in the default pool, and a process that holds both (tests, a gateway) must
        # not fail with "duplicate symbol". A .proto that imports others needs them in the default pool.
        if "_descriptor_pool.Default()" not in messages:
            raise SystemExit("protoc's output changed: no _descriptor_pool.Default() to replace")
        texts[names[0]] = messages.replace("_descriptor_pool.Default()", "_descriptor_pool.DescriptorPool()")
    texts[names[2]] = texts[names[2]].replace(f"import {stem}_pb2 as", f"from . import {stem}_pb2 as")
    return {here / name: text for name, text in texts.items()}


def stale() -> list[Path]:
    """The committed generated modules that differ from what their ``.proto`` makes now."""
    return [path for proto in protos() for path, text in generate(proto).items()
            if not path.exists() or path.read_text() != text]  # fmt: skip


def main() -> None:
    for proto in protos():
        for path, text in generate(proto).items():
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
