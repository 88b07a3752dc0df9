"""``make bench``'s arithmetic, and one very short real run of it (tiny model, two rounds).

The speed numbers themselves are not asserted anywhere: they belong to the machine the bench
runs on. What is tested is that the report says what the runs measured.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from load import bench, wrk

SCENARIO = bench.Scenario("single", "POST /predict, 1 flight", "single", users=4)


def test_percentile_reads_the_pooled_histogram() -> None:
    histogram = Counter({10: 50, 20: 45, 30: 4, 200: 1})  # 100 requests
    assert bench.percentile(histogram, 0.50) == 10
    assert bench.percentile(histogram, 0.51) == 20
    assert bench.percentile(histogram, 0.95) == 20
    assert bench.percentile(histogram, 0.99) == 30
    assert bench.percentile(histogram, 1.0) == 200
    assert math.isnan(bench.percentile(Counter(), 0.99))


def test_stats_of_several_endpoints_pool_into_one_sample() -> None:
    entries = [
        {"num_requests": 30, "num_failures": 1, "start_time": 100.0,
         "last_request_timestamp": 109.0, "response_times": {"5": 20, "7": 10}},
        {"num_requests": 10, "num_failures": 0, "start_time": 101.0,
         "last_request_timestamp": 110.0, "response_times": {"7": 4, "120": 6}},
        {"num_requests": 0, "num_failures": 0, "start_time": 90.0,
         "last_request_timestamp": None, "response_times": {}},
    ]
    sample = bench.sample_from_stats(entries)
    assert (sample.requests, sample.failures, sample.seconds) == (40, 1, 10.0)
    assert sample.histogram == Counter({5: 20, 7: 14, 120: 6})
    assert sample.rps == 4.0


def test_rounds_pool_into_one_result_with_per_round_ratios() -> None:
    fast = bench.Sample(300, 0, 10.0, Counter({10: 300}))
    slow = bench.Sample(100, 2, 10.0, Counter({40: 99, 90: 1}))
    result = bench.pool(SCENARIO, [fast, slow], warmup_failures=1)
    assert (result.requests, result.failures, result.rps) == (400, 3, 20.0)
    assert result.rps_by_round == [30.0, 10.0]
    assert (result.p50_ms, result.p99_ms) == (10.0, 40.0)
    health = bench.pool(bench.Scenario("health", "GET /health", "health", 4),
                        [bench.Sample(400, 0, 10.0, Counter({5: 400})),
                         bench.Sample(200, 0, 10.0, Counter({5: 200}))])
    assert bench.round_ratios(result, health) == [0.75, 0.5]
    # No CPU figures in these samples: the result says "not measured", not zero.
    assert result.server_cpu_us_per_request is None and result.server_cores is None


def test_server_cpu_pools_into_microseconds_per_request_and_cores() -> None:
    rounds = [bench.Sample(300, 0, 10.0, Counter({10: 300}), server_cpu_s=0.3),
              bench.Sample(100, 0, 10.0, Counter({40: 100}), server_cpu_s=0.5)]
    result = bench.pool(SCENARIO, rounds)
    assert result.server_cpu_us_per_request == 2000  # 0.8 s / 400 requests
    assert result.server_cores == 0.04  # 0.8 s over 20 s
    # One round without a measurement makes the whole figure unknown rather than too low.
    rounds[1].server_cpu_s = None
    assert bench.pool(SCENARIO, rounds).server_cpu_us_per_request is None


@pytest.mark.server
def test_a_short_bench_run_reports_every_scenario_and_round(tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    code = bench.main(["--duration", "2", "--rounds", "2", "--warmup", "0", "--users", "2",
                       "--wrk-duration", "1", "--wrk-connections", "4", "--wrk-history", "1",
                       "--model-dir", str(tiny_model_dir), "--reports", str(tmp_path)])
    assert code == 0  # no failures anywhere
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [r["scenario"] for r in report["results"]] == [
        "bare", "health", "single", "single_unique", "batch100", "batch1000"]
    assert report["rounds"] == 2 and report["workers"] >= 1
    for result in report["results"]:
        assert len(result["rps_by_round"]) == 2
        assert result["requests"] > 0 and result["failures"] == 0
        assert len(result["share_of_health_by_round"]) == 2
        # The server did the work of every request, so its CPU per request is above zero.
        assert result["server_cpu_us_per_request"] > 0 and result["server_cores"] > 0
    assert (tmp_path / "bench" / "single_r2.json").exists()
    table = (tmp_path / "bench.md").read_text()
    assert "% by round" in table and "POST /predict, batch of 1,000" in table
    assert "server CPU µs/request" in table
    # The wrk scenarios: every one ran without errors, each with its share of the bare route.
    rows = report["wrk"]
    assert [r["scenario"] for r in rows] == [
        "bare", "bare_project", "health", "health_quiet", "single", "single_new", "batch1000"]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
    assert rows[0]["share_of_bare"] == 1.0 and all(r["share_of_bare"] > 0 for r in rows)
    assert rows[1]["share_of_bare_project"] == 1.0
    # Both /health servers, the log on and off, served the prediction mix before round 1; the
    # rows of servers that are not compared on /health carry no history.
    health, quiet = rows[2], rows[3]
    assert health["history_requests"] > 0 and quiet["history_requests"] > 0
    assert all("history_requests" not in r for r in (rows[0], rows[1]))
    # Each round says how the bare server's workers split its CPU.
    assert len(rows[0]["worker_split"]) == report["workers"]
    # Every new flight was new: more distinct bodies than requests.
    new = rows[5]
    assert new["distinct_bodies"] >= new["requests"] and "note" not in new
    startup = report["startup"]
    assert 0 < startup["first_ready_s"] <= startup["start_to_ready_s"]
    assert all(m["rss_mib"] > 0 for m in startup["memory_after"])


@pytest.mark.server
def test_chosen_scenarios_run_on_both_checkouts(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``--wrk-scenarios`` runs only the named scenarios, ``--baseline-scenarios`` picks which
    of them also run on the ``--baseline`` checkout (here: this one again), row after row."""
    code = bench.main(["--rounds", "0", "--wrk-rounds", "2", "--wrk-duration", "1",
                       "--wrk-connections", "4", "--wrk-scenarios", "bare,health",
                       "--wrk-history", "0",
                       "--baseline-scenarios", "health", "--baseline", str(bench.REPO_ROOT),
                       "--model-dir", str(tiny_model_dir), "--reports", str(tmp_path)])
    assert code == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["wrk"]
    assert [(r["round"], r["scenario"]) for r in rows] == [
        (1, "bare"), (1, "health"), (1, "baseline_health"),
        (2, "bare"), (2, "health"), (2, "baseline_health")]
    assert all(r["requests"] > 0 and r["errors"] == 0 and r["share_of_bare"] > 0 for r in rows)
    assert all("history_requests" not in r for r in rows)  # --wrk-history 0: none sent


