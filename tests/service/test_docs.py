"""/openapi.json and /docs: the document matches the model and the service, the page is offline.

Expected values come from outside the code under test: the vocabulary and version from the
artifact's metadata.json on disk, and the example responses from the live endpoints.
"""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from marshmallow import ValidationError

from flask_app import create_app
from flask_app.schemas import ErrorSchema, PredictResponseSchema


@pytest.fixture
def metadata(tiny_model_dir: Path) -> dict[str, Any]:
    return json.loads((tiny_model_dir / "metadata.json").read_text())


@pytest.fixture
def doc(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def predict_media(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]


def response_examples(doc: dict[str, Any], status: str) -> dict[str, Any]:
    responses = doc["paths"]["/predict"]["post"]["responses"]
    return responses[status]["content"]["application/json"]["examples"]


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in all_refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in all_refs(value)]
    return []


def test_document_is_openapi_3_with_every_route(doc, metadata):
    assert doc["openapi"].startswith("3.0.")
    assert doc["info"]["version"] == metadata["model_version"]
    assert "threshold" in doc["info"]["description"]
    assert str(metadata["threshold"]) in doc["info"]["description"]
    for path, method in [("/predict", "post"), ("/model", "get"), ("/health", "get"),
                         ("/ready", "get"), ("/", "get")]:
        assert method in doc["paths"][path], path
        assert doc["paths"][path][method]["responses"]
    assert set(doc["paths"]["/predict"]["post"]["responses"]) == {
        "200", "400", "413", "415", "503"}


def test_every_reference_resolves(doc):
    refs = all_refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref


def test_vocabularies_are_the_models(doc, metadata):
    flight = doc["components"]["schemas"]["Flight"]
    assert flight["properties"]["OPERA"]["enum"] == metadata["feature_spec"]["airlines"]
    destinations = [d for d in flight["properties"]["SIGLADES"]["enum"] if d is not None]
    assert destinations == metadata["feature_spec"]["destinations"]
    assert sorted(flight["required"]) == ["MES", "OPERA", "TIPOVUELO"]
    assert flight["additionalProperties"] is False
    batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["flights"]
    assert batch["maxItems"] == 50  # the app fixture's MAX_BATCH_SIZE


def test_request_body_offers_single_and_batch(doc):
    media = predict_media(doc)
    assert media["schema"]["oneOf"] == [{"$ref": "#/components/schemas/Flight"},
                                        {"$ref": "#/components/schemas/BatchRequest"}]
    assert {"single", "minimal", "batch"} <= set(media["examples"])


def test_explain_parameter_is_documented(doc):
    params = {p["name"]: p for p in doc["paths"]["/predict"]["post"]["parameters"]}
    assert params["explain"]["in"] == "query"
    assert params["explain"]["schema"]["type"] == "boolean"


def test_explained_example_adds_up(client, doc):
    """The ?explain=true example: contributions sum to the margin, whose sigmoid is the answer."""
    example = response_examples(doc, "200")["explained"]["value"]
    prediction = example["predictions"][0]
    explanation = prediction["explanation"]
    total = explanation["base_value"] + sum(explanation["contributions"].values())
    assert total == pytest.approx(explanation["margin"], abs=1e-4)
    assert 1 / (1 + math.exp(-explanation["margin"])) == pytest.approx(
        prediction["delay_probability"], abs=1e-4)
    documented = doc["components"]["schemas"]["Prediction"]["properties"]["explanation"]
    assert documented == {"$ref": "#/components/schemas/Explanation"} or "allOf" in documented
    request = predict_media(doc)["examples"]["single"]["value"]
    live = client.post("/predict?explain=true", json=request)
    assert live.get_json() == example


def test_request_examples_pass_the_apps_own_schemas(app, doc):
    schemas = app.extensions["schemas"]
    examples = predict_media(doc)["examples"]
    assert schemas.flight.load(examples["single"]["value"])["OPERA"]
    assert schemas.flight.load(examples["minimal"]["value"])["MES"]
    assert len(schemas.batch.load(examples["batch"]["value"])["flights"]) == 2
    with pytest.raises(ValidationError):  # the single form is not a batch, and vice versa
        schemas.batch.load(examples["single"]["value"])


