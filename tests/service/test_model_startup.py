"""A missing or corrupt model stops start-up with a message naming the file, never serves.

In-process: ``create_app`` raises :class:`ArtifactError`. Real server: Gunicorn started on a
corrupt artifact exits non-zero with the reason in its log instead of answering requests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from server import GUNICORN, REPO_ROOT, free_port

from flask_app import create_app
from training.artifacts import METADATA_FILE, MODEL_FILE, ArtifactError


def flip_middle_byte(directory: Path) -> None:
    path = directory / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def drop_model(directory: Path) -> None:
    (directory / MODEL_FILE).unlink()


def drop_metadata(directory: Path) -> None:
    (directory / METADATA_FILE).unlink()


def truncate_metadata(directory: Path) -> None:
    path = directory / METADATA_FILE
    path.write_text(path.read_text()[:200])


def metadata_not_an_object(directory: Path) -> None:
    (directory / METADATA_FILE).write_text("[1, 2, 3]\n")


def threshold_out_of_range(directory: Path) -> None:
    path = directory / METADATA_FILE
    meta = json.loads(path.read_text())
    meta["threshold"] = 1.5
    path.write_text(json.dumps(meta))


# (id, how to break the artifact, file the message must name, words it must contain)
BREAKAGES: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("flipped-byte", flip_middle_byte, MODEL_FILE, "corrupt"),
    ("model-missing", drop_model, MODEL_FILE, "does not exist"),
    ("metadata-missing", drop_metadata, METADATA_FILE, "no metadata.json"),
    ("metadata-truncated", truncate_metadata, METADATA_FILE, "not valid JSON"),
    ("metadata-not-object", metadata_not_an_object, METADATA_FILE, "JSON object"),
    ("threshold-not-probability", threshold_out_of_range, METADATA_FILE, "threshold"),
]


@pytest.fixture
def broken_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


@pytest.mark.parametrize(("breaker", "file_name", "words"), [b[1:] for b in BREAKAGES],
                         ids=[b[0] for b in BREAKAGES])
def test_create_app_refuses_a_broken_artifact(broken_copy: Path, breaker, file_name: str,
                                              words: str) -> None:
    breaker(broken_copy)
    with pytest.raises(ArtifactError) as caught:
        create_app({"TESTING": True, "MODEL_DIR": str(broken_copy)})
    message = str(caught.value)
    assert file_name in message and words in message, message


def test_create_app_refuses_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "never-trained"
    with pytest.raises(ArtifactError, match=r"metadata\.json") as caught:
        create_app({"TESTING": True, "MODEL_DIR": str(missing)})
    assert str(missing) in str(caught.value)


def ready_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=1) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.server
@pytest.mark.parametrize(("breaker", "file_name", "words"), [BREAKAGES[0][1:], BREAKAGES[3][1:]],
                         ids=[BREAKAGES[0][0], BREAKAGES[3][0]])
def test_gunicorn_on_a_broken_artifact_exits_with_the_reason(
        broken_copy: Path, tmp_path: Path, breaker, file_name: str, words: str) -> None:
    breaker(broken_copy)
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1",
           "MODEL_DIR": str(broken_copy), "WEB_CONCURRENCY": "2"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([str(GUNICORN), "--config", "gunicorn.conf.py"],
                                   cwd=REPO_ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    served = []
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            status = ready_status(f"http://127.0.0.1:{port}")
            if status is not None:
                served.append(status)
            time.sleep(0.2)
        returncode = process.wait(timeout=5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    log = log_path.read_text(errors="replace")
    assert returncode != 0, log
    assert 200 not in served, "a server with a broken model must never report ready"
    assert file_name in log and words in log, log[-3000:]
    assert "ArtifactError" in log, log[-3000:]
