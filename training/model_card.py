"""Stage 7: ``MODEL_CARD.md`` next to the model, in the usual model-card sections.

Written by every ``make train`` from the metadata and the evaluation just computed, so the card
can never describe another model than the one beside it (it names the model version). The
numbers are the evaluation's; the words around them say what they mean for someone deciding
whether to use the service for a question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.evaluate import HoldoutError, months_of, temporal_test_months
from training.features import HOLIDAY_DOC, REQUIRED_INPUTS, TIME_COLUMNS
from training.modeling import LEVELS

MODEL_CARD_FILE = "MODEL_CARD.md"
LEVEL_TEXT = {"required": "OPERA, TIPOVUELO, MES", "fecha": "+ Fecha-I",
              "destination": "+ SIGLADES", "full": "all inputs"}


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def delay_drift(frame: pd.DataFrame) -> dict[str, Any] | None:
    """Delay rate of the span's first three quarters vs its last quarter (from the data)."""
    months = months_of(frame)
    try:
        late = np.isin(months, temporal_test_months(months))
    except HoldoutError:
        return None
    y = frame["delay_15"].to_numpy()
    labels = frame["Fecha-I"].dt.strftime("%Y-%m").to_numpy()
    return {"early": (labels[~late].min(), labels[~late].max(), float(y[~late].mean())),
            "late": (labels[late].min(), labels[late].max(), float(y[late].mean()))}


def _level_table(levels: dict[str, dict[str, Any]], with_threshold: bool) -> list[str]:
    head = "| inputs | ROC AUC | Brier | ECE | mean predicted / observed |"
    rule = "|---|---|---|---|---|"
    if with_threshold:
        head += " precision | recall | F1 |"
        rule += "---|---|---|"
    lines = [head, rule]
    for level in LEVELS:
        m = levels[level]
        row = (f"| {level} ({LEVEL_TEXT[level]}) | {_f(m['roc_auc'])} | {_f(m['brier'], 4)} | "
               f"{_f(m['ece'], 4)} | {_f(m['mean_predicted'])} / {_f(m['observed_rate'])} |")
        if with_threshold:
            row += f" {_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])} |"
        lines.append(row)
    return lines


def _evaluation(results: dict[str, Any]) -> list[str]:
    if not results:
        return ["Not evaluated in this run (`--no-eval` or `--holdouts none`): run "
                "`make train` for the numbers.", ""]
    lines: list[str] = []
    if "temporal" in results:
        t = results["temporal"]
        lines += [f"### Forward: train on the earlier months, test on the last quarter "
                  f"({t['test_rows']} flights)", "",
                  f"Threshold {t['threshold']:.3f}, chosen on the training months' validation "
                  "split.", "", *_level_table(t["levels"], True), ""]
    if "rolling" in results:
        r = results["rolling"]
        lines += ["### Forward: rolling origin (train on every month before k, test on k)", "",
                  "| month k | flights | delay rate | ROC AUC all inputs | ROC AUC required | "
                  "Brier all | ECE all |", "|---|---|---|---|---|---|---|"]
        for fold in r["folds"]:
            full, req = fold["levels"]["full"], fold["levels"]["required"]
            lines.append(f"| {fold['month']} | {fold['test_rows']} | {fold['base_rate']:.3f} | "
                         f"{_f(full['roc_auc'])} | {_f(req['roc_auc'])} | "
                         f"{_f(full['brier'], 4)} | {_f(full['ece'], 4)} |")
        lines += ["", "Mean over the months, per input level:", "",
                  "| inputs | ROC AUC | Brier | ECE |", "|---|---|---|---|"]
        for level in LEVELS:
            m = r["mean"][level]
            lines.append(f"| {level} ({LEVEL_TEXT[level]}) | {_f(m['roc_auc'])} | "
                         f"{_f(m['brier'], 4)} | {_f(m['ece'], 4)} |")
        lines.append("")
    if "notebook" in results:
        n = results["notebook"]
        lines += ["### The challenge notebook's random split (comparison only)", "",
                  "Flights of the same day sit on both sides of this split and share that "
                  "day's weather and incidents, so it rewards remembering the year's "
                  "particular days. It is reported because the challenge used it; features and "
                  "hyper-parameters were chosen on the forward protocols above.", "",
                  f"Threshold {n['threshold']:.3f}.", "", *_level_table(n["levels"], True), ""]
    return lines


