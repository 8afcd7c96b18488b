"""The V2 REST bodies as pydantic models: the components of the V2 OpenAPI document (``GET /openapi.json``).

They describe the JSON form of the Open Inference Protocol (KServe V2) as :mod:`.rest` reads and writes
it; the parsing itself is :mod:`.codec`'s (it accepts the binary extension too).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class V2Error(BaseModel):
    """Every V2 refusal."""

    error: str


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str = ""
    inputs: list[V2TensorMetadata] = Field(default_factory=list)
    outputs: list[V2TensorMetadata] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2RequestInput(BaseModel):
    """One input tensor: ``data`` in row-major order, or ``parameters.binary_data_size`` bytes after the JSON header."""

    name: str
    datatype: str
    """BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64 or BYTES."""
    shape: list[int]
    data: Any = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2InferenceRequest(BaseModel):
    """An inference request: a tensor a column (``[n]``), or one ``[n, k]`` tensor; ``parameters.input_ref``
    reads the rows from the volume instead."""

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[V2RequestInput] = Field(default_factory=list)
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: Any = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    outputs: list[V2ResponseOutput] = Field(default_factory=list)


class V2RepositoryModel(BaseModel):
    name: str
    version: str | None = None
    state: str | None = None
    reason: str | None = None


class V2LoadRequest(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)


MODELS: list[type[BaseModel]] = [
    V2Error, V2Live, V2Ready, V2ModelReady, V2ServerMetadata, V2ModelMetadata, V2InferenceRequest,
    V2InferenceResponse, V2RepositoryModel, V2LoadRequest,
]  # fmt: skip
