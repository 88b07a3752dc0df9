"""Every malformed request gets a 4xx JSON error that names the field at fault and what is allowed.

The contract: ``{"error": {"status": <int>, "message": <str>, "fields": {<path>: [<str>, ...]}}}``
where a batch item's path carries its index (``flights[3].MES``) and the message, read alone,
names the field too. No input yields a 500, HTML or a hang.
"""

from __future__ import annotations

import gzip
import json

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

LATAM = {"OPERA": "Grupo LATAM", "TIPOVUELO": "I", "MES": 1}
BATCH_LIMIT = 50  # the app fixture's MAX_BATCH_SIZE
JSON = "application/json"


def assert_error(response: TestResponse, status: int) -> dict:
    """The JSON error shape, returned for further checks."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "message", "fields"}
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    for path, messages in error["fields"].items():
        assert isinstance(path, str)
        assert messages and all(isinstance(m, str) for m in messages)
    return error


def assert_field_error(response: TestResponse, field: str, *hints: str) -> dict:
    """A 400 naming ``field`` in ``fields`` and in the message, each hint in its text."""
    error = assert_error(response, 400)
    assert field in error["fields"], error
    assert field in error["message"], error["message"]
    text = " ".join(error["fields"][field])
    for hint in hints:
        assert hint in text, (hint, text)
        assert hint in error["message"], (hint, error["message"])
    return error


# (id, body, field named, hints the message must contain)
FIELD_CASES = [
    ("unknown-airline", {**LATAM, "OPERA": "Argentinas"}, "OPERA",
     ("Argentinas", "Grupo LATAM", "Sky Airline", "Copa Air", "American Airlines")),
    ("unicode-airline", {**LATAM, "OPERA": "Aerolíneas Argentinas ✈"}, "OPERA",
     ("Aerolíneas Argentinas ✈", "Grupo LATAM")),
    ("airline-lowercase", {**LATAM, "OPERA": "grupo latam"}, "OPERA", ("Grupo LATAM",)),
    ("airline-empty", {**LATAM, "OPERA": ""}, "OPERA", ("Grupo LATAM",)),
    ("airline-number", {**LATAM, "OPERA": 7}, "OPERA", ()),
    ("airline-list", {**LATAM, "OPERA": ["Grupo LATAM"]}, "OPERA", ()),
    ("mes-13", {**LATAM, "MES": 13}, "MES", ("1", "12", "13")),
    ("mes-0", {**LATAM, "MES": 0}, "MES", ("1", "12")),
    ("mes-negative", {**LATAM, "MES": -1}, "MES", ("1", "12")),
    ("mes-string", {**LATAM, "MES": "x"}, "MES", ("integer",)),
    ("mes-numeric-string", {**LATAM, "MES": "3"}, "MES", ("integer",)),
    ("mes-true", {**LATAM, "MES": True}, "MES", ("integer",)),
    ("mes-float", {**LATAM, "MES": 3.5}, "MES", ("integer",)),
    ("mes-null", {**LATAM, "MES": None}, "MES", ("null",)),
    ("mes-object", {**LATAM, "MES": {"m": 1}}, "MES", ("integer",)),
    ("tipovuelo-O", {**LATAM, "TIPOVUELO": "O"}, "TIPOVUELO", ("'O'", "I", "N")),
    ("tipovuelo-null", {**LATAM, "TIPOVUELO": None}, "TIPOVUELO", ("null",)),
    ("opera-null", {**LATAM, "OPERA": None}, "OPERA", ("null",)),
    ("missing-opera", {"TIPOVUELO": "I", "MES": 1}, "OPERA", ("Missing",)),
    ("missing-tipovuelo", {"OPERA": "Grupo LATAM", "MES": 1}, "TIPOVUELO", ("Missing",)),
    ("missing-mes", {"OPERA": "Grupo LATAM", "TIPOVUELO": "I"}, "MES", ("Missing",)),
    ("unknown-field", {**LATAM, "DIANOM": "Lunes"}, "DIANOM",
     ("Unknown field", "OPERA", "TIPOVUELO", "MES", "Fecha-I", "SIGLADES")),
    ("unknown-destination", {**LATAM, "SIGLADES": "Narnia"}, "SIGLADES",
     ("Narnia", "Miami", "Lima")),
    ("destination-number", {**LATAM, "SIGLADES": 5}, "SIGLADES", ()),
    ("fecha-feb-30", {**LATAM, "MES": 2, "Fecha-I": "2017-02-30 10:00"}, "Fecha-I",
     ("Not a real date", "YYYY-MM-DD HH:MM")),
    ("fecha-hour-25", {**LATAM, "Fecha-I": "2017-01-05 25:00"}, "Fecha-I",
     ("YYYY-MM-DD HH:MM",)),
    ("fecha-date-only", {**LATAM, "Fecha-I": "2017-01-01"}, "Fecha-I", ("YYYY-MM-DD HH:MM",)),
    ("fecha-day-first", {**LATAM, "Fecha-I": "01-01-2017 10:00"}, "Fecha-I",
     ("YYYY-MM-DD HH:MM",)),
    ("fecha-timezone", {**LATAM, "Fecha-I": "2017-01-01 10:00+03:00"}, "Fecha-I",
     ("YYYY-MM-DD HH:MM",)),
    ("fecha-number", {**LATAM, "Fecha-I": 1483264800}, "Fecha-I", ("YYYY-MM-DD HH:MM",)),
    ("fecha-empty", {**LATAM, "Fecha-I": ""}, "Fecha-I", ("YYYY-MM-DD HH:MM",)),
    ("fecha-disagrees-with-mes", {**LATAM, "MES": 1, "Fecha-I": "2017-03-01 10:00"}, "MES",
     ("Fecha-I", "month 3", "MES 1")),
    ("batch-empty", {"flights": []}, "flights", (f"1 and {BATCH_LIMIT}",)),
    ("batch-oversize", {"flights": [LATAM] * (BATCH_LIMIT + 1)}, "flights",
     (f"1 and {BATCH_LIMIT}", str(BATCH_LIMIT + 1))),
    ("batch-not-a-list", {"flights": LATAM}, "flights", ("list",)),
    ("batch-string", {"flights": "LATAM"}, "flights", ("list",)),
    ("batch-null", {"flights": None}, "flights", ("null",)),
    ("batch-extra-key", {"flights": [LATAM], "MES": 1}, "MES", ("Unknown field", "flights")),
    ("batch-non-object-item", {"flights": [LATAM, 3]}, "flights[1]", ("JSON object",)),
    ("batch-null-item", {"flights": [None, LATAM]}, "flights[0]", ()),
    ("batch-list-item", {"flights": [LATAM, [LATAM]]}, "flights[1]", ("JSON object",)),
    ("batch-item-mes", {"flights": [LATAM, LATAM, LATAM, {**LATAM, "MES": 13}]},
     "flights[3].MES", ("1", "12")),
    ("batch-item-airline", {"flights": [{**LATAM, "OPERA": "Argentinas"}]},
     "flights[0].OPERA", ("Argentinas", "Grupo LATAM")),
    ("batch-item-unknown-field", {"flights": [LATAM, {**LATAM, "x": 1}]}, "flights[1].x",
     ("Unknown field",)),
    ("batch-item-missing", {"flights": [{"OPERA": "Grupo LATAM", "MES": 1}]},
     "flights[0].TIPOVUELO", ("Missing",)),
    ("batch-item-fecha-disagrees", {"flights": [{**LATAM, "Fecha-I": "2017-05-01 10:00"}]},
     "flights[0].MES", ("Fecha-I", "month 5")),
]


@pytest.mark.parametrize(("body", "field", "hints"), [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_invalid_field_is_named(client: FlaskClient, body: dict, field: str,
                                hints: tuple[str, ...]) -> None:
    assert_field_error(client.post("/predict", json=body), field, *hints)


def test_batch_lists_every_bad_item_with_its_index(client: FlaskClient) -> None:
    flights = [LATAM, {**LATAM, "MES": 0}, LATAM, {**LATAM, "OPERA": "Nope", "TIPOVUELO": "X"}]
    error = assert_error(client.post("/predict", json={"flights": flights}), 400)
    assert set(error["fields"]) == {"flights[1].MES", "flights[3].OPERA", "flights[3].TIPOVUELO"}
    for path in error["fields"]:
        assert path in error["message"]


def test_every_month_disagreement_in_a_batch_is_reported_with_its_index(
        client: FlaskClient) -> None:
    """The MES/Fecha-I check runs once per batch; each disagreeing flight still gets its own
    error, under its own index, worded as for a single flight."""
    march = {**LATAM, "MES": 1, "Fecha-I": "2017-03-01 10:00"}
    flights = [LATAM, march, {**LATAM, "Fecha-I": "2017-01-09 07:00"}, march, LATAM]
    error = assert_error(client.post("/predict", json={"flights": flights}), 400)
    assert error["fields"] == {
        "flights[1].MES": ["MES 1 disagrees with Fecha-I, which is in month 3."],
        "flights[3].MES": ["MES 1 disagrees with Fecha-I, which is in month 3."]}
    single = assert_error(client.post("/predict", json=march), 400)
    assert single["fields"] == {"MES": error["fields"]["flights[1].MES"]}


def test_month_check_waits_for_field_errors(client: FlaskClient) -> None:
    """As before: while any flight has a field error, the month check reports nothing."""
    flights = [{**LATAM, "Fecha-I": "2017-03-01 10:00"}, {**LATAM, "OPERA": "Nope"}]
    error = assert_error(client.post("/predict", json={"flights": flights}), 400)
    assert set(error["fields"]) == {"flights[1].OPERA"}


def test_many_bad_items_keep_the_message_short(client: FlaskClient) -> None:
    flights = [{**LATAM, "MES": 13}] * BATCH_LIMIT
    error = assert_error(client.post("/predict", json={"flights": flights}), 400)
    assert len(error["fields"]) == BATCH_LIMIT
    assert "flights[0].MES" in error["message"]
    assert "more field" in error["message"]
    assert len(error["message"]) < 500


def test_rejected_long_value_is_not_echoed_whole(client: FlaskClient) -> None:
    long_name = "A" * 50_000
    response = client.post("/predict", json={**LATAM, "OPERA": long_name})
    assert_field_error(response, "OPERA", "Grupo LATAM")
    assert len(response.data) < 2_000


def raw(client: FlaskClient, data: bytes | str, content_type: str | None = JSON,
        **headers: str) -> TestResponse:
    return client.post("/predict", data=data, content_type=content_type, headers=headers)


LATAM_TEXT = '"OPERA": "Grupo LATAM", "TIPOVUELO": "I"'
# The stdlib parser hits the recursion limit ("nested too deeply"); orjson refuses past depth
# 1024 as a parse error. Either is a 400 that says the body is the problem.
DEEP = ("nested too deeply", "not valid JSON")

# (id, raw body, expected status, substring of the message)
BODY_CASES = [
    ("truncated", '{"OPERA": "Grupo LATAM", "TIPO', 400, "not valid JSON"),
    ("malformed", "{OPERA: 'Grupo LATAM'}", 400, "not valid JSON"),
    ("empty", "", 400, "not valid JSON"),
    ("trailing-garbage", json.dumps(LATAM) + " x", 400, "not valid JSON"),
    ("non-utf8", b'{"OPERA": "\xff\xfe", "TIPOVUELO": "I", "MES": 1}', 400, "not valid JSON"),
    ("latin1-accent", '{"OPERA": "Aerol\xedneas", "TIPOVUELO": "I", "MES": 1}'.encode("latin-1"),
     400, "not valid JSON"),
    ("int-over-4300-digits", "{" + LATAM_TEXT + ', "MES": 1' + "0" * 5000 + "}", 400,
     "not valid JSON"),
    ("deep-array", "[" * 100_000 + "]" * 100_000, 400, DEEP),
    ("deep-object", '{"a":' * 50_000 + "1" + "}" * 50_000, 400, DEEP),
    ("deep-in-batch", '{"flights": ' + "[" * 5_000 + "]" * 5_000 + "}", 400, DEEP),
    ("string-body", '"Grupo LATAM"', 400, "JSON object"),
    ("number-body", "42", 400, "JSON object"),
    ("null-body", "null", 400, "JSON object"),
    ("array-body", json.dumps([LATAM]), 400, "JSON object"),
]


@pytest.mark.parametrize(("data", "status", "says"), [c[1:] for c in BODY_CASES],
                         ids=[c[0] for c in BODY_CASES])
def test_bad_body_is_a_json_4xx(client: FlaskClient, data: str | bytes, status: int,
                                says: str | tuple[str, ...]) -> None:
    error = assert_error(raw(client, data), status)
    options = (says,) if isinstance(says, str) else says
    assert any(option in error["message"] for option in options), error["message"]


@pytest.mark.parametrize("literal", ["1.0", "2E0", "-3", "0"])
def test_non_month_number_literals_for_mes(client: FlaskClient, literal: str) -> None:
    body = "{" + LATAM_TEXT + f', "MES": {literal}' + "}"
    assert_field_error(raw(client, body), "MES")


# Values some JSON parsers accept (Python's json reads NaN, Infinity, 1e400 as floats, big
# integers exactly, lone surrogates as str) and others refuse (orjson). Either way the answer is
# a 400: a parse error, or a schema error naming the field. Never a 500, never a prediction.
PARSER_DEPENDENT = [
    ("mes-NaN", "{" + LATAM_TEXT + ', "MES": NaN}', "MES"),
    ("mes-Infinity", "{" + LATAM_TEXT + ', "MES": Infinity}', "MES"),
    ("mes-minus-Infinity", "{" + LATAM_TEXT + ', "MES": -Infinity}', "MES"),
    ("mes-1e400", "{" + LATAM_TEXT + ', "MES": 1e400}', "MES"),
    ("mes-10e30", "{" + LATAM_TEXT + ', "MES": ' + str(10**30) + "}", "MES"),
    ("opera-NaN", '{"OPERA": NaN, "TIPOVUELO": "I", "MES": 1}', "OPERA"),
    ("opera-Infinity", '{"OPERA": Infinity, "TIPOVUELO": "I", "MES": 1}', "OPERA"),
    ("opera-lone-surrogate", '{"OPERA": "\\ud800", "TIPOVUELO": "I", "MES": 1}', "OPERA"),
    ("batch-item-NaN", '{"flights": [{' + LATAM_TEXT + ', "MES": NaN}]}', "flights[0].MES"),
]


@pytest.mark.parametrize(("data", "field"), [c[1:] for c in PARSER_DEPENDENT],
                         ids=[c[0] for c in PARSER_DEPENDENT])
def test_values_outside_strict_json_are_a_400(client: FlaskClient, data: str,
                                              field: str) -> None:
    error = assert_error(raw(client, data), 400)
    if "not valid JSON" not in error["message"]:
        assert field in error["fields"] and field in error["message"], error


def test_duplicate_keys_last_one_wins_and_is_validated(client: FlaskClient) -> None:
    # RFC 8259 leaves duplicates undefined; Python keeps the last one, which is what we validate.
    body = "{" + LATAM_TEXT + ', "MES": 1, "MES": 13}'
    assert_field_error(raw(client, body), "MES", "13")
    fine = "{" + LATAM_TEXT + ', "MES": 13, "MES": 1}'
    assert raw(client, fine).status_code == 200


@pytest.mark.parametrize(("content_type", "headers"), [
    (None, {}),
    ("text/plain", {}),
    ("application/x-www-form-urlencoded", {}),
    ("multipart/form-data; boundary=x", {}),
    ("application/xml", {}),
])
def test_non_json_content_type_is_415(client: FlaskClient, content_type: str | None,
                                      headers: dict) -> None:
    error = assert_error(raw(client, json.dumps(LATAM), content_type, **headers), 415)
    assert "application/json" in error["message"]


def test_json_with_charset_parameter_is_accepted(client: FlaskClient) -> None:
    assert raw(client, json.dumps(LATAM), "application/json; charset=utf-8").status_code == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compressed_body_is_refused_clearly(client: FlaskClient, encoding: str) -> None:
    body = gzip.compress(json.dumps(LATAM).encode())
    error = assert_error(raw(client, body, JSON, **{"Content-Encoding": encoding}), 415)
    assert "Content-Encoding" in error["message"] and encoding in error["message"]


def test_body_over_the_size_limit_is_413(client: FlaskClient) -> None:
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    padding = " " * (limit + 1)
    error = assert_error(raw(client, json.dumps(LATAM) + padding), 413)
    assert str(limit) in error["message"] and "MAX_CONTENT_LENGTH" in error["message"]


def test_route_not_found_is_json_404(client: FlaskClient) -> None:
    for method in ("get", "post", "delete"):
        error = assert_error(getattr(client, method)("/predictions"), 404)
        assert "/predictions" in error["message"]


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/predict"), ("put", "/predict"), ("delete", "/predict"), ("patch", "/predict"),
    ("post", "/health"), ("post", "/ready"), ("post", "/model"), ("delete", "/"),
])
def test_wrong_method_is_json_405_with_allow(client: FlaskClient, method: str,
                                             path: str) -> None:
    response = getattr(client, method)(path)
    error = assert_error(response, 405)
    assert method.upper() in error["message"] and path in error["message"]
    assert response.headers["Allow"]


def test_head_on_predict_is_405_without_a_body(client: FlaskClient) -> None:
    response = client.head("/predict")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.data == b""


def test_an_app_error_keeps_working_afterwards(client: FlaskClient) -> None:
    """A bad request leaves no state behind: the next good one is answered normally."""
    for body in ('{"flights": ' + "[" * 5_000, "[" * 100_000 + "]" * 100_000, "nope"):
        assert raw(client, body).status_code == 400
        assert client.post("/predict", json=LATAM).status_code == 200
