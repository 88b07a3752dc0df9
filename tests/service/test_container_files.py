"""The Docker image, checked without a Docker engine (there is none on the build machine).

The image must start exactly as ``make serve`` does, hold every file the service imports, and
its HEALTHCHECK command must really tell a live server from a dead one. These tests read the
Dockerfile and .dockerignore as text and rebuild the image's /app from its COPY lines, so
an import added without a COPY fails here instead of in the GitHub docker job.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from server import free_port
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()
MODEL_FILES = ("model_artifacts/metadata.json", "model_artifacts/model.ubj",
               "model_artifacts/model.onnx")


def instruction(name: str) -> list[str]:
    """Lines of one Dockerfile instruction, with backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines()
            if line.split(None, 1)[:1] == [name]]


def context_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not ``--from``)."""
    copies = []
    for args in instruction("COPY"):
        parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        copies.append((parts[:-1], parts[-1]))
    return copies


def test_image_starts_exactly_like_make_serve():
    cmd = json.loads(instruction("CMD")[-1])
    # Under `make test` the parent make's MAKEFLAGS/MAKELEVEL would make this one print
    # "make[1]: ..." lines; a clean environment prints only the recipe.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    recipe = subprocess.run(["make", "--no-print-directory", "-n", "serve"], cwd=REPO, env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    recipe = [line for line in recipe.splitlines() if "gunicorn" in line][-1]
    served = shlex.split(recipe)
    assert Path(served[0]).name == cmd[0] == "gunicorn"
    assert served[1:] == cmd[1:] == ["--config", "gunicorn.conf.py"]


def test_image_runs_as_non_root():
    user = instruction("USER")[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerignore_lets_every_copied_path_in():
    """An allow-list .dockerignore: each COPY source must be re-included (``!path``)."""
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines()
             if r.strip() and not r.startswith("#")]
    for sources, _ in context_copies():
        for source in sources:
            if source.startswith("/"):
                continue
            included = False
            for rule in rules:  # last matching rule wins, as in Docker
                negate = rule.startswith("!")
                pattern = rule.lstrip("!").rstrip("/")
                if fnmatch.fnmatch(source.rstrip("/"), pattern):
                    included = negate
            assert included, f"COPY {source} is excluded by .dockerignore"
    assert "!requirements-dev.txt" not in rules  # the image gets the runtime only


@pytest.fixture
def image_app_dir(tmp_path: Path) -> Path:
    """The image's /app: only what the COPY lines bring in (the model comes from the test)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for sources, dest in context_copies():
        if dest.startswith("/tmp"):
            continue  # the requirements file, used by pip in the build stage only
        for source in sources:
            if source in MODEL_FILES:
                continue
            src = REPO / source
            target = (app_dir / dest).resolve()  # "./" is /app itself (WORKDIR)
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
    return app_dir


def test_the_copied_files_are_enough_to_build_the_app(image_app_dir, tiny_model_dir):
    code = ("from flask_app import create_app; "
            f"app = create_app({{'MODEL_DIR': {str(tiny_model_dir)!r}}}); "
            "print(app.test_client().post('/predict', json={'OPERA': 'Sky Airline', "
            "'TIPOVUELO': 'N', 'MES': 3}).status_code)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=image_app_dir, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "200"
    assert not (image_app_dir / "tests").exists()


def test_model_files_the_image_copies_exist():
    missing = [f for f in MODEL_FILES if not (REPO / f).is_file()]
    if missing:
        pytest.skip(f"{missing} not trained yet (make train): the image build needs them")
    for _, dest in context_copies():
        assert not dest.startswith("model_artifacts/report")


def test_healthcheck_command_tells_up_from_down(app):
    """Runs the HEALTHCHECK's own command against the app on a local port, then a dead one."""
    check = instruction("HEALTHCHECK")[-1]
    assert "/health" in check
    argv = json.loads(check.split("CMD", 1)[1].strip())
    assert argv[0] == "python"
    command = [sys.executable, *argv[1:]]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        up = subprocess.run(command, env={**os.environ, "PORT": str(server.server_port)},
                            capture_output=True, timeout=30)
        assert up.returncode == 0, up.stderr
    finally:
        server.shutdown()
        thread.join(timeout=10)
    down = subprocess.run(command, env={**os.environ, "PORT": str(free_port())},
                          capture_output=True, timeout=30)
    assert down.returncode != 0
