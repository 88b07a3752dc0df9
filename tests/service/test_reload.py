"""SIGHUP reloads the model without a failed request; a corrupt model never takes over.

Gunicorn stops the old workers as soon as it has forked the new ones, so requests that arrive
while the new workers boot wait in the listen backlog: slower (about a worker's boot time), but
none is refused. The client timeouts here are generous because CI boxes can be loaded.

A real 2-worker server takes steady concurrent traffic while MODEL_DIR is replaced and the
master gets SIGHUP. Every request must succeed; afterwards /model and every live worker (the
model-info gauge) report the new version. A corrupt model must be refused with a logged error
while the old version keeps serving, and a later good model must still be picked up.
"""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import build_tiny_artifact
from tests.server import running_server, wait_until
from tests.service.test_metrics import total, wait_for_model_info, worker_pids

LOADED = re.compile(r"loaded by worker pid (\d+)")

FLIGHT = {"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3, "SIGLADES": "Lima"}


class Traffic:
    """Client threads posting /predict back to back, recording every failure and version."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as session:  # keep-alive, as a real client or proxy would
            while not self.stop.is_set():
                try:
                    started = time.perf_counter()
                    resp = session.post(f"{self.url}/predict", json=FLIGHT, timeout=60)
                    if resp.status_code == 200:
                        with self.lock:
                            self.slowest = max(self.slowest, time.perf_counter() - started)
                            version = resp.json()["model_version"]
                            self.versions[version] = self.versions.get(version, 0) + 1
                        continue
                    failure = f"{resp.status_code}: {resp.text[:200]}"
                except requests.RequestException as exc:
                    failure = repr(exc)
                with self.lock:
                    self.failures.append(failure)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def served(self) -> int:
        with self.lock:
            return sum(self.versions.values())


def model_version(url: str) -> str:
    return requests.get(f"{url}/model", timeout=60).json()["model_version"]


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


@pytest.mark.server
def test_sighup_swaps_the_model_under_traffic_without_a_failed_request(model_dir, tmp_path):
    with running_server(model_dir, tmp_path, workers=2) as server:
        old = model_version(server.url)
        wait_for_model_info(server.url, old, 2)
        new = build_tiny_artifact(tmp_path / "staging", seed=1)["model_version"]
        assert new != old
        with Traffic(server.url) as traffic:
            assert wait_until(lambda: traffic.served() > 50)
            build_tiny_artifact(model_dir, seed=1)
            server.process.send_signal(signal.SIGHUP)
            assert wait_until(lambda: model_version(server.url) == new)
            samples = wait_for_model_info(server.url, new, 2, gone=(old,))
            seen_new = traffic.versions.get(new, 0)
            assert wait_until(lambda: traffic.versions.get(new, 0) > seen_new + 50)
        print(f"reload under traffic: {traffic.served()} requests, slowest "
              f"{traffic.slowest:.2f}s, versions {traffic.versions}")
        assert traffic.failures == []
        assert traffic.versions.get(old, 0) > 0 and traffic.versions.get(new, 0) > 0
        # Every live worker serves the new model; the retired ones left the gauge.
        assert total(samples, "scl_delay_model_info", version=new) == 2
        assert total(samples, "scl_delay_model_info", version=old) == 0
        assert "model reload: new workers serve version " + new in server.log()
        assert server.process.poll() is None


@pytest.mark.server
def test_a_corrupt_model_is_refused_and_the_old_one_keeps_serving(model_dir, tmp_path):
    with running_server(model_dir, tmp_path, workers=2) as server:
        old = model_version(server.url)
        with Traffic(server.url, threads=2) as traffic:
            assert wait_until(lambda: traffic.served() > 20)
            model_file = model_dir / "model.ubj"
            model_file.write_bytes(model_file.read_bytes()[:100])  # truncated write
            server.process.send_signal(signal.SIGHUP)
            assert wait_until(lambda: "model reload refused" in server.log())
            # Gunicorn still replaces the workers; the new ones boot the previous snapshot.
            # Wait until both new workers have loaded it and both old ones have exited: before
            # that a scrape can count the old workers as the "2 live workers" it expects.
            assert wait_until(lambda: len(LOADED.findall(server.log())) >= 4)
            first = [int(pid) for pid in LOADED.findall(server.log())[:2]]
            assert wait_until(lambda: not set(first) & set(worker_pids(server.process.pid)))
            samples = wait_for_model_info(server.url, old, 2)
            assert total(samples, "scl_delay_model_info", version=old) == 2
            served = traffic.served()
            assert wait_until(lambda: traffic.served() > served + 20)
        assert traffic.failures == []
        assert set(traffic.versions) == {old}
        assert server.process.poll() is None
        assert "does not match the sha256" in server.log()
        assert model_version(server.url) == old

        # Fixing MODEL_DIR and sending SIGHUP again picks the good model up.
        new = build_tiny_artifact(model_dir, seed=2)["model_version"]
        server.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: model_version(server.url) == new)


@pytest.mark.server
def test_reloads_keep_at_most_two_snapshots_and_exit_removes_them(model_dir, tmp_path):
    """Each SIGHUP copies the model to a new snapshot; older ones must not pile up on disk,
    and a stopped server leaves none of its temporary directories behind."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    def ours(prefix: str) -> list[Path]:
        return sorted(scratch.glob(f"{prefix}*"))

    with running_server(model_dir, tmp_path, workers=1, env={"TMPDIR": str(scratch)}) as server:
        assert len(ours("scl-delay-model-")) == 1
        assert len(ours("scl-delay-metrics-")) == 1
        for reloads in range(1, 4):
            server.process.send_signal(signal.SIGHUP)
            assert wait_until(
                lambda n=reloads: server.log().count("model reload: new workers serve") == n)
            snapshots = ours("scl-delay-model-")
            # The snapshot now served and the one before it (a worker may still be reading it).
            assert len(snapshots) == min(reloads + 1, 2)
            served = server.log().rsplit("from snapshot ", 1)[1].split()[0]
            assert Path(served) in snapshots
        assert model_version(server.url)  # still serving after three reloads
    assert ours("scl-delay-") == []
