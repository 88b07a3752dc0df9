"""Stage 6: the human-readable evaluation in ``model_artifacts/report/``.

Writes ``metrics.json`` (everything the evaluation computed, curves included), ``report.md``
(the two-minute read) and PNG plots. Plots are drawn from ``metrics.json``'s curve points, so
``python -m training.report --model-dir model_artifacts [--data PATH]`` can redraw them later
without retraining (the data is only needed for the delay-rate plots).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xgboost as xgb

from training.artifacts import write_json
from training.evaluate import format_table
from training.features import FeatureSpec

PLOTS = ("roc.png", "precision_recall.png", "reliability.png", "rolling_origin.png",
         "feature_importance.png",
         "delay_rate_airline.png", "delay_rate_month.png", "delay_rate_period.png",
         "delay_rate_destination.png")
BASELINE_LABELS = {"ds_xgboost_oversampled": "DS: XGBoost on oversampled one-hot",
                   "logistic": "logistic regression (one-hot)"}
DPI = 90


def _split_results(results: dict[str, Any]) -> dict[str, Any]:
    """The protocols with one test set (and so curves): all but rolling origin."""
    return {k: v for k, v in results.items() if k != "rolling"}


def _curve_panels(results: dict[str, Any], kind: str, path: Path) -> None:
    results = _split_results(results)
    if not results:
        return
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        for key, pts in result["curves"].items():
            if kind not in pts:
                continue
            if key.startswith("baseline:"):
                label = BASELINE_LABELS.get(key.split(":", 1)[1], key)
                style = "--"
            else:
                auc = result["levels"][key]["roc_auc" if kind == "roc" else "pr_auc"]
                label, style = f"xgboost, {key} inputs ({auc:.3f})", "-"
            ax.plot(pts[kind]["x"], pts[kind]["y"], style, label=label)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ":", color="grey")
            ax.set(xlabel="false positive rate", ylabel="true positive rate")
        else:
            ax.axhline(result["test_rate"], ls=":", color="grey", label="base rate")
            ax.set(xlabel="recall (delayed)", ylabel="precision (delayed)")
        ax.set_title(f"{name} holdout")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _reliability(results: dict[str, Any], path: Path) -> None:
    results = _split_results(results)
    if not results:
        return
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        for key, pts in result["curves"].items():
            rel = pts["reliability"]
            if key.startswith("baseline:"):
                label = BASELINE_LABELS.get(key.split(":", 1)[1], key)
                ax.plot(rel["mean_predicted"], rel["observed"], "x--", label=label, alpha=0.7)
            else:
                ece = result["levels"][key]["ece"]
                ax.plot(rel["mean_predicted"], rel["observed"], "o-",
                        label=f"xgboost, {key} (ECE {ece:.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlabel="mean predicted probability (10 equal-width bins)",
               ylabel="observed delay rate", title=f"{name} holdout: reliability",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _rolling_plot(rolling: dict[str, Any], path: Path) -> None:
    """Per test month: ROC AUC per input level, and Brier / ECE (all inputs) with the month's
    delay rate, so a bad month can be told apart from a month unlike the ones before it."""
    folds = rolling["folds"]
    months = [f["month"] for f in folds]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for level in ("required", "fecha", "destination", "full"):
        aucs = [f["levels"][level]["roc_auc"] for f in folds]
        mean = rolling["mean"][level]["roc_auc"]
        axes[0].plot(months, [np.nan if a is None else a for a in aucs], "o-",
                     label=f"{level} (mean {_fmt(mean)})")
    axes[0].axhline(0.5, ls=":", color="grey")
    axes[0].set(title="rolling origin: ROC AUC on month k (trained on months < k)",
                xlabel="test month k", ylabel="ROC AUC")
    axes[0].legend(fontsize=8)
    axes[1].plot(months, [f["levels"]["full"]["brier"] for f in folds], "o-",
                 label="Brier, all inputs")
    axes[1].plot(months, [f["levels"]["full"]["ece"] for f in folds], "s-",
                 label="ECE, all inputs")
    axes[1].plot(months, [f["base_rate"] for f in folds], "^--", label="delay rate of month k")
    axes[1].plot(months, [f["train_rate"] for f in folds], "v:",
                 label="delay rate of months < k")
    axes[1].set(title="rolling origin: calibration against the month's delay rate",
                xlabel="test month k")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def importance_by_group(booster: xgb.Booster, spec: FeatureSpec) -> dict[str, float]:
    """Share of total gain per input group (airline one-hots summed, etc.)."""
    gain = booster.get_score(importance_type="total_gain")
    totals = dict.fromkeys(spec.group_names(), 0.0)
    for key, value in gain.items():
        index = int(key[1:]) if key.startswith("f") and key[1:].isdigit() else \
            spec.feature_names.index(key)
        totals[spec.feature_groups[index]] += value
    grand = sum(totals.values()) or 1.0
    return {k: v / grand for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def _importance(booster: xgb.Booster, spec: FeatureSpec, path: Path) -> dict[str, float]:
    groups = importance_by_group(booster, spec)
    gain = booster.get_score(importance_type="total_gain")
    named = {}
    for key, value in gain.items():
        index = int(key[1:]) if key.startswith("f") and key[1:].isdigit() else \
            spec.feature_names.index(key)
        named[spec.feature_names[index]] = value
    top = sorted(named.items(), key=lambda kv: -kv[1])[:20]
    total = sum(named.values()) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    axes[0].barh(list(groups)[::-1], list(groups.values())[::-1])
    axes[0].set(title="share of total gain by input", xlabel="share")
    axes[1].barh([k for k, _ in top][::-1], [v / total for _, v in top][::-1])
    axes[1].set(title="top 20 columns by total gain", xlabel="share")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return groups


def _rate_bar(frame: pd.DataFrame, column: str, path: Path, title: str,
              top: int | None = None, order: list | None = None) -> None:
    stats = frame.groupby(column)["delay_15"].agg(["mean", "size"])
    if top:
        stats = stats.sort_values("size", ascending=False).head(top)
    stats = stats.reindex(order) if order else stats.sort_values("mean")
    fig, ax = plt.subplots(figsize=(9, max(3.5, 0.28 * len(stats) + 1)))
    labels = [f"{k} (n={int(n)})" for k, n in zip(stats.index, stats["size"], strict=True)]
    ax.barh(labels, stats["mean"])
    ax.axvline(frame["delay_15"].mean(), ls=":", color="grey", label="overall rate")
    ax.set(xlabel="share of flights delayed > 15 min", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _rates(frame: pd.DataFrame, out: Path) -> None:
    _rate_bar(frame, "OPERA", out / "delay_rate_airline.png", "delay rate by airline")
    months = frame.assign(month=frame["Fecha-I"].dt.month)
    _rate_bar(months, "month", out / "delay_rate_month.png",
              "delay rate by scheduled month", order=sorted(months["month"].unique()))
    _rate_bar(frame, "period_day", out / "delay_rate_period.png",
              "delay rate by period of day (scheduled)",
              order=[p for p in ("morning", "afternoon", "night")
                     if p in set(frame["period_day"])])
    _rate_bar(frame, "SIGLADES", out / "delay_rate_destination.png",
              "delay rate by destination (30 busiest)", top=30)


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _md_table(results: dict[str, Any]) -> list[str]:
    lines = ["| holdout | model / inputs | ROC AUC | PR AUC | Brier | log loss | ECE | "
             "threshold | precision | recall | F1 | TP / FP / FN / TN |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in _split_results(results).items():
        rows = [(f"**xgboost / {lv}**", m) for lv, m in result["levels"].items()]
        rows += [(f"{BASELINE_LABELS.get(b, b)}", m)
                 for b, m in result.get("baselines", {}).items()]
        for label, m in rows:
            c = m["confusion"]
            lines.append(
                f"| {name} | {label} | {_fmt(m['roc_auc'])} | {_fmt(m['pr_auc'])} | "
                f"{_fmt(m['brier'], 4)} | {_fmt(m['log_loss'], 4)} | {_fmt(m['ece'], 4)} | "
                f"{_fmt(m['threshold'])} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | "
                f"{_fmt(m['f1'])} | {c['tp']} / {c['fp']} / {c['fn']} / {c['tn']} |")
    return lines


# Issue #14's targets: (protocol, level, metric, bound, "min"|"max"). Forward protocols first:
# they are the selection criterion; the notebook split is the challenge's comparison.
TARGETS: tuple[tuple[str, str, str, float, str], ...] = (
    ("temporal", "full", "roc_auc", 0.65, "min"),
    ("temporal", "required", "roc_auc", 0.60, "min"),
    ("rolling", "full", "roc_auc", 0.67, "min"),
    ("rolling", "required", "roc_auc", 0.62, "min"),
    ("notebook", "required", "roc_auc", 0.665, "min"),
    ("notebook", "required", "brier", 0.141, "max"),
    ("notebook", "full", "roc_auc", 0.71, "min"),
    ("notebook", "full", "brier", 0.135, "max"),
    *(("notebook", level, "ece", 0.02, "max") for level in ("required", "fecha",
                                                             "destination", "full")),
    *(("notebook", level, "recall", 0.60, "min") for level in ("required", "fecha",
                                                                "destination", "full")),
)


def target_rows(results: dict[str, Any]) -> list[tuple[str, str, float, float, bool]]:
    """(where, metric, bound, value, met) for every target whose protocol was run."""
    rows = []
    for protocol, level, metric, bound, kind in TARGETS:
        if protocol not in results:
            continue
        source = results[protocol]["mean"] if protocol == "rolling" else \
            results[protocol]["levels"]
        value = source[level][metric]
        ok = value is not None and (value >= bound if kind == "min" else value <= bound)
        where = f"{protocol} (mean of months)/{level}" if protocol == "rolling" else \
            f"{protocol}/{level}"
        rows.append((where, metric, bound, value, ok))
    return rows


def _rolling_md(rolling: dict[str, Any]) -> list[str]:
    lines = ["| test month k | flights | delay rate (months < k → k) | trees | "
             "ROC AUC required | fecha | destination | full | Brier full | ECE full |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in rolling["folds"]:
        lv = f["levels"]
        lines.append(f"| {f['month']} | {f['test_rows']} | {f['train_rate']:.3f} → "
                     f"{f['base_rate']:.3f} | {f['n_estimators']} | "
                     + " | ".join(_fmt(lv[level]["roc_auc"]) for level in
                                  ("required", "fecha", "destination", "full"))
                     + f" | {_fmt(lv['full']['brier'], 4)} | {_fmt(lv['full']['ece'], 4)} |")
    mean = rolling["mean"]
    lines.append(f"| **mean** | {rolling['test_rows']} | {rolling['mean_base_rate']:.3f} | | "
                 + " | ".join(f"**{_fmt(mean[level]['roc_auc'])}**" for level in
                              ("required", "fecha", "destination", "full"))
                 + f" | {_fmt(mean['full']['brier'], 4)} | {_fmt(mean['full']['ece'], 4)} |")
    return lines


def _side_by_side(results: dict[str, Any]) -> list[str]:
    """ROC AUC and Brier per level for every protocol run, one row per level."""
    names = [n for n in ("temporal", "rolling", "notebook") if n in results]
    head = "| inputs | " + " | ".join(f"{n} AUC | {n} Brier" for n in names) + " |"
    lines = [head, "|---|" + "---|---|" * len(names)]
    for level in ("required", "fecha", "destination", "full"):
        cells = []
        for n in names:
            m = results[n]["mean"][level] if n == "rolling" else results[n]["levels"][level]
            cells.append(f"{_fmt(m['roc_auc'])} | {_fmt(m['brier'], 4)}")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(results: dict[str, Any], metadata: dict[str, Any],
                    groups: dict[str, float]) -> str:
    ds = metadata["dataset"]
    dropped = sum(ds["dropped"].values())
    period = metadata.get("training_period", {})
    nb = results.get("notebook", {})
    lines = [
        "# SCL flight-delay model: evaluation report",
        "",
        f"Model `{metadata['model_version']}` trained {metadata['trained_at']} on "
        f"`{ds['path']}` (sha256 `{ds['sha256'][:12]}…`): {ds['rows_read']} rows read, "
        f"{ds['rows_used']} used ({dropped} dropped, reasons in metadata.json), scheduled "
        f"{period.get('first_departure', '?')} to {period.get('last_departure', '?')}. "
        f"Delay rate (delay_15) {metadata['base_rate']:.4f}. XGBoost "
        f"{metadata['libraries']['xgboost']}, {metadata['n_estimators']} trees, seed "
        f"{metadata['seed']}, training + evaluation {metadata['training_seconds']} s "
        "(2 threads). Model card: `../MODEL_CARD.md`.",
        "",
        "## Verdict",
        "",
        "Targets from issue #14 (forward protocols first: they choose features and "
        "hyper-parameters):",
        "",
        "| where | metric | target | reached | |",
        "|---|---|---|---|---|",
    ]
    for where, metric, bound, value, ok in target_rows(results):
        sign = ">=" if metric in ("roc_auc", "f1", "recall") else "<="
        lines.append(f"| {where} | {metric} | {sign} {bound} | {_fmt(value, 4)} | "
                     f"{'met' if ok else '**missed**'} |")
    lines += [
        "",
        "## The protocols side by side",
        "",
        "- **temporal**: train on the span's first three quarters, test on its last quarter "
        "(Jan–Sep → Oct–Dec for 2017).",
        "- **rolling**: rolling origin: for each month k from the fourth, train on the months "
        "before k (validation from inside them), test on month k; mean over the months.",
        "- **notebook**: the challenge's random split (`shuffle(random_state=111)`, "
        "`train_test_split(test_size=0.33, random_state=42)`): flights of the same day on "
        "both sides.",
        "",
        *_side_by_side(results),
        "",
        "**Why the notebook split is not the criterion.** People ask about flights that have "
        "not left yet, mostly on dates the model never saw. On the random split a test flight "
        "shares its day with training flights (same weather, same incidents), so any feature "
        "that names the day (day of year, day of month) scores well there and carries nothing "
        "to another year: 8 March 2027 would get whatever happened on 8 March 2017. Those "
        "features are gone; what the notebook-split AUC loses by it is the memorised-day "
        "signal, and the forward protocols, which measure the question the service answers, "
        "do better without them (docs/model.md has the with/without comparison).",
        "",
        "## How the model is built",
        "",
        "- **Inputs known before departure only**: airline (OPERA), flight type (TIPOVUELO), "
        "scheduled month (MES, recomputed from Fecha-I; the file's MES is the month of "
        "*operation*), optionally the scheduled departure Fecha-I, encoded as calendar facts "
        "that recur every year (weekday, hour, high season, Chilean public holidays: holiday, "
        "days to the next / since the last, long weekend), and the destination (SIGLADES). "
        "Fecha-O and the other operation columns only produce the label.",
        f"- **One booster, four input levels.** {metadata['training_scheme']} The same holds "
        "for the validation rows. So a request with only OPERA/TIPOVUELO/MES gets the model's "
        "best required-only estimate, and Fecha-I/SIGLADES sharpen it.",
        "- **Calibration**: plain `binary:logistic`, no oversampling or class weights, so "
        "probabilities estimate the delay rate directly (mean prediction vs observed rate and "
        "ECE below); no post-hoc calibrator is needed or stored.",
        "- **Imbalance is handled by the decision threshold**, stored once in metadata.json: "
        f"{metadata['threshold_rule']} Shipped threshold: **{metadata['threshold']:.3f}**.",
        "- **Hyper-parameters** are fixed (see metadata `params`, chosen on the forward "
        "protocols); the number of trees comes from early stopping (log loss, patience "
        f"{metadata['early_stopping']['patience']}) on the same validation split. Each holdout "
        "repeats this on its own training part only; the shipped model repeats it on all rows "
        "and is then refit on all rows with the chosen number of trees.",
        "",
    ]
    if "rolling" in results:
        lines += ["## Rolling origin, month by month", "", *_rolling_md(results["rolling"]), "",
                  "![rolling origin](rolling_origin.png)", ""]
    if _split_results(results):
        lines += [
            "## Holdout metrics",
            "",
            "Threshold metrics are for the delayed class. Baselines use only the required "
            "inputs; the DS model decides at 0.5 (its probabilities are inflated by "
            "oversampling), the logistic regression at a threshold chosen by our rule on its "
            "own validation split.",
            "",
            *_md_table(results),
        ]
    for name, result in _split_results(results).items():
        base = result.get("baselines", {}).get("base_rate")
        if base:
            lines.append(f"\n{name}: constant base-rate predictor ({base['rate']:.4f}) Brier "
                         f"{base['brier']:.4f}, log loss {base['log_loss']:.4f}.")
    if nb:
        req, full = nb["levels"]["required"], nb["levels"]["full"]
        lines += [
            "",
            f"Notebook holdout, mean prediction vs observed rate: required "
            f"{req['mean_predicted']:.4f} vs {req['observed_rate']:.4f}, full "
            f"{full['mean_predicted']:.4f} vs {full['observed_rate']:.4f}.",
        ]
    if "temporal" in results:
        tm = results["temporal"]
        lines += [
            "",
            f"Temporal holdout: the delay rate rises from {tm['train_rate']:.3f} (training "
            f"months) to {tm['test_rate']:.3f} (test months). A model that never saw those "
            "months cannot know this, so its calibration there is worse (ECE "
            f"{tm['levels']['full']['ece']:.3f} with all inputs, mean prediction "
            f"{tm['levels']['full']['mean_predicted']:.3f}) and recall at the threshold is "
            f"{min(m['recall'] for m in tm['levels'].values()):.3f} at its lowest level; the "
            "shipped model is trained on the whole period.",
        ]
    lines += [
        "",
        "## What drives it",
        "",
        "Share of total gain by input: " + ", ".join(f"{k} {v:.0%}" for k, v in groups.items())
        + ".",
        "",
        "## Plots",
        "",
        "- ![ROC](roc.png) ![PR](precision_recall.png)",
        "- ![reliability](reliability.png)",
        "- ![importance](feature_importance.png)",
        "- ![airline](delay_rate_airline.png) ![month](delay_rate_month.png)",
        "- ![period](delay_rate_period.png) ![destination](delay_rate_destination.png)",
        "",
        "## Caveats",
        "",
        "- Forward protocols inside one year test months the model never saw (MES beyond the "
        "training months falls into the last learned bin), so they are the pessimistic "
        "estimate; the shipped model is trained on every month.",
        "- One year of data (2017): no year-over-year validation is possible; retrain as new "
        "data arrives and watch the mean prediction against the observed rate.",
        "- Destinations or airlines absent from the training data cannot be requested (the "
        "service validates against the vocabularies in metadata.json).",
        "",
        "Full numbers, curves and validation details: `metrics.json`; reproduce with "
        "`make train`.",
        "",
    ]
    return "\n".join(lines)


def write_report(out_dir: str | Path, results: dict[str, Any], frame: pd.DataFrame | None,
                 booster: xgb.Booster, spec: FeatureSpec, metadata: dict[str, Any]) -> Path:
    """Write metrics.json, report.md and the PNGs; ``frame=None`` skips the data plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {"model_version": metadata["model_version"],
                                      "threshold": metadata["threshold"], "holdouts": results})
    _curve_panels(results, "roc", out / "roc.png")
    _curve_panels(results, "pr", out / "precision_recall.png")
    _reliability(results, out / "reliability.png")
    if "rolling" in results:
        _rolling_plot(results["rolling"], out / "rolling_origin.png")
    groups = _importance(booster, spec, out / "feature_importance.png")
    if frame is not None:
        _rates(frame, out)
    (out / "report.md").write_text(render_markdown(results, metadata, groups), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    from training.artifacts import ArtifactError, load_artifact
    from training.data import DataError, load_flights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="model_artifacts")
    parser.add_argument("--data", help="CSV for the delay-rate plots (default: $FLIGHT_DATA)")
    args = parser.parse_args(argv)
    try:
        artifact = load_artifact(args.model_dir)
        out = Path(args.model_dir) / "report"
        results = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["holdouts"]
        frame = None
        try:
            frame, _ = load_flights(args.data)
        except DataError as exc:
            print(f"note: skipping delay-rate plots: {exc}", file=sys.stderr)
        write_report(out, results, frame, artifact.booster, artifact.spec, artifact.metadata)
    except (ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
