"""JSON Schema for every config kind, generated from the pydantic models (the only schema)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mlrm.config import KINDS, config_class

FILES = {kind: f"{re.sub(r'(?<!^)(?=[A-Z])', '-', kind.removesuffix('Config')).lower()}.schema.json" for kind in KINDS}


def schema_for(kind: str) -> dict[str, Any]:
    schema = config_class(kind).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = FILES[kind]
    return schema


def render(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in FILES.items():
        path = folder / name
        path.write_text(render(kind))
        written.append(path)
    return written
