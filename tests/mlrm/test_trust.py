"""A tampered artefact never runs code: exact trusted types, and signed cards.

The attacker here can write anything to the volume: the artefact, and the card beside
it (so the sha256 in the card matches whatever they wrote).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.feature_selection import SelectKBest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures

from mlrm.context import ModelRef
from mlrm.errors import ConfigError, RegistryError
from mlrm.registry import ARTEFACT, ModelRegistry
from mlrm.signing import Signer, signer_from_env
from mlrm.trust import refused_types

KEY = b"k" * 40


def reduce_payload(module: str, name: str, *args: str) -> bytes:
    """A skops file whose root node calls ``module.name(*args)`` when it is loaded."""
    content = {
        "__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
        "content": [
            {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(a),
             "is_json": True}
            for a in args
        ],
    }  # fmt: skip
    schema = {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
              "content": content, "protocol": 2, "_skops_version": "0.16.0"}  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    return buf.getvalue()


def write_python(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('owned')"


# Callables an attacker would reach for: builtins, the standard library, and code-running
# functions and classes inside the very packages whose types models legitimately contain.
PAYLOADS = {
    "builtins.exec": lambda m: ("builtins", "exec", write_python(m)),
    "builtins.eval": lambda m: ("builtins", "eval", write_python(m)),
    "os.system": lambda m: ("os", "system", f"touch {m}"),
    "subprocess.getoutput": lambda m: ("subprocess", "getoutput", f"touch {m}"),
    "runpy.run_path": lambda m: ("runpy", "run_path", str(m)),
    "sklearn testing helper": lambda m: (
        "sklearn.utils._testing", "assert_run_python_script_without_output", write_python(m)
    ),
    "numpy.memmap (a class that writes files)": lambda m: ("numpy", "memmap", str(m), "w+", "uint8", "0", "(4,)"),
    "numpy.save": lambda m: ("numpy", "save", str(m), "owned"),
}


@pytest.fixture
def volume(any_volume):
    return any_volume


def publish_legit(registry: ModelRegistry, name: str = "m") -> ModelRef:
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    ref = ModelRef(name, registry.reserve_version(name))
    registry.publish(ref, {ARTEFACT: sio.dumps(model)}, {"modelkind": "classification", "trusted_types": []})
    return ref


def tamper(volume, ref: ModelRef, artefact: bytes, *, trust: str | None = None) -> None:
    """Rewrite the artefact AND the card, so the card's sha256 matches (and, optionally, vouches for a type)."""
    volume.put_bytes(f"{ref.prefix}{ARTEFACT}", artefact)
    card = volume.get_json(f"{ref.prefix}card.json")
    card["sha256"][ARTEFACT] = hashlib.sha256(artefact).hexdigest()
    if trust:
        card["trusted_types"] = [trust]
    volume.put_json(f"{ref.prefix}card.json", card)


@pytest.mark.parametrize("payload", PAYLOADS, ids=list(PAYLOADS))
def test_a_rewritten_artefact_with_a_matching_hash_never_runs_code(volume, tmp_path, payload):
    marker = tmp_path / "owned"
    module, name, *args = PAYLOADS[payload](marker)
    registry = ModelRegistry(volume, signer=None)  # no key: the type list alone must hold
    ref = publish_legit(registry)
    tamper(volume, ref, reduce_payload(module, name, *args), trust=f"{module}.{name}")
    with pytest.raises(RegistryError, match=rf"not trusted: {module}\.{name}"):
        registry.load_artefact(ref)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["builtins.exec", "sklearn testing helper"])
def test_with_a_key_a_rewritten_card_fails_its_signature(volume, tmp_path, payload):
    marker = tmp_path / "owned"
    module, name, *args = PAYLOADS[payload](marker)
    registry = ModelRegistry(volume, signer=Signer(KEY))
    ref = publish_legit(registry)
    assert registry.load_artefact(ref).predict([[1.0]]).tolist() == [1]
    tamper(volume, ref, reduce_payload(module, name, *args), trust=f"{module}.{name}")
    with pytest.raises(RegistryError, match="invalid signature"):
        registry.load_artefact(ref)
    with pytest.raises(RegistryError, match="invalid signature"):
        registry.read_verified(ref, ARTEFACT)
    assert not marker.exists()


