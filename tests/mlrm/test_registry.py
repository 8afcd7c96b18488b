"""The model registry: versions, aliases, verified loading."""

from __future__ import annotations

import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlrm.context import ModelRef
from mlrm.errors import ConfigError, CorruptRecordError, NotFoundError, RegistryError
from mlrm.registry import ARTEFACT, ModelRegistry


@pytest.fixture
def volume(any_volume):
    return any_volume


@pytest.fixture
def registry(volume):
    return ModelRegistry(volume)


def publish(registry, name="m", obj=None):
    model = obj if obj is not None else LogisticRegression().fit([[0], [1]], [0, 1])
    ref = ModelRef(name, registry.reserve_version(name))
    registry.publish(ref, {ARTEFACT: sio.dumps(model)}, {"modelkind": "classification"})
    return ref


def test_versions_increase_and_aliases_move(registry):
    assert publish(registry).version == 1
    assert publish(registry).version == 2
    assert registry.versions("m") == [1, 2]
    registry.set_alias("m", "production", 1)
    assert registry.resolve("m", alias="production") == ModelRef("m", 1)
    registry.set_alias("m", "production", 2)
    assert registry.resolve("m", alias="production") == ModelRef("m", 2)
    assert registry.resolve("m") == ModelRef("m", 2)
    assert registry.names() == ["m"]


def test_a_version_is_invisible_until_its_card_is_written(registry, volume):
    version = registry.reserve_version("m")
    volume.put_bytes(f"models/m/{version}/{ARTEFACT}", b"half")
    assert registry.versions("m") == []
    with pytest.raises(NotFoundError):
        registry.resolve("m")
    assert registry.reserve_version("m") == version + 1  # numbers are never handed out twice


def test_failed_publish_leaves_nothing(registry, volume):
    class Boom(dict):
        def items(self):
            yield ARTEFACT, b"data"
            raise OSError("disk full")

    ref = ModelRef("m", registry.reserve_version("m"))
    with pytest.raises(OSError):
        registry.publish(ref, Boom(), {})
    assert list(volume.list("models/")) == []


def test_load_verifies_the_hash(registry, volume):
    ref = publish(registry)
    assert registry.load_artefact(ref).predict([[1]]).tolist() == [1]
    other = sio.dumps(LogisticRegression().fit([[0], [1]], [1, 0]))
    volume.put_bytes(f"{ref.prefix}{ARTEFACT}", other)
    with pytest.raises(RegistryError, match="does not match the sha256"):
        registry.load_artefact(ref)


class Custom:
    """A type skops does not trust by default."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return [0] * len(X)


def test_untrusted_types_are_refused_unless_listed(registry):
    ref = publish(registry, obj=Custom())
    with pytest.raises(RegistryError, match=r"not trusted: .*Custom"):
        registry.load_artefact(ref)
    name = f"{Custom.__module__}.Custom"
    assert registry.load_artefact(ref, trusted=[name]).predict([[1]]) == [0]


def test_unknown_alias_and_bad_names(registry):
    publish(registry)
    with pytest.raises(NotFoundError, match="no version with alias 'staging'"):
        registry.resolve("m", alias="staging")
    with pytest.raises(NotFoundError, match="no version 9"):
        registry.resolve("m", version=9)
    with pytest.raises(ConfigError, match="not valid"):
        registry.resolve("../etc")
    with pytest.raises(ConfigError, match="alias"):
        registry.set_alias("m", "Bad Alias", 1)


def test_an_alias_pointing_at_a_missing_version_says_so(registry, volume):
    """Not "has no statistics" later on: the alias is the problem, and resolving it says which version is gone."""
    from mlrm.context import StepContext

    ref = publish(registry)
    registry.set_alias("m", "production", ref.version)
    volume.delete_prefix(ref.prefix)  # the version went away behind the alias's back
    gone = "alias 'production' of model 'm' points at version 1, which does not exist"
    with pytest.raises(NotFoundError, match=gone):
        registry.resolve("m", alias="production")
    ctx = StepContext(volume, run_id="r", step="clean", mode="predict", model=ref)  # pinned before it went
    with pytest.raises(NotFoundError, match="model 'm' has no version 1"):
        ctx.load_state("clean.impute")


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"version": "two"}', b'{"version": 0}'], ids=repr)
def test_an_unreadable_alias_is_reported_and_the_others_still_work(registry, volume, content):
    publish(registry)
    registry.set_alias("m", "production", 1)
    volume.put_bytes("models/m/aliases/staging.json", content)
    assert registry.resolve("m", alias="production") == ModelRef("m", 1)  # reads only its own record
    with pytest.raises(CorruptRecordError, match=r"models/m/aliases/staging\.json"):
        registry.resolve("m", alias="staging")
    with pytest.raises(CorruptRecordError, match=r"models/m/aliases/staging\.json"):
        registry.aliases("m")  # strict by default: delete_version must not guess what it pointed at
    skipped: list = []
    assert registry.aliases("m", skipped.append) == {"production": 1}
    assert [e.key for e in skipped] == ["models/m/aliases/staging.json"]
    with pytest.raises(CorruptRecordError, match="staging"):
        registry.delete_version(ModelRef("m", 1))
    registry.remove_alias("m", "staging")  # how it is repaired
    assert registry.aliases("m") == {"production": 1}


def test_an_unreadable_card_is_reported_and_the_others_listed(registry, volume):
    publish(registry)
    publish(registry)
    volume.put_bytes("models/m/1/card.json", b"\x00")
    skipped: list = []
    assert [c["version"] for c in registry.cards(skipped.append)] == [2]
    assert [e.key for e in skipped] == ["models/m/1/card.json"]
    with pytest.raises(CorruptRecordError, match=r"models/m/1/card\.json"):
        registry.card(ModelRef("m", 1))
