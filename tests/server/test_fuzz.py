"""Schema-driven fuzzing (schemathesis) of the real server against its own OpenAPI document.

Every operation declared in ``/api`` gets schema-conforming and schema-violating examples
(bounded: :data:`MAX_EXAMPLES` per operation and mode, the whole run well under a minute);
no answer may be a 5xx, and each must come back within a bounded time.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

#: Examples per operation and generation mode.
MAX_EXAMPLES = 30


def test_no_server_error_on_any_declared_operation(stac_server):
    schema = schemathesis.openapi.from_url(f"{stac_server.url}/api")
    operations = [r.ok() for r in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"GET /search", "POST /search", "GET /velocities/urls/",
            "GET /collections/{collection_id}/items"} <= labels  # fmt: skip
    calls = 0
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                nonlocal calls
                calls += 1
                response = case.call(base_url=stac_server.url, timeout=20)
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}: "
                    f"{response.status_code} {response.text[:300]}"
                )
                assert response.elapsed < 10  # seconds

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (an operation without parameters)
                assert mode is GenerationMode.NEGATIVE, op.path
    assert calls >= 5 * len(operations)
