"""The whole API fuzzed from its live OpenAPI schema by schemathesis, over real HTTP to `docbits
serve` on 127.0.0.1: requests that fit the schema and requests that break it, for every
operation. No answer is a 5xx, and each keeps to its operation's documented status codes,
content type and response schema."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import Server, serving, store_environment, topical_documents

FAST_CASES_PER_OPERATION = 40
SLOW_CASES_PER_OPERATION = 400
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[Server]:
    """An open server over each store, with the tiny model and 30 documents, so searches,
    buckets and similar lookups reach their real code paths; accepted train requests run one
    short epoch. The stores differ in what they refuse (PostgreSQL text cannot hold NUL)."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    training = ["--train-bits", "16", "--train-epochs", "1"]
    env = store_environment(request)
    with serving(data_dir, model_dir=tiny_model, env=env, args=training) as running:
        with running.client() as client:
            documents = topical_documents(30, prefix="fuzz")
            assert client.post("/v1/documents", json={"documents": documents}).status_code == 200
        yield running


def fuzz_every_operation(server: Server, mode: GenerationMode, cases: int) -> Counter[str]:
    """Send up to `cases` drawn requests per operation; how many each operation got."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    sent: Counter[str] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=cases,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=30)
            sent[case.operation.label] += 1

        try:
            check()
        except Unsatisfiable:  # negative: nothing to break (no inputs, or free-form strings)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
    assert len(operations) >= 15, [operation.label for operation in operations]
    # Every operation takes valid requests; those with bounded inputs (search, documents,
    # buckets, similar, train) also take invalid ones.
    assert len(sent) >= (len(operations) if mode is GenerationMode.POSITIVE else 7), sent
    print(f"\n{mode.value} fuzz: {sum(sent.values())} requests, by operation {dict(sent)}")
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
    return sent


@pytest.mark.parametrize("mode", MODES)
def test_fuzz_every_operation_bounded(fuzz_server: Server, mode: GenerationMode) -> None:
    fuzz_every_operation(fuzz_server, mode, FAST_CASES_PER_OPERATION)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_fuzz_every_operation_long(fuzz_server: Server, mode: GenerationMode) -> None:
    fuzz_every_operation(fuzz_server, mode, SLOW_CASES_PER_OPERATION)
