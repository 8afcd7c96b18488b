"""Conformance checks every extension must pass (like scikit-learn's ``check_estimator``).

The suite is generated from the registries: :func:`conformance_cases` lists every
registered transform step, source, sink and model flavour (built-ins and plug-ins
alike), each checked on :func:`sample_frame` with the options its class declares as
``example``. Use the checks for your own extensions too::

    from mlrm.testing import check_transform_step
    check_transform_step(MyStep(step="mypkg.steps:MyStep", factor=2), sample_df)
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from mlrm.extensions import load_plugins
from mlrm.flavours import Flavour, flavour, flavours
from mlrm.steps import SinkStep, SourceStep, Step, TransformStep, registry


def sample_frame() -> pd.DataFrame:
    """Rows every ``example`` is written for: numbers with a gap, integers, text with a gap, times, flags."""
    return pd.DataFrame(
        {
            "x": [1.0, 2.5, np.nan, 4.0, 5.5, 3.0],
            "n": [1, 2, 3, 4, 5, 6],
            "color": ["red", "blue", None, "red", "green", "blue"],
            "when": pd.to_datetime(
                [
                    "2024-01-01 00:00",
                    "2024-01-01 06:00",
                    "2024-01-02 12:00",
                    "2024-03-05 18:00",
                    "2024-07-14 09:30",
                    "2024-12-31 23:00",
                ]
            ),
            "flag": [True, False, True, True, False, False],
        }
    )


def check_transform_step(step: TransformStep, df: pd.DataFrame) -> pd.DataFrame:
    """Run ``step`` through the contract the services rely on; return its output on ``df``.

    - the config round-trips through JSON (it travels in the routing slip);
    - fitted state is JSON-serialisable (it is stored with the model version);
    - transform never mutates its input and returns a DataFrame;
    - transform is deterministic for a given state (no training/serving skew);
    - stateless, row-local steps give the same rows batch by batch as all at once;
    - a step that keeps rows gives one output row per input row.
    """
    check_config(step)
    before = df.copy(deep=True)
    state = step.fit(df) if step.stateful else None
    if state is not None:
        state = json.loads(json.dumps(state))  # must be plain JSON, and is used as stored
    out = step.transform(df, state)
    assert isinstance(out, pd.DataFrame), f"{step.step}.transform must return a DataFrame"
    pd.testing.assert_frame_equal(df, before, obj="input (transform must not mutate it)")
    pd.testing.assert_frame_equal(step.transform(df, state), out, obj="second transform (must be deterministic)")
    if step.keeps_rows():
        assert len(out) == len(df), f"{step.step} says it keeps rows, but {len(df)} rows became {len(out)}"

    if not step.needs_whole_stream(fitting=False) and len(df) >= 2:
        half = len(df) // 2
        parts = [step.transform(df.iloc[:half], state), step.transform(df.iloc[half:], state)]
        joined = pd.concat(parts)
        pd.testing.assert_frame_equal(
            joined.reset_index(drop=True),
            out.reset_index(drop=True),
            check_dtype=False,
            obj="batch-by-batch output (a row-local step must not depend on batch boundaries)",
        )
    return out


def check_config(step: Step) -> None:
    """The step's config survives the JSON round trip of the routing slip (and of a model card)."""
    again = type(step).model_validate(json.loads(step.model_dump_json(exclude_unset=True)))
    assert again == step, "the step's config must survive a JSON round trip"


def check_sink_and_source(sink: SinkStep, source: SourceStep | None, df: pd.DataFrame) -> pd.DataFrame | None:
    """A sink writes ``df`` in two batches to a volume; the source of the same name reads the same rows back."""
    from mlrm.context import StepContext
    from mlrm.volume.local import LocalVolume

    check_config(sink)
    with tempfile.TemporaryDirectory(prefix="mlrm-conformance-") as tmp:
        ctx = StepContext(LocalVolume(Path(tmp) / "volume"), run_id="conformance", step="sink")
        half = len(df) // 2
        where = sink.write(ctx, iter([df.iloc[:half], df.iloc[half:]]))
        assert isinstance(where, str) and where, f"{sink.step}.write must say where the output went"
        if source is None:
            return None
        check_config(source)
        back = pd.concat(list(source.read(ctx, batch_size=4)), ignore_index=True)
    assert list(back.columns) == list(df.columns), f"{source.step} read columns {list(back.columns)}"
    assert len(back) == len(df), f"{source.step} read {len(back)} rows, {sink.step} wrote {len(df)}"
    return back