def render_model_card(metadata: dict[str, Any], results: dict[str, Any],
                      frame: pd.DataFrame) -> str:
    period = metadata["training_period"]
    ds = metadata["dataset"]
    floor = metadata["threshold_min_recall"] + metadata.get("threshold_recall_margin", 0.0)
    drift = delay_drift(frame)
    months = period["months"]
    lines = [
        "# Model card: SCL flight-delay probability",
        "",
        f"Model `{metadata['model_version']}` (XGBoost {metadata['libraries']['xgboost']} "
        f"booster, `model.ubj`, {metadata['n_estimators']} trees), trained "
        f"{metadata['trained_at']} by `make train`. This card is rewritten by every training "
        "run; `GET /model` returns the same metadata and points here.",
        "",
        "## Intended use",
        "",
        "- Estimate the probability that a flight scheduled to leave Santiago de Chile (SCL) "
        "leaves **more than 15 minutes late**, before it departs, from facts known at booking "
        "or scheduling time: airline, flight type, month and optionally the scheduled "
        "departure and destination.",
        "- Rank and triage flights (which are likelier to be late), plan staff or rebooking "
        "buffers, show a calibrated risk to a traveller. `delayed` at the stored threshold "
        f"({metadata['threshold']:.3f}) favours recall of delays (at least {floor:.2f} on "
        f"validation at every input level, for {metadata['threshold_min_recall']:.2f} on new "
        "flights) over precision.",
        "",
        "## Out of scope",
        "",
        "- Deciding anything about one specific flight on its own: the model ranks better "
        "than chance, it does not know today's weather, air-traffic control or the inbound "
        "aircraft.",
        "- Predicting how late (minutes), cancellations, or flights not departing SCL.",
        "- Airlines or destinations outside the training vocabulary (the service refuses "
        "them with a 400).",
        "- Operational data after departure (Fecha-O and the other operation columns are the "
        "label, never an input).",
        "",
        "## Inputs",
        "",
        "| field | required | what the model uses |",
        "|---|---|---|",
        f"| OPERA | yes | the airline ({len(metadata['feature_spec']['airlines'])} known), "
        "one-hot |",
        "| TIPOVUELO | yes | I international / N national |",
        "| MES | yes | the scheduled month (must agree with Fecha-I when both are given) |",
        f"| Fecha-I | no | calendar facts of the scheduled departure, any year: "
        f"{', '.join(TIME_COLUMNS)}. {HOLIDAY_DOC} No column identifies a date of the "
        "training year (no day of year, no day of month). |",
        f"| SIGLADES | no | the destination ({len(metadata['feature_spec']['destinations'])} "
        "known), one-hot |",
        "",
        f"Required: {', '.join(REQUIRED_INPUTS)}. One booster answers every input level: it "
        "was trained on each flight four times with the optional inputs it lacks masked, so "
        "leaving an optional input out gives the best estimate without it (do not guess it).",
        "",
        "## Training data and period",
        "",
        f"- `{ds['path']}` (sha256 `{ds['sha256'][:12]}…`): {ds['rows_read']} rows read, "
        f"{ds['rows_used']} used; scheduled departures {period['first_departure']} to "
        f"{period['last_departure']} ({len(months)} month(s): {months[0]} to {months[-1]}).",
        f"- Label: delay_15 = operated more than 15 minutes after scheduled; rate "
        f"{metadata['base_rate']:.3f} over the period.",
    ]
    if drift:
        (e0, e1, er), (l0, l1, lr) = drift["early"], drift["late"]
        direction = "under" if lr > er else "over"
        lines.append(f"- **The delay rate drifts**: {er:.2f} from {e0} to {e1}, {lr:.2f} from "
                     f"{l0} to {l1}. A model that has not seen the later months {direction}-"
                     "predicts them (see the forward evaluation's calibration); the shipped "
                     "model is trained on the whole period, so its average matches the whole "
                     "period's rate, not a future season's.")
    lines += [
        "",
        "## Evaluation",
        "",
        "Two forward-in-time protocols choose features and hyper-parameters; the notebook "
        "split is the challenge's comparison. Each protocol fits on its training flights only "
        "(validation for early stopping and the threshold is carved from inside them) and "
        "scores the test flights once. Levels: required = OPERA, TIPOVUELO, MES; fecha / "
        "destination add one optional input; full = all inputs.",
        "",
        *_evaluation(results),
        "## Calibration",
        "",
        "Plain `binary:logistic` without resampling or class weights, so `delay_probability` "
        "estimates the delay rate directly; no post-hoc calibrator. ECE (10 equal-width bins) "
        "and mean predicted vs observed rate are in the tables above: on the notebook split "
        "the model is calibrated at every level; forward in time its calibration is as good "
        "as the next months' delay rate is like the past months' (the drift above), which is "
        "why the rolling table shows the delay rate next to ECE.",
        "",
        "## Limitations",
        "",
        f"- One period of one airport ({months[0]} to {months[-1]}): seasonality across "
        "years, new routes and airline changes are not learned; a forward protocol inside one "
        "year can never test a month the model has seen, so month effects are measured only "
        "against the previous months.",
        "- No weather, air-traffic, aircraft rotation or incident data: the largest causes of "
        "a particular day's delays are invisible to it, which bounds the ranking quality "
        "(ROC AUC about 0.65-0.70 forward in time).",
        "- Holidays come from the pinned `holidays` package's Chilean calendar; a departure "
        "before that calendar's first year or far in the future is encoded with no "
        "holidays.",
        "",
        "## How to retrain",
        "",
        "```",
        "make train FLIGHT_DATA=/path/to/flights.csv      # same columns as dataset_SCL.csv",
        "python -m training.train --data PATH --out DIR --holdouts temporal,rolling,notebook",
        "```",
        "",
        "Any period works (a partial or a later year): the forward holdouts are taken from "
        "the data's own months; too little data for one stops with a one-line message, and "
        "`--holdouts` (e.g. `notebook` or `none`) leaves protocols out. Same data and seed "
        "give a byte-identical `model.ubj`. The report with plots is in `report/`.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(path: Path, metadata: dict[str, Any], results: dict[str, Any],
                     frame: pd.DataFrame) -> Path:
    path.write_text(render_model_card(metadata, results, frame), encoding="utf-8")
    return path
