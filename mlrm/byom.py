"""Bring your own model: register an artefact trained outside mlrm, with a YAML description.

``mlrm models register NAME --artefact FILE --card DESCRIPTION.yaml`` (and :func:`register_model`,
for the control plane) takes an artefact in a safe format — skops (``.skops``) or ONNX (``.onnx``) —
and a description holding the MLaaS fields (:class:`ModelDescription`: ``modelkind``,
``featurelist`` with each column's pandas ``type``, ``inference.classes`` for classifiers, and
whatever else is known: ``description``, ``traincode``, ``trainingdata``, ``modelperform``...). It

- refuses pickle and joblib files (by extension, and by content: pickle opcodes, compressed
  streams as joblib writes them, zip archives holding a pickle), whose loading runs code;
- refuses a skops artefact holding types that are not trusted, naming them (the description's
  ``trusted_types`` lists those its owner vouches for);
- validates the description (each error with file, line and field, like ``mlrm validate``) and
  fills what can be derived: the flavour and file from the format, the V2 datatypes of the
  inputs, the outputs, a skops classifier's classes, the types a skops artefact needs;
- checks the artefact against it (loads it as predict will; its number of inputs, its classes);
- publishes a new version: the sha256 of the artefact in the card, the card signed when a key is
  configured, so the version is served like a trained one (its inference pipeline is empty: the
  model takes the raw columns of ``featurelist``).
"""

from __future__ import annotations

import io
import pickletools
import time
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator

from mlrm.card import Artefact, Feature, Inference, ModelCard, Output, datatype
from mlrm.config import Section, validation_errors
from mlrm.errors import ConfigError, Location, NotFoundError, RegistryError
from mlrm.flavours import flavour
from mlrm.registry import ModelRef, ModelRegistry, check_alias, check_name
from mlrm.trust import refused_types
from mlrm.yamlio import Document, load_yaml, loads_yaml

SAFE_FORMATS = "skops (.skops, written by skops.io.dump) or ONNX (.onnx, e.g. converted with skl2onnx)"
FLAVOURS = {"skops": "sklearn", "onnx": "onnx"}  # format -> the flavour that serves it
UNSAFE_SUFFIXES = {
    ".pkl": "pickle", ".pickle": "pickle", ".p": "pickle", ".dill": "pickle (dill)", ".cloudpickle": "pickle",
    ".sav": "pickle", ".joblib": "joblib", ".jbl": "joblib", ".pt": "PyTorch (a pickle)", ".pth": "PyTorch (a pickle)",
}  # fmt: skip
_COMPRESSED = {
    b"\x1f\x8b": "gzip", b"x\x01": "zlib", b"x\x5e": "zlib", b"x\x9c": "zlib", b"x\xda": "zlib", b"ZF": "zlib",
    b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x04\x22\x4d\x18": "lz4",
}  # fmt: skip
_PICKLE_STARTS = set(b"(}])NIFLSVXKJMc\x80\x88\x89")


class FeatureSpec(Section):
    """One input column of the model, in the order the model takes them."""

    name: str = Field(min_length=1)
    """The column's name."""
    type: str = "float64"
    """Its pandas dtype: `float64`, `int64`, `bool`, `object` (text), `category`, `datetime64[ns]`..."""
    datatype: str | None = None
    """Its V2 datatype (default: derived from `type`: FP64, INT64, BOOL or BYTES)."""

    @field_validator("type")
    @classmethod
    def _dtype(cls, v: str) -> str:
        try:
            pd.api.types.pandas_dtype(v)
        except TypeError:
            raise ValueError(f"{v!r} is not a pandas dtype (e.g. float64, int64, bool, object)") from None
        return v


class InferenceSpec(Section):
    """How to call the model."""

    classes: list[Any] | None = None
    """A classifier's classes, in the order of its probability columns (a skops classifier's are read from it)."""
    output: dict[str, Any] = Field(default_factory=dict)
    """A free description of the outputs."""