def test_response_examples_have_the_documented_shapes(doc):
    for name in ("single", "batch"):
        PredictResponseSchema().load(response_examples(doc, "200")[name]["value"])
    for status in ("400", "413", "415", "503"):
        for example in response_examples(doc, status).values():
            body = ErrorSchema().load(example["value"])
            assert body["error"]["status"] == int(status)


def test_success_examples_are_what_the_service_answers(client, doc):
    requests = predict_media(doc)["examples"]
    answers = response_examples(doc, "200")
    for name in ("single", "batch"):
        live = client.post("/predict", json=requests[name]["value"])
        assert live.status_code == 200
        assert live.get_json() == answers[name]["value"], name


def test_error_examples_are_what_the_service_answers(tiny_model_dir, client, doc):
    invalid = client.post("/predict", json={"OPERA": "Unknown Air", "TIPOVUELO": "X",
                                            "MES": 13})
    assert invalid.status_code == 400
    assert invalid.get_json() == response_examples(doc, "400")["invalid_flight"]["value"]
    assert {"OPERA", "TIPOVUELO", "MES"} <= set(invalid.get_json()["error"]["fields"])

    malformed = client.post("/predict", data='{"OPERA": ', content_type="application/json")
    assert malformed.status_code == 400
    assert malformed.get_json() == response_examples(doc, "400")["malformed_json"]["value"]

    not_json = client.post("/predict", data="OPERA=Sky", content_type="text/plain")
    assert not_json.status_code == 415
    assert not_json.get_json() == response_examples(doc, "415")["not_json"]["value"]


def test_too_large_example_is_what_the_service_answers(tiny_model_dir):
    # 400 bytes: the documented examples fit, a 500-byte body does not.
    small = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir),
                        "MAX_CONTENT_LENGTH": 400}).test_client()
    documented = response_examples(small.get("/openapi.json").get_json(), "413")
    too_large = small.post("/predict", json={"flights": [{"OPERA": "x" * 500}]})
    assert too_large.status_code == 413
    assert too_large.get_json() == documented["too_large"]["value"]


def predict_counters(client) -> list[str]:
    text = client.get("/metrics").get_data(as_text=True)
    return [line for line in text.splitlines()
            if not line.startswith("#") and 'route="/predict"' in line and "_total" in line]


def test_building_the_document_is_not_counted_as_traffic(tiny_model_dir, client):
    """The examples run the real view, but not the request hooks: no request is counted."""
    if client.get("/metrics").status_code == 404:
        pytest.skip("this build has no /metrics route")
    before = predict_counters(client)
    create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})  # builds a document
    assert predict_counters(client) == before
    client.post("/predict", json={"OPERA": "Unknown Air", "TIPOVUELO": "I", "MES": 1})
    assert predict_counters(client) != before  # the probe can see a counted request


def test_document_is_built_once_and_reused(app, client):
    first = client.get("/openapi.json").data
    built = app.extensions["openapi"]
    assert client.get("/openapi.json").data == first
    assert app.extensions["openapi"] is built


def test_no_model_means_503_json_but_the_page_still_loads():
    client = create_app({"TESTING": True, "LOAD_MODEL": False}).test_client()
    response = client.get("/openapi.json")
    assert response.status_code == 503
    assert response.get_json()["error"]["status"] == 503
    assert client.get("/docs").status_code == 200


class AssetCollector(HTMLParser):
    """Every URL the page would load by itself (scripts, stylesheets, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_docs_page_loads_only_local_assets(client, metadata):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert metadata["model_version"] in html
    assert "http://" not in html and "https://" not in html
    collector = AssetCollector()
    collector.feed(html)
    assert len(collector.urls) >= 3  # stylesheet, Swagger UI bundle, initializer
    for url in collector.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.data
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy


def test_swagger_ui_is_told_not_to_call_the_public_validator(client):
    init = client.get("/docs/init.js").get_data(as_text=True)
    assert "validatorUrl: null" in init
    assert "http://" not in init and "https://" not in init
