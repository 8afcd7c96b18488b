"""Conformance checks every transform step type must pass (like scikit-learn's ``check_estimator``).

Use them for your own steps too::

    from mlrm.testing import check_transform_step
    check_transform_step(MyStep(step="mypkg.steps:MyStep", factor=2), sample_df)
"""

from __future__ import annotations

import json

import pandas as pd

from mlrm.steps import TransformStep


def check_transform_step(step: TransformStep, df: pd.DataFrame) -> pd.DataFrame:
    """Run ``step`` through the contract the services rely on; return its output on ``df``.

    - the config round-trips through JSON (it travels in the routing slip);
    - fitted state is JSON-serialisable (it is stored with the model version);
    - transform never mutates its input and returns a DataFrame;
    - transform is deterministic for a given state (no training/serving skew);
    - stateless, row-local steps give the same rows batch by batch as all at once.
    """
    again = type(step).model_validate(json.loads(step.model_dump_json(exclude_unset=True)))
    assert again == step, "the step's config must survive a JSON round trip"

    before = df.copy(deep=True)
    state = step.fit(df) if step.stateful else None
    if state is not None:
        state = json.loads(json.dumps(state))  # must be plain JSON, and is used as stored
    out = step.transform(df, state)
    assert isinstance(out, pd.DataFrame), f"{step.step}.transform must return a DataFrame"
    pd.testing.assert_frame_equal(df, before, obj="input (transform must not mutate it)")
    pd.testing.assert_frame_equal(step.transform(df, state), out, obj="second transform (must be deterministic)")

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