@pytest.mark.parametrize("flags", [["--rounds", "0", "--wrk-rounds", "0"], ["--duration", "0"],
                                   ["--wrk-duration", "0"], ["--wrk-history", "-1"],
                                   ["--wrk-scenarios", "health,nope"],
                                   ["--baseline-scenarios", "nope"]])
def test_a_bench_with_nothing_to_measure_is_refused(flags: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.main([*flags, "--reports", str(tmp_path)])
    assert stopped.value.code == 2
    assert not (tmp_path / "bench.json").exists()


WRK_REPORT = """Running 10s test @ http://127.0.0.1:8000
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.42ms    1.03ms  20.32ms   87.33%
    Req/Sec    10.01k   412.39    10.55k    92.00%
  Latency Distribution
     50%  850.00us
     75%    6.68ms
     90%    7.27ms
     99%    1.20s{space}
  99595 requests in 10.00s, 15.01MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:   9958.98
Transfer/sec:      1.50MB
""".format(space=" ")  # wrk pads a percentile in seconds with a trailing space


def test_wrk_reports_are_read_with_their_units_and_errors() -> None:
    sample = wrk.parse_wrk(WRK_REPORT)
    assert (sample.requests, sample.seconds, sample.errors) == (99595, 10.0, 6)
    assert sample.p50_ms == pytest.approx(0.85) and sample.p99_ms == pytest.approx(1200.0)
    assert sample.rps == pytest.approx(9959.5)
    with pytest.raises(ValueError):
        wrk.parse_wrk("wrk: connection refused")
