"""Trial weights on S3: a real S3-API server process (moto's) on 127.0.0.1, with credentials checked, runs a
study whose artifacts are ``s3://bucket/prefix``; export, evaluate and the dashboard read them back. The
code under test finds the server only through the usual AWS environment variables."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from aiq_search.cli import main
from aiq_search.errors import ConfigError, StorageError
from aiq_search.export import verify_export
from aiq_search.study import open_artifact_store, resolve_location

boto3 = pytest.importorskip("boto3", reason="the s3 extra is not installed (pip install 'aiq-search[s3]')")

BUCKET = "aiq-weights"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str
    secret: str

    def client(self) -> Any:
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key_id,
                                              aws_secret_access_key=self.secret, region_name="us-east-1")

    def objects(self, prefix: str) -> dict[str, bytes]:
        client = self.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys if k.startswith(prefix)}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server (``moto_server``) as its own process, with one IAM user allowed s3:*, the bucket, and
    from then on every request's signature checked (so wrong credentials are refused as a real server refuses them)."""
    pytest.importorskip("moto.server", reason="moto's server is not installed (pip install 'moto[server]')")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        admin: dict[str, str] = {"endpoint_url": endpoint, "aws_access_key_id": "setup",
                                 "aws_secret_access_key": "setup", "region_name": "us-east-1"}
        iam = boto3.session.Session().client("iam", **admin)
        iam.create_user(UserName="aiq")
        key = iam.create_access_key(UserName="aiq")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="aiq", PolicyName="s3", PolicyDocument=json.dumps(policy))
        boto3.session.Session().client("s3", **admin).create_bucket(Bucket=BUCKET)
        enforce = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(enforce, timeout=10).close()
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """The AWS environment that points boto3 (here and in subprocesses) at the server, and nothing else."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    return s3_server


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("aiq-search: error: ") and err.count("\n") == 1, err
    return err


def test_s3_locations_are_recorded_as_written() -> None:
    assert resolve_location("s3://bucket/some/prefix") == "s3://bucket/some/prefix"
    assert resolve_location("relative") == str(Path("relative").resolve())
    with pytest.raises(ConfigError, match="names no bucket"):
        open_artifact_store("s3:///prefix")


def test_missing_bucket_and_refused_credentials_are_one_line_before_any_study(
        s3: S3Server, write_study: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = write_study("missing.toml", study={"artifacts": "s3://no-such-bucket/tiny"})
    assert main(["run", str(missing), "--no-progress"]) == 2
    err = _one_line_error(capsys)
    assert f"cannot write the artifacts store s3://no-such-bucket/tiny (S3 endpoint {s3.endpoint})" in err
    assert "the bucket 'no-such-bucket' does not exist" in err

    good = write_study(study={"artifacts": f"s3://{BUCKET}/refused"})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    assert main(["create", str(good)]) == 2
    assert "the credentials were refused (SignatureDoesNotMatch" in _one_line_error(capsys)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
    assert main(["launch", str(good), "--workers", "2"]) == 2
    assert "the credentials were refused (InvalidAccessKeyId" in _one_line_error(capsys)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(["run", str(good)]) == 2
    assert "no AWS credentials found; set AWS_ACCESS_KEY_ID" in _one_line_error(capsys)

    assert not (tmp_path / "study.db").exists()  # refused before the storage was touched
    assert s3.objects("refused/") == {}


@pytest.mark.slow
def test_study_export_evaluate_and_dashboard_read_weights_from_s3(
        s3: S3Server, write_study: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        check_recorded: Callable[[FrozenTrial], None]) -> None:
    location = f"s3://{BUCKET}/studies/tiny"
    path = write_study(study={"n_trials": 2, "artifacts": location})
    assert main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.user_attrs["aiq_search"]["artifacts"] == location  # recorded as written, no credentials
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2
    for trial in done:
        check_recorded(trial)
    stored = s3.objects("studies/tiny/")
    assert set(stored) == {f"studies/tiny/{t.user_attrs['weights_artifact_id']}" for t in done}  # probe gone

    out = tmp_path / "exports"
    assert main(["export", str(path), "--top", "2", "--out", str(out)]) == 0
    for trial in done:
        folder = out / f"trial-{trial.number:04d}"
        weights = (folder / "weights.safetensors").read_bytes()
        assert weights == stored[f"studies/tiny/{trial.user_attrs['weights_artifact_id']}"]
        assert verify_export(folder).equal
    capsys.readouterr()
    assert main(["evaluate", str(out / f"trial-{done[0].number:04d}")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("all equal")

    again = tmp_path / "again"
    assert main(["export", str(path), "--out", str(again), "--artifacts", location]) == 0
    assert main(["export", str(path), "--out", str(tmp_path / "elsewhere"),
                 "--artifacts", f"s3://{BUCKET}/elsewhere"]) == 2
    assert f"are not in s3://{BUCKET}/elsewhere; give the folder" in _one_line_error(capsys)

    _check_dashboard_serves_weights(path, done, stored)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _check_dashboard_serves_weights(path: Path, trials: list[FrozenTrial], stored: dict[str, bytes]) -> None:
    """The dashboard's artifact view downloads each trial's weights from the bucket."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "aiq_search.cli", "dashboard", str(path), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                (summary,) = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.2)
        study_id = summary["study_id"]
        shown = {t["number"]: t for t in json.loads(_get(f"{base}/api/studies/{study_id}?after=0"))["trials"]}
        for trial in trials:
            artifact_id = trial.user_attrs["weights_artifact_id"]
            listed = shown[trial.number]
            assert [a["artifact_id"] for a in listed["artifacts"]] == [artifact_id]
            served = _get(f"{base}/artifacts/{study_id}/{listed['trial_id']}/{artifact_id}")
            assert served == stored[f"studies/tiny/{artifact_id}"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_readers_name_the_store_when_the_server_refuses(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_artifact_store(f"s3://{BUCKET}/readers")  # readers probe nothing: errors come when used
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refused = open_artifact_store(f"s3://{BUCKET}/readers")
    with pytest.raises(StorageError, match=r"cannot read the artifacts store s3://aiq-weights/readers .*refused"):
        refused.open_reader("00000000-0000-0000-0000-000000000000")
    with pytest.raises(ArtifactNotFound, match=r"is not in s3://aiq-weights/readers"):
        store.open_reader("00000000-0000-0000-0000-000000000000")