def test_with_a_key_unsigned_and_foreign_versions_are_refused(volume):
    unsigned = publish_legit(ModelRegistry(volume, signer=None), "a")
    foreign = publish_legit(ModelRegistry(volume, signer=Signer(b"z" * 40)), "b")
    registry = ModelRegistry(volume, signer=Signer(KEY))
    with pytest.raises(RegistryError, match="is not signed"):
        registry.load_artefact(unsigned)
    with pytest.raises(RegistryError, match=rf"signed with key {Signer(b'z' * 40).key_id}"):
        registry.load_artefact(foreign)
    # Without a key, signed versions still load: the signature is simply not checked.
    assert ModelRegistry(volume, signer=None).load_artefact(foreign).predict([[0.0]]).tolist() == [0]


class Custom:
    """A user's own model type: skops does not trust it."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return [7] * len(X)


def test_a_signed_card_vouches_for_the_types_its_trainer_recorded(volume):
    type_name = f"{Custom.__module__}.Custom"
    data = sio.dumps(Custom())
    assert sio.get_untrusted_types(data=data) == [type_name]
    for signer in (None, Signer(KEY)):
        registry = ModelRegistry(volume, signer=signer)
        ref = ModelRef("f", registry.reserve_version("f"))
        registry.publish(ref, {ARTEFACT: data}, {"modelkind": "classification", "trusted_types": [type_name]})
        if signer is None:  # an unsigned card is not believed
            with pytest.raises(RegistryError, match="Custom"):
                registry.load_artefact(ref)
            assert registry.load_artefact(ref, trusted=[type_name]).predict([[2.5]]) == [7]
        else:
            assert registry.load_artefact(ref).predict([[2.5]]) == [7]


def test_signer_from_the_environment(tmp_path):
    assert signer_from_env({}) is None
    assert signer_from_env({"MLRM_SIGNING_KEY": "s" * 32}) == Signer(b"s" * 32)
    (tmp_path / "key").write_text("f" * 40 + "\n")
    assert signer_from_env({"MLRM_SIGNING_KEY_FILE": str(tmp_path / "key")}) == Signer(b"f" * 40)
    with pytest.raises(ConfigError, match="at least 32"):
        signer_from_env({"MLRM_SIGNING_KEY": "short"})
    with pytest.raises(ConfigError, match="cannot read"):
        signer_from_env({"MLRM_SIGNING_KEY_FILE": str(tmp_path / "missing")})
    assert "s" * 32 not in repr(Signer(b"s" * 32))


X = np.random.default_rng(0).random((60, 4))
Y_CLASS = (X[:, 0] > 0.5).astype(int)
Y_REG = X @ [1.0, 2.0, 0.5, -1.0]
BUILT = {
    "random forest": (RandomForestClassifier(n_estimators=3, random_state=0), Y_CLASS),
    "hist gradient boosting": (HistGradientBoostingRegressor(max_iter=3), Y_REG),
    "k nearest neighbours": (KNeighborsClassifier(3), Y_CLASS),
    "gaussian process": (GaussianProcessRegressor(), Y_REG),
    "mlp": (MLPClassifier((4,), max_iter=5, random_state=0), Y_CLASS),
    "calibrated": (CalibratedClassifierCV(LogisticRegression(), cv=2), Y_CLASS),
    "select k best": (Pipeline([("k", SelectKBest(k=2)), ("lr", LogisticRegression())]), Y_CLASS),
    "polynomial ridge": (Pipeline([("p", PolynomialFeatures(2)), ("r", Ridge())]), Y_REG),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", BUILT, ids=list(BUILT))
def test_estimators_the_train_service_builds_need_no_extra_trust(name):
    model, y = BUILT[name]
    assert refused_types(sio.get_untrusted_types(data=sio.dumps(model.fit(X, y)))) == []
