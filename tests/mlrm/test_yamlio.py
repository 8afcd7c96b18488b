"""Tests for mlrm.yamlio: safe, bounded YAML loading with source positions."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import yaml

from mlrm import yamlio
from mlrm.errors import ConfigError, NotFoundError
from mlrm.yamlio import MAX_BYTES, Document, load_yaml, loads_yaml

PIPELINE = textwrap.dedent(
    """\
    name: demo
    steps:
      - kind: load
        path: data.csv
      - kind: fill_na
        strategy: mean
        columns: [a, b]
    """
)


def load(text: str, **env: str) -> Document:
    return loads_yaml(textwrap.dedent(text), "cfg.yaml", env=env)


def test_marks_for_nested_mapping_and_list_values() -> None:
    doc = loads_yaml(PIPELINE, "cfg.yaml")
    assert doc.data["steps"][1] == {"kind": "fill_na", "strategy": "mean", "columns": ["a", "b"]}
    assert doc.file == "cfg.yaml"
    assert doc.marks[()] == (1, 1)
    assert doc.marks[("name",)] == (1, 7)
    assert doc.marks[("name", "__key__")] == (1, 1)
    assert doc.marks[("steps", 0)] == (3, 5)
    assert doc.marks[("steps", 1, "strategy")] == (6, 15)
    assert doc.marks[("steps", 1, "strategy", "__key__")] == (6, 5)
    assert doc.marks[("steps", 1, "columns", 1)] == (7, 18)


def test_locate_skips_union_tags() -> None:
    doc = loads_yaml(PIPELINE, "cfg.yaml")
    loc = doc.locate(("steps", 1, "fill_na", "strategy"))
    assert (loc.file, loc.line, loc.column, loc.field) == ("cfg.yaml", 6, 15, "steps[1].strategy")
    loc = doc.locate(("steps", 1, "function-after[check(), FillNa]", "columns", 0))
    assert (loc.line, loc.field) == (7, "steps[1].columns[0]")
    assert doc.locate(("name",), field="custom").field == "custom"


def test_locate_missing_key_points_at_parent() -> None:
    doc = loads_yaml(PIPELINE, "cfg.yaml")
    loc = doc.locate(("steps", 0, "load", "format"))
    assert (loc.line, loc.column, loc.field) == (3, 5, "steps[0].format")
    loc = doc.locate(("version",))
    assert (loc.line, loc.column, loc.field) == (1, 1, "version")


def test_billion_laughs_rejected_quickly() -> None:
    lines = ['l0: &l0 "lol"']
    for i in range(1, 10):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"l{i}: &l{i} [{refs}]")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100000 nodes through aliases"):
        loads_yaml("\n".join(lines), "bomb.yaml")
    assert time.perf_counter() - start < 1.0


def test_recursive_alias_rejected() -> None:
    with pytest.raises(ConfigError, match="recursive alias"):
        load("a: &x [1, *x]\n")


def test_small_aliases_and_merge_key_load() -> None:
    doc = load(
        """\
        defaults: &d {retries: 3, tags: [x, y]}
        job:
          <<: *d
          retries: 5
        copy: *d
        """
    )
    assert doc.data["job"] == {"retries": 5, "tags": ["x", "y"]}
    assert doc.data["copy"] == {"retries": 3, "tags": ["x", "y"]}
    assert doc.marks[("job", "retries")] == (4, 12)
    assert doc.marks[("job", "tags")] == (1, 33)  # merged value points at its definition


def test_file_over_max_bytes_rejected(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("x: " + "a" * MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match=rf"big\.yaml.*{MAX_BYTES}"):
        load_yaml(big)
    with pytest.raises(ConfigError, match=str(MAX_BYTES)):
        loads_yaml("a" * (MAX_BYTES + 1))


def test_duplicate_key() -> None:
    with pytest.raises(ConfigError) as info:
        load("a: 1\nb:\n  x: 1\n  x: 2\n")
    assert str(info.value) == "cfg.yaml:4:3: duplicate key 'x'"


def test_parse_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load("a: 1\nb: c: d\n")
    assert str(info.value) == "cfg.yaml:2:5: could not parse YAML: mapping values are not allowed here"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("number", ["9" * 10_000, "-" + "1" * 5000, "_".join(["123"] * 2000)])
def test_number_too_long_names_its_place(number: str) -> None:
    with pytest.raises(ConfigError, match=r"^c\.yaml:2:5: a number with \d+ digits is too long for a config$"):
        loads_yaml(f"a: 1\nb: [{number}]\n", "c.yaml")
    assert loads_yaml("a: " + "9" * 4000).data == {"a": int("9" * 4000)}


def test_multiple_documents_rejected() -> None:
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2:1: expected a single YAML document"):
        load("a: 1\n---\nb: 2\n")


def test_empty_file_is_none(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    doc = load_yaml(empty)
    assert doc.data is None and doc.file == str(empty)
    assert doc.locate(("x",)).line is None


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(NotFoundError, match=r"config file not found: .*nope\.yaml"):
        load_yaml(missing)
    with pytest.raises(ConfigError, match="directory"):
        load_yaml(tmp_path)


def test_load_yaml_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(PIPELINE)
    doc = load_yaml(str(path))
    assert doc.file == str(path)
    assert doc.data["name"] == "demo"


def test_env_interpolation() -> None:
    doc = load(
        """\
        host: ${HOST}
        port: ${PORT}
        user: ${USER_NAME:-guest}
        empty: ${EMPTY:-fallback}
        url: "http://${HOST:-localhost}:${PORT}/x"
        literal: $${HOME} costs $5
        ${HOST}: key untouched
        """,
        HOST="db",
        PORT="5432",
        EMPTY="",
    )
    assert doc.data == {
        "host": "db",
        "port": "5432",  # stays a string: types are not re-resolved
        "user": "guest",
        "empty": "fallback",
        "url": "http://db:5432/x",
        "literal": "${HOME} costs $5",
        "${HOST}": "key untouched",
    }


def test_env_interpolation_root_scalar_and_malformed() -> None:
    assert loads_yaml("${GREETING:-hi}", env={}).data == "hi"
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2:4: malformed"):
        load("a: 1\nb: ${NOT CLOSED\n")


def test_env_interpolation_unset_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load("a: 1\nb:\n  - ${MISSING_VAR}\n")
    assert str(info.value) == (
        "cfg.yaml:3:5: environment variable 'MISSING_VAR' is not set (use ${MISSING_VAR:-default} for a default)"
    )


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLRM_TEST_VAR", "from-env")
    assert loads_yaml("v: ${MLRM_TEST_VAR}").data == {"v": "from-env"}


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(ConfigError, match="python/object"):
        load("x: !!python/object:os.system {}\n")
    with pytest.raises(ConfigError, match="not allowed"):
        load("x: !!python/name:os.system\n")


def test_plain_data_only() -> None:
    doc = load("d: 2024-01-01\nn: 3\nf: 1.5\nb: true\nz: null\nop: =\n")
    assert doc.data == {"d": "2024-01-01", "n": 3, "f": 1.5, "b": True, "z": None, "op": "="}


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="libyaml not available")
def test_c_and_pure_loaders_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    text = PIPELINE + "extra: &e\n  k: |\n    text\n  q: 'x'\nmore: *e\nlast: {a: [1, {b: 2}]}\n"
    fast = loads_yaml(text)
    monkeypatch.setattr(yamlio, "_Loader", yamlio._PureLoader)
    pure = loads_yaml(text)
    assert fast == pure
    assert fast.data["more"] == {"k": "text\n", "q": "x"}
