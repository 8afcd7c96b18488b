"""JSON Schema for every config kind, generated from the pydantic models (the only schema)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlrm.byom import ModelDescription
from mlrm.card import ModelCard
from mlrm.config import kinds

# Documents that are not config files but whose schema users and tools want too.
DOCUMENTS: dict[str, type[BaseModel]] = {"ModelCard": ModelCard, "ModelDescription": ModelDescription}


def schema_file(kind: str) -> str:
    """``TrainConfig`` -> ``train.schema.json``, ``LocalDeployment`` -> ``local-deployment.schema.json``."""
    return f"{re.sub(r'(?<!^)(?=[A-Z])', '-', kind.removesuffix('Config')).lower()}.schema.json"


def schema_for(kind: str) -> dict[str, Any]:
    model = DOCUMENTS[kind] if kind in DOCUMENTS else kinds.get(kind)
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = schema_file(kind)
    return schema


def render(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2, sort_keys=True) + "\n"


def files() -> dict[str, str]:
    """Every registered kind (and the model card) and the file its schema goes to."""
    return {kind: schema_file(kind) for kind in [*kinds.names(), *DOCUMENTS]}


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in files().items():
        path = folder / name
        path.write_text(render(kind))
        written.append(path)
    return written
