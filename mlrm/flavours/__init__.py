"""Model flavours: what a kind of model needs to be trained, stored, loaded and called.

A flavour is one small class (:class:`~mlrm.flavours.base.Flavour`) registered in
:data:`flavours` under the name a train config writes in ``model.flavour`` and a card
records in ``inference.artefact.flavour``; loading a version picks the flavour its card
names. ``sklearn`` (skops artefacts, exact trusted types) is the first; ``onnx`` (ONNX Runtime)
serves the exact conversions the train service makes at registration (a card's ``inference.runtimes``);
``keras`` (TensorFlow, an optional extra) trains networks declared in YAML and serves ``.keras`` files.
"""

from __future__ import annotations

from mlrm.extensions import Registry
from mlrm.flavours.base import Flavour, Prediction

__all__ = ["Flavour", "Prediction", "flavour", "flavours"]

flavours: Registry[type[Flavour]] = Registry("model flavour")
flavours.register("sklearn", "mlrm.flavours.sklearn:SklearnFlavour")
flavours.register("onnx", "mlrm.flavours.onnx:OnnxFlavour")
flavours.register("keras", "mlrm.flavours.keras:KerasFlavour")  # needs the tensorflow extra

_instances: dict[str, Flavour] = {}


def flavour(name: str) -> Flavour:
    """The flavour registered as ``name`` (one instance per process)."""
    if name not in _instances:
        _instances[name] = flavours.get(name)()
    return _instances[name]
