"""The traffic profile and the flights the locustfile draws from it (no server needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from marshmallow import ValidationError

import locustfile
from flask_app.schemas import build_schemas
from load.profile import build_profile, main
from training.artifacts import load_artifact

CSV_HEAD = ("Fecha-I,Vlo-I,Ori-I,Des-I,Emp-I,Fecha-O,Vlo-O,Ori-O,Des-O,Emp-O,DIA,MES,AÑO,"
            "DIANOM,TIPOVUELO,OPERA,SIGLAORI,SIGLADES\n")


def _row(when: str, kind: str, airline: str, dest: str) -> str:
    return f"{when},1,SCEL,X,Y,{when},1,SCEL,X,Y,1,1,2017,Lunes,{kind},{airline},Santiago,{dest}\n"


def test_profile_counts_routes_months_hours_minutes_and_keeps_no_rows(tmp_path: Path) -> None:
    data = tmp_path / "flights.csv"
    data.write_text(CSV_HEAD
                    + _row("2017-01-01 23:30:00", "I", "American Airlines", "Miami")
                    + _row("2017-01-02 23:30:00", "I", "American Airlines", "Miami")
                    + _row("2017-03-05 08:05:00", "N", "Sky Airline", "Calama"),
                    encoding="utf-8")
    out = tmp_path / "profile.json"
    main(["--data", str(data), "--out", str(out)])
    profile = json.loads(out.read_text(encoding="utf-8"))
    assert profile["flights"] == 3
    assert profile["routes"] == [["American Airlines", "I", "Miami", 2],
                                 ["Sky Airline", "N", "Calama", 1]]
    assert profile["months"] == {"1": 2, "3": 1}
    assert profile["hours"] == {"8": 1, "23": 2}
    assert profile["minutes"] == {"5": 1, "30": 2}
    assert "2017-01-01" not in out.read_text(encoding="utf-8")  # aggregates only, no rows


def test_empty_data_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "empty.csv"
    data.write_text(CSV_HEAD, encoding="utf-8")
    with pytest.raises(ValueError, match="no flights"):
        build_profile(data)


def _traffic(model_dir: Path) -> tuple[locustfile.Traffic, object]:
    artifact = load_artifact(model_dir)
    profile = json.loads(locustfile.PROFILE_PATH.read_text(encoding="utf-8"))
    return locustfile.Traffic(profile, artifact.spec.to_dict()), build_schemas(artifact.spec, 1000)


def test_shipped_profile_draws_only_flights_the_served_model_accepts(tiny_model_dir: Path):
    random.seed(7)
    traffic, schemas = _traffic(tiny_model_dir)
    flights = [traffic.flight() for _ in range(1000)]
    loaded = schemas.batch.load({"flights": flights})["flights"]  # raises if any is invalid
    assert len(loaded) == 1000
    # Real routes only: the tiny model knows American Airlines, and it flies only to Miami and
    # Dallas in the data (Dallas is not in the tiny vocabulary).
    american = {f.get("SIGLADES") for f in flights if f["OPERA"] == "American Airlines"}
    assert american <= {"Miami", None}
    # The optional inputs vary as INPUT_MIX says: some flights have neither.
    assert any("Fecha-I" not in f and "SIGLADES" not in f for f in flights)
    assert any("Fecha-I" in f and "SIGLADES" in f for f in flights)


def test_invalid_requests_are_invalid_for_the_named_field(tiny_model_dir: Path):
    random.seed(3)
    traffic, schemas = _traffic(tiny_model_dir)
    seen = set()
    for _ in range(200):
        field, body = traffic.invalid()
        seen.add(field)
        schema = schemas.batch if "flights" in body else schemas.flight
        with pytest.raises(ValidationError) as caught:
            schema.load(body)
        assert field in caught.value.messages
    assert seen == {"OPERA", "MES", "TIPOVUELO", "Fecha-I", "flights"}


def test_unknown_vocabulary_falls_back_to_the_models_own_values():
    profile = {"routes": [["Nobody Air", "I", "Atlantis", 5]], "months": {"1": 1},
               "hours": {"9": 1}, "minutes": {"0": 1}}
    spec = {"airlines": ["A"], "destinations": ["B"], "flight_types": ["I", "N"],
            "months": list(range(1, 13))}
    traffic = locustfile.Traffic(profile, spec)
    flight = traffic.flight()
    assert flight["OPERA"] == "A" and flight["MES"] == 1


@pytest.mark.parametrize("size", [1, 7])
def test_prediction_count_reads_the_services_real_answers(client, tiny_model_dir: Path,
                                                          size: int) -> None:
    """Locust counts predictions without parsing; the count must agree with a real parse of
    what the service sends, with and without explanations."""
    random.seed(size)
    traffic, _ = _traffic(tiny_model_dir)
    flights = [traffic.flight() for _ in range(size)]
    payload = flights[0] if size == 1 else {"flights": flights}
    for path in ("/predict", "/predict?explain=true"):
        resp = client.post(path, json=payload)
        assert resp.status_code == 200
        assert locustfile.prediction_count(resp.data) == len(resp.get_json()["predictions"])
        assert locustfile.prediction_count(resp.data) == size
    error = client.post("/predict", json={"flights": []})
    assert error.status_code == 400 and locustfile.prediction_count(error.data) == 0


def test_the_departure_board_is_the_same_in_every_run(tiny_model_dir: Path) -> None:
    """A warm-up and the measured runs after it are separate Locust processes: they must ask
    about the same departures, whatever else each process has drawn before."""
    first, schemas = _traffic(tiny_model_dir)
    second, _ = _traffic(tiny_model_dir)
    random.seed(1)
    first.plan(300)
    random.seed(2)
    second.plan(300)
    assert first.schedule == second.schedule
    other, _ = _traffic(tiny_model_dir)
    other.plan(300, seed=locustfile.SCHEDULE_SEED + 1)
    assert other.schedule != first.schedule
    departures = [json.loads(body) for body in first.schedule]
    assert len({json.dumps(d, sort_keys=True) for d in departures}) > 100  # a board, not a loop
    schemas.batch.load({"flights": departures})  # every departure is a valid request
