"""The feature spec stored in metadata must rebuild exactly, or be refused with a reason."""

from __future__ import annotations

import pytest

from training.features import FeatureSpec


def spec_dict() -> dict:
    return FeatureSpec(["Sky Airline", "Grupo LATAM"], ["Lima", "Miami"]).to_dict()


def test_round_trip_keeps_columns_and_vocabularies():
    data = spec_dict()
    spec = FeatureSpec.from_dict(data)
    assert list(spec.feature_names) == data["feature_names"]
    assert list(spec.airlines) == ["Grupo LATAM", "Sky Airline"]
    assert spec.feature_names[:2] == ("OPERA=Grupo LATAM", "OPERA=Sky Airline")


@pytest.mark.parametrize(("key", "value"), [
    ("flight_types", ["I", "N", "C"]),
    ("months", list(range(1, 14))),
    ("spec_version", 99),
    ("feature_names", ["MES"]),
])
def test_a_spec_this_code_cannot_encode_is_refused(key, value):
    data = spec_dict()
    data[key] = value
    with pytest.raises(ValueError, match=key.split("_")[0] if key != "spec_version" else "version"):
        FeatureSpec.from_dict(data)
