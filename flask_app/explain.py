"""Per-prediction explanations: how much each input field moved a flight's log-odds.

XGBoost computes exact TreeSHAP values itself (``pred_contribs=True``): one contribution per
matrix column plus a bias column, summing to the booster's margin (log-odds) for that row. A
client thinks in input fields, not in one-hot columns, so the columns are folded back into the
field they were built from, as the feature spec records in ``feature_groups`` (``OPERA=Sky
Airline`` and every other airline column -> ``OPERA``; the parts of ``Fecha-I`` stay separate:
day_of_week, hour, high_season, holiday, the last folding the four holiday columns).
``by_input`` then sums the groups per request field, as ``group_inputs`` records, so every
feature derived from the departure reports under ``Fecha-I``. SHAP values are additive, so a
field's sum is its contribution.

An optional input the client did not send is encoded as missing and each tree takes its
learned default branch; that still moves the score, so those fields keep their contribution
(it is the effect of *not knowing* the input) and are listed in ``not_given``. Keeping them is
what makes ``base_value + sum(contributions) == margin`` hold exactly for every flight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost as xgb
from marshmallow import RAISE, Schema, fields

from training.features import FeatureSpec


class PredictQuerySchema(Schema):
    """Query parameters of ``POST /predict``; an unknown one is refused, so typos show up."""

    class Meta:
        unknown = RAISE

    explain = fields.Boolean(load_default=False, metadata={
        "description": "Add per-field log-odds contributions (SHAP) to each prediction"})


class Explainer:
    """Folds XGBoost's per-column SHAP values into per-field ones for one feature spec."""

    def __init__(self, booster: xgb.Booster, spec: FeatureSpec) -> None:
        self.booster = booster
        self.groups: list[str] = spec.group_names()
        index = {name: i for i, name in enumerate(self.groups)}
        # columns x groups 0/1 matrix: contributions @ fold sums each group's columns at once.
        self.fold = np.zeros((spec.n_features, len(self.groups)), dtype=np.float64)
        for column, group in enumerate(spec.feature_groups):
            self.fold[column, index[group]] = 1.0
        # The request field each group comes from (Fecha-I for every calendar part).
        self.inputs = [spec.group_inputs[group] for group in self.groups]
        self.fields: list[str] = list(dict.fromkeys(self.inputs))
        field_index = {name: i for i, name in enumerate(self.fields)}
        self.to_field = np.zeros((len(self.groups), len(self.fields)), dtype=np.float64)
        for group, source in enumerate(self.inputs):
            self.to_field[group, field_index[source]] = 1.0

    def explain(self, matrix: np.ndarray, flights: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One explanation per row of ``matrix`` (the encoded ``flights``), in log-odds."""
        dmatrix = xgb.DMatrix(matrix, missing=np.nan)
        contribs = self.booster.predict(dmatrix, pred_contribs=True).astype(np.float64)
        margins = self.booster.predict(dmatrix, output_margin=True)
        by_group = contribs[:, :-1] @ self.fold
        by_field = by_group @ self.to_field
        out = []
        for flight, row, fields_row, bias, margin in zip(flights, by_group, by_field,
                                                         contribs[:, -1], margins, strict=True):
            out.append({
                "base_value": round(float(bias), 6),
                "margin": round(float(margin), 6),
                "contributions": {g: round(float(v), 6)
                                  for g, v in zip(self.groups, row, strict=True)},
                "by_input": {f: round(float(v), 6)
                             for f, v in zip(self.fields, fields_row, strict=True)},
                "not_given": [g for g, source in zip(self.groups, self.inputs, strict=True)
                              if flight.get(source) is None],
            })
        return out
