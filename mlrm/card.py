"""The model card: the contract between the train service, which writes it, and predict, which reads it.

It carries the MLaaS description fields (``modelname`` … ``inference``), lineage, the
sha256 of every file of the version, and what predict needs to call the model: the
flavour and file of the artefact, the inference pipeline (the training route's
cleaning and feature steps, applied to every prediction with the stored statistics),
and the inputs and outputs with their datatypes and shapes. ``mlrm schema`` exports
it to JSON Schema like the configs.

Cards written before ``schema_version`` existed (version 1) still load; they have no
recorded pipeline, which predict recovers from the training route in their lineage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlrm.errors import RefusedError, RegistryError

SCHEMA_VERSION = 2

# V2 (Open Inference Protocol) datatypes by pandas/numpy dtype kind.
_DATATYPES = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL", "M": "BYTES", "m": "BYTES", "O": "BYTES"}


def datatype(dtype: Any) -> str:
    """The V2 datatype of a pandas/numpy dtype (text, categories and timestamps travel as BYTES)."""
    kind = getattr(dtype, "kind", "O")
    if kind == "f" and getattr(dtype, "itemsize", 8) == 4:
        return "FP32"
    return _DATATYPES.get(kind, "BYTES")


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer mlrm may add fields: keep them (they are signed)


class Feature(_Part):
    """One input column: its name and pandas dtype (``type``), and its V2 datatype and shape."""

    name: str
    type: str = "object"
    datatype: str = "BYTES"
    shape: list[int] = Field(default_factory=lambda: [-1])


class Output(_Part):
    """One output of the model: the prediction, or the class probabilities."""

    name: str
    datatype: str
    shape: list[int]
    description: str = ""


class Artefact(_Part):
    """How the model is stored: the flavour that loads it, its format and its file in the version folder."""

    flavour: str = "sklearn"
    format: str = "skops"
    file: str = "model.skops"
    python: str | None = None


class Runtime(_Part):
    """A way to serve the version besides its artefact's own flavour, e.g. ``onnx`` converted at registration.

    ``file`` is set only when the version has it: the conversion was exact on the hold-out rows
    (``check`` says how exact); otherwise ``reason`` says why it was not made or not kept.
    """

    flavour: str
    format: str | None = None
    file: str | None = None
    exact: bool = False
    reason: str | None = None
    check: dict[str, Any] = Field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.file is not None and self.exact


# What ``runtime: auto`` prefers, fastest first, when the version has it; else the artefact's own flavour.
AUTO_RUNTIMES = ("onnx",)


class PipelineStep(_Part):
    """One step of the inference pipeline: the training route's step (``hop``) and position, its config,
    and the key and sha256 of the statistics it learned (``state/<state>.json``), if any."""

    hop: str
    service: str
    position: int
    config: dict[str, Any]
    state: str | None = None
    sha256: str | None = None


class Inference(_Part):
    """How to call the model."""

    input: list[str] = Field(default_factory=list)
    """The columns the estimator itself takes (after the pipeline)."""
    output: dict[str, Any] = Field(default_factory=dict)
    classes: list[Any] | None = None
    targets: list[str] = Field(default_factory=list)
    """The columns a model predicting several at once answers, in order (a forecast's `power@+1` ..);
    empty for one prediction per row."""
    artefact: Artefact = Field(default_factory=Artefact)
    pipeline: list[PipelineStep] = Field(default_factory=list)
    """Raw rows go through these steps, in order, before the model."""
    inputs: list[Feature] = Field(default_factory=list)
    """The raw columns a prediction request carries (the pipeline's input, without the target)."""
    outputs: list[Output] = Field(default_factory=list)
    predict_config: dict[str, Any] = Field(default_factory=dict)
    runtimes: dict[str, Runtime] = Field(default_factory=dict)
    """Other runtimes, by flavour (``onnx``): the ones the version has, and why it lacks the others.
    Cards without it (older ones) are served by their artefact's flavour alone."""

    def runtime(self, choice: str = "auto") -> Artefact:
        """The artefact that serves ``choice``: a flavour name, or ``auto`` (the fastest exact one).

        A RefusedError says why when the version does not have the runtime asked for.
        """
        if choice in ("auto", self.artefact.flavour):
            for name in AUTO_RUNTIMES if choice == "auto" else ():
                other = self.runtimes.get(name)
                if other is not None and other.available and name != self.artefact.flavour:
                    return Artefact(flavour=other.flavour, format=other.format or name, file=other.file)
            return self.artefact
        other = self.runtimes.get(choice)
        if other is None or not other.available:
            why = other.reason if other is not None and other.reason else "it was not converted at registration"
            raise RefusedError(
                f"this version has no {choice} runtime ({why}); serve it with runtime 'auto' or "
                f"'{self.artefact.flavour}'"
            )
        return Artefact(flavour=other.flavour, format=other.format or choice, file=other.file)


class ModelCard(_Part):
    """A model version's card (``models/<name>/<version>/card.json``)."""

    schema_version: int = SCHEMA_VERSION
    modelname: str
    version: int | None = None
    modelkind: Literal["classification", "regression"]
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    traincode: dict[str, Any] = Field(default_factory=dict)
    trainingdata: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    modelperform: dict[str, Any] = Field(default_factory=lambda: {"metrics": {}})
    trainingresource: dict[str, Any] = Field(default_factory=dict)
    runresource: dict[str, Any] = Field(default_factory=dict)
    featurelist: list[Feature] = Field(default_factory=list)
    inference: Inference = Field(default_factory=Inference)
    lineage: dict[str, Any] = Field(default_factory=dict)
    trusted_types: list[str] = Field(default_factory=list)
    """Types the artefact needs beyond its flavour's own list; believed only when the card is signed."""
    sha256: dict[str, str] = Field(default_factory=dict)
    signature: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.modelperform.get("metrics") or {})

    @classmethod
    def parse(cls, data: dict[str, Any], what: str) -> ModelCard:
        """A stored card, upgraded from older schema versions; a RegistryError naming ``what`` if unreadable."""
        version = data.get("schema_version", 1) if isinstance(data, dict) else None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RegistryError(
                f"{what} has a card of schema version {version!r}, which this mlrm (schema {SCHEMA_VERSION}) "
                "cannot read; upgrade mlrm"
            )
        if version == 1:
            data = _upgrade_v1(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            raise RegistryError(f"{what} has an invalid card: {problems}") from None


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 cards: no recorded pipeline (predict recovers it from ``lineage.steps``), no typed inputs."""
    out = {**data, "schema_version": 1}
    inference = dict(out.get("inference") or {})
    inference["artefact"] = {"flavour": "sklearn", **(inference.get("artefact") or {})}
    out["inference"] = inference
    return out
