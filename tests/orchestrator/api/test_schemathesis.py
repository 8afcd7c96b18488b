"""Property-based tests of the control plane's REST API from its own OpenAPI document (schemathesis):
no 5xx, and every response conforms to the schema, status codes and content types the document declares.

Bounded (a few examples per operation) so CI stays fast; `scripts/fuzz_apis.py --only orchestrator` runs the
long version."""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlrm.settings import Settings
from orchestrator.api.control import ControlPlane
from orchestrator.api.registry import RegistryPlane
from orchestrator.api.rest import rest_app
from orchestrator.embedded import Embedded

EXAMPLES = int(os.environ.get("MLRM_FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def test_no_server_errors_and_responses_match_the_document(tmp_path: Path) -> None:
    settings_ = Settings(volume=str(tmp_path / "volume"), state=str(tmp_path / "runs.sqlite"), retries=1)
    (tmp_path / "configs").mkdir()
    with Embedded(settings_) as runtime:
        app = rest_app(ControlPlane(runtime.orchestrator, tmp_path / "configs"), RegistryPlane(runtime.volume),
                       max_body=1024 * 1024)  # fmt: skip
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def conforms(case) -> None:
                case.call_and_validate(checks=CHECKS)

            conforms()
