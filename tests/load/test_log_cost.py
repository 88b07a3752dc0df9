"""``make bench-log``'s arithmetic, and one very short real run (tiny model, two rounds).

As in test_bench.py, no speed is asserted: it belongs to the machine. What is tested is that
each round boots its own servers, that the quiet arm really writes no request line, and that
the summary and its verdict say what the rounds measured.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from load import log_cost


def _rows(shares: list[float], arm: str = "log", quiet_rps: float = 1000.0) -> list[dict]:
    rows = []
    for round_no, share in enumerate(shares, 1):
        rows.append({"round": round_no, "arm": "quiet", "rps": quiet_rps, "errors": 0,
                     "cpu_us": 200.0})
        rows.append({"round": round_no, "arm": arm, "rps": quiet_rps * share, "errors": 0,
                     "cpu_us": 200.0 / share})
    return rows


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_rounds() -> None:
    few = [0.93, 0.97, 0.95, 0.99, 0.91]
    low, high = log_cost.bootstrap_mean(few)
    assert low < statistics.fmean(few) < high
    assert low >= 0.91 and high <= 0.99  # a mean never leaves the values' range
    many_low, many_high = log_cost.bootstrap_mean(few * 8)
    assert many_high - many_low < (high - low) * 0.6  # ~1/sqrt(8) as wide
    assert log_cost.bootstrap_mean([1.0, 1.0, 1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError):
        log_cost.bootstrap_mean([0.9])


@pytest.mark.parametrize(("shares", "verdict"), [
    ([0.97, 0.98, 0.96, 0.99, 0.97, 0.98], "met"),  # every plausible mean costs < 5 %
    ([0.90, 0.91, 0.92, 0.90, 0.91, 0.92], "missed"),  # every plausible mean costs > 5 %
    ([0.90, 1.00, 0.92, 0.98, 0.93, 0.97], "not shown either way"),  # 5 % inside the interval
])
def test_the_verdict_follows_the_interval_not_the_mean(shares: list[float], verdict: str) -> None:
    summary = log_cost.summarise(_rows(shares))
    log = summary["arms"]["log"]
    assert summary["rounds"] == len(shares) and log["rounds"] == len(shares)
    assert log["mean_share"] == pytest.approx(statistics.fmean(shares), abs=1e-4)
    assert log["median_share"] == pytest.approx(statistics.median(shares), abs=1e-4)
    assert log["share_range"] == [min(shares), max(shares)]
    assert summary["verdict"] == verdict


def test_each_arm_is_compared_with_the_quiet_server_of_its_own_round() -> None:
    # The machine halves its speed in round 2: the shares stay put, req/s does not.
    rows = [{"round": 1, "arm": "quiet", "rps": 1000.0, "errors": 0, "cpu_us": 100.0},
            {"round": 1, "arm": "log", "rps": 950.0, "errors": 0, "cpu_us": 105.0},
            {"round": 1, "arm": "control", "rps": 1020.0, "errors": 0, "cpu_us": 98.0},
            {"round": 2, "arm": "control", "rps": 490.0, "errors": 0, "cpu_us": 210.0},
            {"round": 2, "arm": "quiet", "rps": 500.0, "errors": 0, "cpu_us": 200.0},
            {"round": 2, "arm": "log", "rps": 475.0, "errors": 0, "cpu_us": 210.0}]
    summary = log_cost.summarise(rows)
    assert set(summary["arms"]) == {"log", "control"}  # quiet is the reference, not an arm
    log, control = summary["arms"]["log"], summary["arms"]["control"]
    assert log["share_range"] == [0.95, 0.95] and log["share_95"] == [0.95, 0.95]
    assert log["mean_extra_cpu_us"] == 7.5  # (5 + 10) / 2
    assert log["mean_extra_cpu_share"] == pytest.approx(0.05)  # 5 % more CPU in both rounds
    assert control["share_range"] == [0.98, 1.02] and control["rounds_faster_than_quiet"] == 1
    assert summary["verdict"] == "met"


def test_a_round_without_its_quiet_server_is_left_out() -> None:
    rows = [*_rows([0.96, 0.97]),
            {"round": 3, "arm": "log", "rps": 10.0, "errors": 0, "cpu_us": None}]
    assert log_cost.summarise(rows)["arms"]["log"]["rounds"] == 2


def test_every_arm_boots_first_equally_often() -> None:
    names = [arm.name for arm in log_cost.arms(control=True, baseline=Path("/elsewhere"))]
    assert names == ["log", "quiet", "control", "baseline"]
    firsts = [log_cost.round_order(names, r)[0] for r in range(1, 9)]
    assert sorted(firsts) == sorted(names * 2)
    assert all(sorted(log_cost.round_order(names, r)) == sorted(names) for r in range(8))


def test_only_the_quiet_arm_turns_the_log_off() -> None:
    plan = log_cost.arms(control=False, baseline=None)
    assert [(a.name, a.quiet) for a in plan] == [("log", False), ("quiet", True)]


@pytest.mark.parametrize("flags", [["--rounds", "1"], ["--duration", "0"], ["--history", "-1"],
                                   ["--baseline", "/nonexistent"]])
def test_a_run_that_cannot_give_an_interval_is_refused(flags: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        log_cost.main([*flags, "--json", str(tmp_path / "out.json")])
    assert stopped.value.code == 2
    assert not (tmp_path / "out.json").exists()


@pytest.mark.server
def test_a_short_run_boots_new_servers_every_round(tiny_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if log_cost.wrk.WRK is None:
        pytest.skip("wrk is not installed (Debian: apt-get install -y wrk; .ci/run installs it)")
    out = tmp_path / "log_cost.json"
    code = log_cost.main(["--rounds", "2", "--duration", "1", "--warmup", "0", "--control",
                          "--history", "1", "--model-dir", str(tiny_model_dir),
                          "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["history_s"] == 1
    rows = report["rows"]
    assert sorted((r["round"], r["arm"]) for r in rows) == [
        (1, "control"), (1, "log"), (1, "quiet"), (2, "control"), (2, "log"), (2, "quiet")]
    assert all(r["rps"] > 0 and r["errors"] == 0 and r["cpu_us"] > 0 for r in rows)
    # The log-on servers wrote a line per request (and per readiness probe); quiet ones none.
    for row in rows:
        if row["arm"] == "quiet":
            assert row["request_lines"] == 0
        else:
            # Every history prediction and measured /health request has its line.
            assert row["request_lines"] >= row["requests"] + row["history_requests"]
        assert row["history_requests"] > 0
    summary = report["summary"]
    assert set(summary["arms"]) == {"log", "control"} and summary["rounds"] == 2
    assert summary["verdict"] in {"met", "missed", "not shown either way"}
    printed = capsys.readouterr().out
    assert "The log's cost <= 5% of /health:" in printed and "round 2:" in printed