def check_source(source: SourceStep, batch_size: int = 2) -> pd.DataFrame:
    """A source yields frames of at most ``batch_size`` rows (its example must need no outside system)."""
    from mlrm.context import StepContext
    from mlrm.volume.local import LocalVolume

    check_config(source)
    with tempfile.TemporaryDirectory(prefix="mlrm-conformance-") as tmp:
        ctx = StepContext(LocalVolume(Path(tmp) / "volume"), run_id="conformance", step="collect")
        frames = list(source.read(ctx, batch_size))
    assert frames and all(isinstance(f, pd.DataFrame) for f in frames), f"{source.step} must yield DataFrames"
    assert all(len(f) <= batch_size for f in frames), f"{source.step} yielded a frame over batch_size"
    return pd.concat(frames, ignore_index=True)


def check_flavour(chosen: Flavour) -> None:
    """Build, fit, save, load (no code runs: only the types ``save`` reported are trusted), predict the same.

    A serving-only flavour (``trains = False``) gives a fitted model instead, then the same round trip.
    """
    frame = sample_frame()
    X = pd.DataFrame({"x": frame["x"].fillna(0.0), "n": frame["n"].astype(float)})
    y = pd.Series(["a", "b", "a", "b", "a", "b"])
    classes = None
    if chosen.trains:
        assert chosen.example is not None, f"flavour {chosen.name!r} declares no example estimator"
        estimator, hyperparameters = chosen.example
        chosen.check(estimator, hyperparameters)
        model = chosen.fit(chosen.build(estimator, hyperparameters), X, y)
        before = chosen.predict(model, X, proba=True)
        classes = chosen.classes(model)
    else:
        model, classes = chosen.conformance_model(X, y)
        before = None
    with tempfile.TemporaryFile(prefix="mlrm-conformance-") as file:
        trusted = chosen.save(model, file)
        assert all(isinstance(t, str) for t in trusted), "save returns the type names loading must trust"
        file.seek(0)
        loaded = _load(chosen, file, trusted, classes)
    after = chosen.predict(loaded, X, proba=True)
    assert len(after.values) == len(X), "one prediction per row"
    assert chosen.classes(loaded) == ["a", "b"]
    if before is not None:
        assert list(after.values) == list(before.values), "a saved and loaded model must predict the same"
        if before.proba is not None:
            np.testing.assert_allclose(after.proba, before.proba, err_msg="probabilities changed through save/load")
    described = chosen.describe(model)
    json.dumps(described, default=str)
    assert {"framework", "hyperparameters"} <= set(described)


def _load(chosen: Flavour, file: IO[bytes], trusted: list[str], classes: list[Any] | None) -> Any:
    return chosen.load(file, trusted=trusted, what=f"the {chosen.name} conformance model", classes=classes)


@dataclass(frozen=True)
class Case:
    """One conformance check of one registered extension."""

    kind: str  # "handler", "features", "source", "sink", "flavour"
    name: str
    check: Callable[[], Any]

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


def conformance_cases() -> list[Case]:
    """One case per registered transform step, source, sink and flavour (plug-ins included)."""
    load_plugins()
    cases: list[Case] = []
    for kind in ("handler", "features"):
        for name in registry.names(kind):
            cases.append(Case(kind, name, _transform_check(registry.get(kind, name))))
    for name in registry.names("sink"):
        cases.append(Case("sink", name, _sink_check(name)))
    for name in registry.names("source"):
        if name not in registry.names("sink"):  # sources with a namesake sink are checked with it
            cases.append(Case("source", name, _source_check(registry.get("source", name))))
    for name in flavours.names():
        if flavour(name).trains and flavour(name).example is None:  # a regression-only flavour (keras): own tests
            continue
        cases.append(Case("flavour", name, lambda name=name: check_flavour(flavour(name))))
    return cases


def _instance(cls: type[Step]) -> Step:
    assert cls.example is not None, (
        f"{cls.kind} step {cls.__qualname__} declares no `example`: give it options that run on "
        "mlrm.testing.sample_frame(), so the conformance suite can check it"
    )
    return cls.model_validate({"step": _name(cls), **cls.example})


def _name(cls: type[Step]) -> str:
    from mlrm.steps import step_name

    return step_name(cls)


def _transform_check(cls: type[Step]) -> Callable[[], Any]:
    def check() -> Any:
        step = _instance(cls)
        assert isinstance(step, TransformStep)
        if cls.reaches_out:
            return check_config(step)
        return check_transform_step(step, sample_frame())

    return check


def _sink_check(name: str) -> Callable[[], Any]:
    def check() -> Any:
        sink = _instance(registry.get("sink", name))
        source = None
        if name in registry.names("source"):
            source = _instance(registry.get("source", name))
        assert isinstance(sink, SinkStep)
        return check_sink_and_source(sink, source if isinstance(source, SourceStep) else None, sample_frame())

    return check


def _source_check(cls: type[Step]) -> Callable[[], Any]:
    def check() -> Any:
        source = _instance(cls)
        assert isinstance(source, SourceStep)
        if cls.reaches_out:
            return check_config(source)
        return check_source(source)

    return check