class ModelDescription(Section):
    """The description of a model brought from outside (`mlrm models register`): the MLaaS fields."""

    modelname: str | None = None
    """The registry name (default and must-match: the NAME given to `mlrm models register`)."""
    modelkind: Literal["classification", "regression"]
    """What the model predicts: a class (`classification`) or a number (`regression`)."""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    traincode: dict[str, Any] = Field(default_factory=dict)
    """Where and how it was trained (repository, commit, framework...)."""
    trainingdata: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    modelperform: dict[str, Any] = Field(default_factory=lambda: {"metrics": {}})
    """`metrics: {name: value}` and how they were measured."""
    trainingresource: dict[str, Any] = Field(default_factory=dict)
    runresource: dict[str, Any] = Field(default_factory=dict)
    featurelist: list[FeatureSpec] = Field(min_length=1)
    """The model's input columns, in order: what a request carries."""
    inference: InferenceSpec = Field(default_factory=InferenceSpec)
    trusted_types: list[str] = Field(default_factory=list)
    """Exact type names a skops artefact may hold beyond those mlrm trusts; you vouch for them."""

    @field_validator("modelperform")
    @classmethod
    def _metrics(cls, v: dict[str, Any]) -> dict[str, Any]:
        metrics = v.setdefault("metrics", {})
        if not isinstance(metrics, dict) or not all(
            isinstance(m, int | float) and not isinstance(m, bool) for m in metrics.values()
        ):
            raise ValueError("metrics must map metric names to numbers")
        return v


