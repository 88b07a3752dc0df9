"""The real file cut to January-September (as someone retraining on the data they have would)
trains, evaluates on its own span and reports: it used to end in a scikit-learn traceback
because the built-in October-December holdout was empty. The cut lives in a temp dir only."""

from __future__ import annotations

import csv
import json

import pytest

from training.train import main as train_main

pytestmark = pytest.mark.real_data


def test_january_to_september_trains_and_reports(real_data, tmp_path) -> None:
    cut = tmp_path / "jan_to_sep_2017.csv"
    months: list[str] = []
    with real_data.open(encoding="utf-8", newline="") as src, \
            cut.open("w", encoding="utf-8", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames, lineterminator="\n")
        writer.writeheader()
        for row in reader:
            if row["Fecha-I"][:7] <= "2017-09":
                writer.writerow(row)
                months.append(row["Fecha-I"][:7])
    out = tmp_path / "model"
    # Few trees: this checks the path, not the quality (test_real_data_targets does that).
    assert train_main(["--data", str(cut), "--out", str(out), "--max-rounds", "25"]) == 0
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training_period"]["months"] == [f"2017-{m:02d}" for m in range(1, 10)]
    assert meta["dataset"]["rows_used"] == len(months)
    temporal = meta["holdout_metrics"]["temporal"]
    # The last quarter of nine months is August and September.
    assert temporal["test_rows"] == sum(1 for m in months if m >= "2017-08")
    rolling = meta["holdout_metrics"]["rolling"]["months"]
    assert [f["month"] for f in rolling] == [f"2017-{k:02d}" for k in range(4, 10)]
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "2017-01 to 2017-09" in card
    assert (out / "report" / "rolling_origin.png").stat().st_size > 0
