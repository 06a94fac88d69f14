"""Where trials keep their weights: one place opens a study's Optuna artifact store from its location.

A location is a folder (Optuna's `FileSystemArtifactStore`; shared, e.g. over NFS, when workers run on
several machines) or ``s3://bucket/prefix`` on any S3-compatible server (Optuna's `Boto3ArtifactStore`),
which every node of a cluster reaches without a shared file system. The S3 endpoint and credentials come
from boto3's usual sources (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws``), never from the study file or the study's record, so no secret is stored.
"""

from __future__ import annotations

import io
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from aiq_search.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from optuna.artifacts import Boto3ArtifactStore

__all__ = ["S3_SCHEME", "ArtifactFolder", "S3ArtifactStore", "is_s3", "make_artifact_folder", "open_artifact_store",
           "resolve_location"]

S3_SCHEME = "s3://"
S3_INSTALL_HINT = "pip install 'aiq-search[s3]'"
# Seconds to wait for an S3 server to accept a connection (boto3's default is 60, retried).
S3_CONNECT_TIMEOUT_S = 10
# The object written and deleted at study start to prove the bucket is there and writable.
_PROBE_PREFIX = ".aiq-search-probe-"


def is_s3(location: str) -> bool:
    """Whether ``location`` names an S3 bucket (``s3://bucket/prefix``) rather than a folder."""
    return str(location).startswith(S3_SCHEME)


def resolve_location(location: str) -> str:
    """The location as recorded with a study: an absolute folder, so every process finds the same one; an
    ``s3://`` location is already the same everywhere and stays as it is."""
    if is_s3(location):
        return location
    return str(Path(location).expanduser().resolve())


def _split_s3(location: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` → ``("bucket", "some/prefix")``."""
    bucket, _, prefix = location[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise ConfigError(f"artifacts location {location!r} names no bucket; write s3://bucket or s3://bucket/prefix")
    return bucket, prefix.strip("/")


class S3ArtifactStore:
    """Optuna's `Boto3ArtifactStore` under a key prefix (artifact ``id`` is the object ``prefix/id``), with
    the server's refusals turned into one-line `StorageError`s. Implements Optuna's artifact store protocol
    (``open_reader``, ``write``, ``remove``), so Optuna and optuna-dashboard use it as any store."""

    def __init__(self, location: str, store: Boto3ArtifactStore, endpoint: str) -> None:
        self.location = location
        self.bucket, self.prefix = _split_s3(location)
        self.store = store
        self.endpoint = endpoint

    def key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        try:
            return self.store.open_reader(self.key(artifact_id))
        except ArtifactNotFound as exc:  # Optuna reads any 404 as a missing object: a missing bucket is too
            if _error_code(exc.__cause__) == "NoSuchBucket":
                raise self._refused("read", exc.__cause__) from None
            raise ArtifactNotFound(f"artifact {artifact_id} is not in {self.location}") from None
        except _boto_errors() as exc:
            raise self._refused("read", exc) from None

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        try:
            self.store.write(self.key(artifact_id), content_body)
        except _boto_errors() as exc:
            raise self._refused("write", exc) from None

    def remove(self, artifact_id: str) -> None:
        try:
            self.store.remove(self.key(artifact_id))
        except _boto_errors() as exc:
            raise self._refused("remove from", exc) from None

    def probe(self) -> None:
        """Write and delete one small object: a missing bucket or refused credentials show now, at study
        start, not after a trial has trained."""
        probe = f"{_PROBE_PREFIX}{uuid.uuid4().hex}"
        self.write(probe, io.BytesIO(b"aiq-search"))
        try:
            self.remove(probe)
        except StorageError:  # may write but not delete: enough for a study (only the dashboard deletes)
            pass

    def _refused(self, doing: str, exc: BaseException | None) -> StorageError:
        return StorageError(f"cannot {doing} the artifacts store {self.location} (S3 endpoint {self.endpoint}): "
                            f"{_explain(exc, self.bucket)}")


def _boto_errors() -> tuple[type[Exception], ...]:
    """What boto3 raises when a request fails (imported late: boto3 is an optional extra)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _error_code(exc: BaseException | None) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _explain(exc: BaseException | None, bucket: str) -> str:
    """One line saying why the S3 server (or boto3 before it) refused."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ("no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, "
                "~/.aws/credentials)")
    code = _error_code(exc)
    message = getattr(exc, "response", {}).get("Error", {}).get("Message", "") if code else ""
    if code == "NoSuchBucket":
        return f"the bucket {bucket!r} does not exist"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AccessDenied",
                "InvalidClientTokenId", "403"):
        return f"the credentials were refused ({code}{': ' + message if message else ''})"
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {text}"


def _open_s3(location: str, create: bool) -> S3ArtifactStore:
    _split_s3(location)  # a location without a bucket is refused before boto3 is needed
    try:
        import boto3
        from botocore.config import Config
        from optuna.artifacts import Boto3ArtifactStore
    except ImportError:
        raise ConfigError(f"artifacts on {location} need boto3, which is not installed: {S3_INSTALL_HINT}") from None
    # a session of its own: reads the environment now (boto3's default session keeps what it read first)
    client: Any = boto3.session.Session().client("s3", config=Config(connect_timeout=S3_CONNECT_TIMEOUT_S))
    bucket, _ = _split_s3(location)
    store = S3ArtifactStore(location, Boto3ArtifactStore(bucket, client=client), client.meta.endpoint_url)
    if create:
        store.probe()
    return store


def _unwritable(path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write to the artifacts folder {path}: {exc.strerror or exc}")


class ArtifactFolder(FileSystemArtifactStore):
    """Optuna's `FileSystemArtifactStore`, whose folder is made when it is first needed (the first artifact
    written, or `make`), not when it is opened: a study that is refused leaves no folder behind."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path

    def make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(self.path, exc) from None

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.make()
        super().write(artifact_id, content_body)


def _check_writable(path: Path) -> None:
    """That ``path`` is, or can be made, a folder this process writes to, found without making it: a
    temporary file in the folder, else in its nearest existing parent (which must be a folder)."""
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise _unwritable(path, exc) from None


def open_artifact_store(location: str, *, create: bool = False) -> ArtifactFolder | S3ArtifactStore:
    """The artifact store at ``location`` (a folder, or ``s3://bucket/prefix``). ``create`` is for a study that
    writes: it proves the folder can be made and written (it is made at the first write, or by
    `make_artifact_folder` once the study is accepted), or that the bucket is there and writable, so a bad
    location is one line before any trial trains, and nothing is left behind when the study is refused.
    Readers get a one-line error when a folder is not there or not a folder (and an S3 store's errors are
    one line when it is used)."""
    if is_s3(location):
        return _open_s3(location, create)
    path = Path(location).expanduser()
    if create:
        _check_writable(path)
    elif not path.is_dir():
        raise StorageError(f"the artifacts folder {path} is not on this machine (or is not a folder); give "
                           "the folder that holds the trials' weights with --artifacts")
    return ArtifactFolder(path)


def make_artifact_folder(location: str) -> None:
    """Make the artifacts folder of a study that was accepted (an S3 location needs none), so readers find
    it before the first trial has written to it."""
    if not is_s3(location):
        ArtifactFolder(Path(location).expanduser()).make()