# -- the artefact's format ---------------------------------------------------------------------
def artefact_format(path: Path) -> str:
    """``skops`` or ``onnx``; a RegistryError naming the safe formats for pickle, joblib and the unknown."""
    name = path.name
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        raise NotFoundError(f"artefact file not found: {path}") from None
    except OSError as exc:
        raise RegistryError(f"cannot read artefact {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    unsafe = UNSAFE_SUFFIXES.get(suffix)
    if unsafe is None and _is_pickle(head):
        unsafe = "pickle"
    if unsafe is None:
        unsafe = next((f"{kind}-compressed (as joblib writes)" for magic, kind in _COMPRESSED.items()
                       if head.startswith(magic)), None)  # fmt: skip
    names: list[str] = []
    if unsafe is None and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        pickled = [n for n in names if n.lower().endswith((".pkl", ".pickle", ".joblib"))]
        if pickled:
            unsafe = f"zip archive holding a pickle ({pickled[0]})"
    if unsafe is not None:
        raise RegistryError(
            f"artefact {name} is a {unsafe} file: loading it can run any code, so mlrm does not register it; "
            f"save the model in a safe format: {SAFE_FORMATS}"
        )
    if "schema.json" in names:
        return "skops"
    if suffix == ".skops":
        raise RegistryError(f"artefact {name} is not a skops file (no schema.json in it); safe formats: {SAFE_FORMATS}")
    if suffix == ".onnx" or _is_onnx(path):
        return "onnx"
    raise RegistryError(f"artefact {name} is in no format mlrm registers; safe formats: {SAFE_FORMATS}")


def _is_pickle(head: bytes) -> bool:
    """Whether the bytes start like a pickle: its first opcodes parse (read, never run)."""
    if not head or head[0] not in _PICKLE_STARTS:
        return False
    if head[0] == 0x80:  # PROTO n
        return len(head) > 1 and 2 <= head[1] <= 5
    try:
        for count, _ in enumerate(pickletools.genops(io.BytesIO(head)), start=1):
            if count >= 3:
                return True
    except Exception:  # not opcodes (or cut short before three of them)
        return False
    return True


def _is_onnx(path: Path) -> bool:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return len(model.graph.node) > 0


# -- the description -----------------------------------------------------------------------------
def load_description(
    source: str | Path | dict[str, Any], file: str = "<description>"
) -> tuple[ModelDescription, Document]:
    """A validated description, from a YAML file, YAML text or a mapping; ConfigErrors with file:line:field."""
    if isinstance(source, dict):
        doc = Document(source, file, {})
    elif isinstance(source, Path):
        doc = load_yaml(source)
    else:
        doc = loads_yaml(source, file)
    if not isinstance(doc.data, dict):
        raise ConfigError("a model description is a mapping of the MLaaS fields (modelkind, featurelist...)",
                          Location(doc.file))  # fmt: skip
    try:
        return ModelDescription.model_validate(doc.data), doc
    except ValidationError as exc:
        raise validation_errors(exc, doc) from None


# -- registration --------------------------------------------------------------------------------
def register_model(
    registry: ModelRegistry,
    name: str,
    artefact: str | Path,
    description: str | Path | dict[str, Any],
    *,
    alias: str | None = None,
) -> dict[str, Any]:
    """Check, describe and publish a model trained elsewhere as a new version of ``name``; its card.

    ``description`` is a YAML file (a Path), YAML text (a str, as a control-plane request carries it)
    or a mapping."""
    check_name(name)
    if alias is not None:
        check_alias(alias)
    path = Path(artefact)
    fmt = artefact_format(path)
    desc, doc = load_description(description)
    if desc.modelname is not None and desc.modelname != name:
        raise ConfigError(f"modelname '{desc.modelname}' differs from the name it is registered as, '{name}'",
                          doc.locate(("modelname",)))  # fmt: skip
    serving = flavour(FLAVOURS[fmt])
    what = f"artefact {path.name}"
    trusted: list[str] = []
    if fmt == "skops":
        import skops.io as sio

        try:
            untrusted = sorted(sio.get_untrusted_types(file=path))
        except Exception as exc:
            raise RegistryError(f"{what} is not a readable skops file ({exc})") from None
        refused = refused_types(untrusted, desc.trusted_types)
        if refused:
            raise RegistryError(
                f"{what} contains types that are not trusted: {', '.join(refused)}; list them under trusted_types "
                "in the description if you vouch for them"
            )
        trusted = untrusted
    with open(path, "rb") as file:
        model = serving.load(file, trusted=desc.trusted_types, what=what, classes=desc.inference.classes)
    card = _card(name, desc, doc, serving, model, trusted)
    card.lineage = {"registered": {"by": "mlrm models register", "artefact": path.name, "format": fmt}}
    ref = ModelRef(name, registry.reserve_version(name))
    published = registry.publish(ref, {serving.file: path}, card)
    if alias is not None:
        registry.set_alias(name, alias, ref.version)
    return published


def _card(name: str, desc: ModelDescription, doc: Document, serving: Any, model: Any, trusted: list[str]) -> ModelCard:
    inputs = [_feature(f) for f in desc.featurelist]
    columns = [f.name for f in inputs]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ConfigError(f"featurelist names {', '.join(twice)} more than once", doc.locate(("featurelist",)))
    _check_inputs(model, columns, doc, serving.name)
    classes = desc.inference.classes
    has_proba = False
    if desc.modelkind == "classification":
        found = serving.classes(model) if serving.name == "sklearn" else None
        if found is not None:
            found = [v.item() if isinstance(v, np.generic) else v for v in found]
            if classes is not None and [str(c) for c in classes] != [str(c) for c in found]:
                raise ConfigError(f"classes {classes} differ from the model's own, {found}",
                                  doc.locate(("inference", "classes"), field="inference.classes"))  # fmt: skip
            classes = found
        if not classes:
            raise ConfigError("a classifier needs its classes, in the order of its probability columns",
                              doc.locate(("inference", "classes"), field="inference.classes"))  # fmt: skip
        has_proba = hasattr(model, "predict_proba") if serving.name == "sklearn" else model.proba is not None
    elif classes is not None:
        raise ConfigError(
            "a regression model has no classes", doc.locate(("inference", "classes"), field="inference.classes")
        )
    label = datatype(np.asarray(classes).dtype) if classes else "FP64"
    outputs = [Output(name="prediction", datatype=label, shape=[-1],
                      description="the predicted class" if classes else "the predicted value")]  # fmt: skip
    if has_proba and classes:
        order = ", ".join(map(str, classes))
        outputs.append(Output(name="probabilities", datatype="FP64", shape=[-1, len(classes)],
                              description=f"class probabilities, in the order of `classes`: {order}"))  # fmt: skip
    output = desc.inference.output or {"prediction": "class label" if classes else "number"}
    traincode = {"flavour": serving.name, "framework": serving.describe(model)["framework"], **desc.traincode}
    data = desc.model_dump(exclude={"inference", "featurelist", "trusted_types", "modelname"})
    return ModelCard(
        **{**data, "traincode": traincode},
        modelname=name,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        featurelist=inputs,
        inference=Inference(
            input=columns,
            output=output,
            classes=classes if classes else None,
            artefact=Artefact(flavour=serving.name, format=serving.format, file=serving.file),
            pipeline=[],
            inputs=inputs,
            outputs=outputs,
            predict_config={"kind": "PredictConfig", "model": {"name": name}},
        ),
        trusted_types=trusted,
    )


def _feature(spec: FeatureSpec) -> Feature:
    kind = spec.datatype or datatype(pd.api.types.pandas_dtype(spec.type))
    return Feature(name=spec.name, type=spec.type, datatype=kind)


def _check_inputs(model: Any, columns: list[str], doc: Document, flavour_name: str) -> None:
    """The featurelist against what the artefact says it takes (its column names or count)."""
    where = doc.locate(("featurelist",))
    if flavour_name == "sklearn":
        names = getattr(model, "feature_names_in_", None)
        if names is not None and [str(n) for n in names] != columns:
            raise ConfigError(f"featurelist {columns} differs from the columns the model was fitted on, "
                              f"{[str(n) for n in names]}", where)  # fmt: skip
        count = getattr(model, "n_features_in_", None)
    else:
        shape = model.session.get_inputs()[0].shape
        count = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    if count is not None and count != len(columns):
        raise ConfigError(f"featurelist has {len(columns)} column(s); the model takes {count}", where)
