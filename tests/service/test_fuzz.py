"""Fuzzing every operation of the service's own OpenAPI document with Schemathesis.

The document the service serves (``GET /openapi.json``) is the contract; Schemathesis
generates requests from it, valid (positive) and invalid (negative), and checks each answer:
never a 5xx, and status code, content type, headers and body as documented; valid requests
must be accepted. The one rule a JSON Schema cannot state, ``MES`` must be the month of
``Fecha-I``, is written in the ``predict`` operation's description instead; generated flights
break it often, so that operation alone is left out of the "valid data is accepted" check,
by name. Examples are bounded so the whole file takes well under a minute.

Schemathesis's pytest plugin, and that of anyio (which it brings), are not loaded
(``-p no:schemathesis -p no:anyio`` in pyproject.toml): they import ssl before
tests/conftest.py can let gevent patch it. Each operation runs as a plain
Hypothesis test over the operation's strategy instead.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from flask_app import create_app

#: Operations whose schema-valid requests may still be refused, and why (see module doc).
NOT_CHECKED_FOR_ACCEPTANCE = {"POST /predict": "MES must be the month of Fecha-I"}
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}


@pytest.fixture(scope="module")
def api_schema(tiny_model_dir):
    app = create_app({"MODEL_DIR": str(tiny_model_dir), "MAX_BATCH_SIZE": 20})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_lists_the_operations_fuzzed(api_schema):
    labels = {op.label for op in operations(api_schema)}
    assert {"POST /predict", "GET /model", "GET /health", "GET /ready"} <= labels
    assert set(NOT_CHECKED_FOR_ACCEPTANCE) <= labels


def test_the_month_rule_is_in_the_predict_description(api_schema):
    description = api_schema["/predict"]["POST"].definition.raw["description"]
    assert "`MES` must be the month of `Fecha-I`" in description


def fuzz(operation, mode: GenerationMode) -> None:
    """Run ``EXAMPLES[mode]`` generated requests against one operation, checking each."""
    excluded = ([positive_data_acceptance]
                if operation.label in NOT_CHECKED_FOR_ACCEPTANCE else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def answers_as_documented(case):
        case.call_and_validate(excluded_checks=excluded)

    answers_as_documented()


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_every_operation_answers_as_documented(api_schema, mode):
    fuzzed = 0
    for operation in operations(api_schema):
        # An operation without inputs has no invalid request to make.
        if mode is GenerationMode.NEGATIVE and not (list(operation.query) or
                                                    list(operation.body)):
            continue
        fuzz(operation, mode)
        fuzzed += 1
    assert fuzzed >= (1 if mode is GenerationMode.NEGATIVE else 4)
