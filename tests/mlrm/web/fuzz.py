"""Schemathesis against a running REST server's own OpenAPI document, a bounded number of examples per operation.

Every answer must be no 5xx, a status the document lists, a content type it lists, and a body that fits the
schema it gives. Table bodies (CSV, Arrow, Parquet) are made from generated frames (iris-like columns or
random ones) or are random bytes, so both the happy path and the refusals are exercised.
"""

from __future__ import annotations

import string

import pandas as pd
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlrm.web import tables

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]  # fmt: skip
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]

cell = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40),
                 st.text(alphabet=string.printable, max_size=8), st.booleans())  # fmt: skip
names = st.one_of(st.sampled_from(IRIS), st.text(alphabet=string.ascii_letters + "_ ,\"'", min_size=1, max_size=8))


@st.composite
def frames(draw) -> pd.DataFrame:
    columns = draw(st.one_of(st.just(IRIS), st.lists(names, min_size=1, max_size=5, unique=True)))
    rows = draw(st.integers(0, 6))
    kind = draw(st.sampled_from(["float", "mixed"]))
    values = st.one_of(st.none(), st.floats(-10, 10)) if kind == "float" else cell
    data = {c: draw(st.lists(values, min_size=rows, max_size=rows)) for c in columns}
    if "species" in data and kind == "float":
        data["species"] = draw(st.lists(st.sampled_from(["setosa", "virginica", None]), min_size=rows, max_size=rows))
    return pd.DataFrame(data)


def encoded(media: str) -> st.SearchStrategy[bytes]:
    def encode(df: pd.DataFrame) -> bytes:
        try:
            return tables.encode(df, media)
        except Exception:  # a frame Arrow cannot hold (mixed types in a column): send it as text instead
            return df.to_csv(index=False).encode()

    return st.one_of(frames().map(encode), st.binary(max_size=64))


for _media in (tables.CSV, tables.ARROW, tables.PARQUET):
    schemathesis.openapi.media_type(_media, encoded(_media))


def fuzz(base_url: str, *, max_examples: int = 25, headers: dict[str, str] | None = None) -> int:
    """Run every operation of ``base_url``'s ``/openapi.json``; returns how many operations were run."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    run = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

        check()
        run += 1
    assert run, f"{base_url}/openapi.json lists no operation"
    return run
