"""The Docker deployment, tested without a Docker engine: the compose file's shape, and every command it
runs, run for real through the CLI against the local PostgreSQL server."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from aiq_search import export
from aiq_search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
AIQ_SERVICES = ("create-study", "worker", "dashboard", "export")
AIQ_SEARCH = Path(sys.executable).with_name("aiq-search")
_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[-?])([^}]*))?\})")


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ``$$``, ``${X}``, ``${X:-default}``, ``${X:?error}``."""
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = env.get(name, "")
        if operator in (":-", "-") and not value:
            return argument
        if operator in (":?", "?") and not value:
            raise KeyError(f"{name}: {argument}")
        return value

    return _VARIABLE.sub(substitute, node)


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def _compose(**env: str) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return _interpolate(raw, {**_env_example(), "POSTGRES_PASSWORD": "not-a-real-one", **env})


def test_compose_has_the_services_volumes_and_limits_it_promises() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", *AIQ_SERVICES}

    postgres = services["postgres"]
    assert postgres["env_file"] == ".env"
    assert any(v.startswith("pgdata:") for v in postgres["volumes"]) and "pgdata" in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert all(port.startswith("127.0.0.1:") for port in postgres["ports"])  # the .env.example default

    mounts = {name: {v.split(":")[1] for v in services[name]["volumes"] if v.startswith("artifacts:")}
              for name in AIQ_SERVICES}
    assert "artifacts" in compose["volumes"] and all(m == {"/srv/aiq/artifacts"} for m in mounts.values())

    worker = services["worker"]
    (gpu,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "container_name" not in worker and "ports" not in worker  # or --scale worker=N would clash
    assert worker["depends_on"]["create-study"]["condition"] == "service_completed_successfully"
    assert services["create-study"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["create-study"]["restart"] == "no"

    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]
    for name in AIQ_SERVICES:
        assert services[name]["environment"]["PGPASSWORD"] == "not-a-real-one"  # from .env, nowhere else


def test_no_password_is_written_in_the_repository() -> None:
    assert _env_example()["POSTGRES_PASSWORD"] == ""
    lines = [line for line in (ROOT / "docker-compose.yml").read_text().splitlines()
             if not line.lstrip().startswith("#")]
    assert [m for line in lines for m in re.findall(r"PASSWORD.*", line)] == [
        "PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env (see .env.example)}"]
    for name in AIQ_SERVICES:  # the storage URLs carry no credentials: libpq reads PGUSER / PGPASSWORD
        command = _compose()["services"][name]["command"]
        url = make_url(command[command.index("--storage") + 1])
        assert (url.username, url.password, url.host) == (None, None, "postgres")
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        _compose(POSTGRES_PASSWORD="")
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_dockerfile_builds_a_gpu_image_that_runs_as_a_user_with_the_cli_as_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")  # one line per instruction
    lines = [line.strip() for line in text.splitlines()]
    (base,) = [line for line in lines if line.startswith("FROM ")]
    assert base.startswith("FROM pytorch/pytorch:") and "cuda" in base
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["aiq-search"]' in lines
    assert any(line.startswith("RUN ") and "pip install" in line and ".[export]" in line for line in lines)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*")] == "*" and "!.env" not in ignored  # a whitelist: no .env, .venv, runs


@pytest.mark.parametrize("service", AIQ_SERVICES)
def test_every_compose_command_is_a_valid_cli_invocation(service: str) -> None:
    args = build_parser().parse_args(_compose()["services"][service]["command"])
    assert (getattr(args, "study", None) or args.study_file) == "studies/quickstart.toml"
    assert (ROOT / "studies" / "quickstart.toml").is_file()  # mounted at the containers' studies/


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2), else ``docker-compose`` (v1); neither needs an engine for ``config``."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (the other tests check the file)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    env = {**_env_example(), "POSTGRES_PASSWORD": "not-a-real-one"}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    result = subprocess.run([*compose, "--profile", "tools", "config", "--quiet"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in _env_example().items()))
    refused = subprocess.run([*compose, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr  # no password, no deployment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.postgres
def test_compose_commands_work_against_postgres(postgres_url: str, write_study, tmp_path: Path) -> None:
    """create-study, then a worker, the dashboard and export, as compose runs them, with only the
    PostgreSQL host and port pointed at the local server."""
    server = make_url(postgres_url)
    study_file = write_study(study={"n_trials": 2})
    compose = _compose(AIQ_STUDY=str(study_file), POSTGRES_DB=server.database, POSTGRES_USER=server.username,
                       POSTGRES_PASSWORD=server.password or "unused-with-trust-auth")
    env = {**os.environ, **compose["services"]["worker"]["environment"]}

    def command(service: str) -> list[str]:
        args = list(compose["services"][service]["command"])
        i = args.index("--storage") + 1
        args[i] = make_url(args[i]).set(host=server.host, port=server.port).render_as_string()
        return args

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    run([str(AIQ_SEARCH), *command("create-study")])
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    assert study.user_attrs["aiq_search"]["config"]["data"]["dataset"] == "digits" and not study.trials

    run([str(AIQ_SEARCH), *command("worker")])
    assert sum(t.state == TrialState.COMPLETE for t in study.get_trials()) == 2

    args = command("dashboard")
    args[args.index("--host") + 1] = "127.0.0.1"  # the container's 0.0.0.0, kept to this machine here
    args[args.index("--port") + 1] = str(port := _free_port())
    server_process = subprocess.Popen([str(AIQ_SEARCH), *args], cwd=tmp_path, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as response:
                    listed = [s["study_name"] for s in json.load(response)["study_summaries"]]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # not up yet, or slow to answer
                assert server_process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert listed == ["tiny"]
    finally:
        server_process.terminate()
        server_process.wait(timeout=10)

    run([str(AIQ_SEARCH), *command("export")])
    (folder,) = (tmp_path / "exports").iterdir()
    assert export.verify_export(folder).equal
