"""The dashboard's web server: optuna-dashboard's WSGI app behind a guard, on a threaded wsgiref server.

optuna-dashboard has no authentication and its API changes studies (``DELETE /api/studies/1`` deletes
one), so a dashboard reachable from other machines is read-only unless writes are asked for: the guard
answers every method but GET, HEAD and OPTIONS with 403 (viewing needs only GET). The guard also keeps a
storage outage (a PostgreSQL restart) from turning into tracebacks: before a request reaches the
dashboard it checks the database, retries with backoff for a few seconds, and answers 503 with one line
if the database stays out of reach; the log gets one line when the outage starts and one when it ends.
The server binds its port when it is made, so a bad or busy port is a one-line error before anything is
announced.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import Engine

from aiq_search.errors import AiqSearchError, StorageError
from aiq_search.study import OutageError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_REASON = "this dashboard is read-only: start it with --allow-writes to change studies from it"
# What viewers are told during an outage; the database's own words, which name hosts, go to the log only.
OUTAGE_REASON = "the study storage is out of reach; try again shortly"
# Paths whose views never read the storage (every other one does: the page checks the schema version).
_STATIC_PATHS = ("/static/", "/favicon.ico")

T = TypeVar("T")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _log(line: str) -> None:
    print(f"aiq-search: {line}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- storage outages


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database could not be reached or dropped the
    connection, as opposed to a bug or a bad request."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (sqlalchemy.exc.OperationalError, OutageError)) or (
            isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def outage_reason(exc: BaseException) -> str:
    """The database's own words for an outage, on one line."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.orig is not None:
            return " ".join(str(seen.orig).split()) or type(seen.orig).__name__
        seen = seen.__cause__ or seen.__context__
    return " ".join(str(exc).split()) or type(exc).__name__


def retry_outages(call: Callable[[], T], *, within_s: float, what: str) -> T:
    """``call()``, retried with backoff while the database is out of reach, for up to ``within_s`` seconds;
    one line is logged when it first fails. After that the outage is a one-line `StorageError`."""
    deadline = time.monotonic() + within_s
    delay = 0.5
    logged = False
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_outage(exc):
                raise
            reason = outage_reason(exc)
            if time.monotonic() + delay > deadline:
                raise StorageError(f"the storage stayed out of reach for {within_s:g} s ({what}): {reason}") from None
            if not logged:
                _log(f"the storage is out of reach ({what}), retrying for up to {within_s:g} s: {reason}")
                logged = True
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


class DashboardGuard:
    """WSGI middleware around optuna-dashboard: refuses writes when ``read_only``, and answers 503 (one
    line) instead of letting a storage outage reach the dashboard, whose views log a traceback for it.

    ``engine`` is the storage's SQLAlchemy engine: it is checked before each request that reads the storage
    (a pooled connection with pre-ping, so about one round trip), and an outage that starts during a
    request (seen through SQLAlchemy's ``handle_error`` event) sends it through the same retry.
    """

    def __init__(self, app: WSGIApp, engine: Engine, *, read_only: bool, retry_s: float = 5.0) -> None:
        self.app, self.engine, self.read_only, self.retry_s = app, engine, read_only, retry_s
        self._request = threading.local()
        self._down_since: float | None = None
        self._lock = threading.Lock()
        event.listen(engine, "handle_error", self._on_error)

    def _on_error(self, context: Any) -> None:
        if not context.is_pre_ping and is_outage(context.sqlalchemy_exception or context.original_exception):
            self._request.outage = outage_reason(context.sqlalchemy_exception or context.original_exception)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if self.read_only and method not in READ_METHODS:
            return _answer(start_response, "403 Forbidden", READ_ONLY_REASON)
        path = environ.get("PATH_INFO", "")
        if path.startswith(_STATIC_PATHS):
            return self.app(environ, start_response)
        # only requests without a body can be sent again; others get one try
        deadline = time.monotonic() + (self.retry_s if method in READ_METHODS else 0.0)
        delay = 0.25
        while True:
            reason = self._check()
            if reason is None:
                status, headers, body = self._run(environ)
                reason = getattr(self._request, "outage", None) if status.startswith("5") else None
                if reason is None:
                    self._up()
                    start_response(status, headers)
                    return [body]
            self._down(reason)
            if time.monotonic() + delay > deadline:
                return _answer(start_response, "503 Service Unavailable", OUTAGE_REASON, [("Retry-After", "5")],
                               json_body=path.startswith("/api/"))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _check(self) -> str | None:
        """None when the database answers, else why not."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return None
        except (sqlalchemy.exc.SQLAlchemyError, OutageError) as exc:  # the storage's own wait may give up first
            if not is_outage(exc):
                raise
            return outage_reason(exc)

    def _run(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """The dashboard's whole answer, held back until it is known not to be an outage's 500."""
        self._request.outage = None
        started: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started[:] = [status, headers]  # an app may start again with exc_info, replacing them

        result = self.app(environ, start)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return started[0], started[1], body

    def _down(self, reason: str) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                _log(f"the study storage is out of reach, answering 503 until it is back: {reason}")

    def _up(self) -> None:
        with self._lock:
            if self._down_since is not None:
                _log(f"the study storage is back after {time.monotonic() - self._down_since:.0f} s")
                self._down_since = None


def _answer(start_response: Callable[..., Any], status: str, reason: str,
            headers: list[tuple[str, str]] | None = None, *, json_body: bool = True) -> list[bytes]:
    """One line: for the API as JSON shaped like optuna-dashboard's errors ({"reason": ...}), which its
    page displays; for a browser opening a page, as plain text."""
    body = (json.dumps({"reason": reason}) if json_body else reason).encode()
    kind = "application/json" if json_body else "text/plain; charset=utf-8"
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


# ----------------------------------------------------------------------------- the server


class _QuietHandler(WSGIRequestHandler):
    """Logs refused and failed requests only (the dashboard polls every few seconds; an outage's 503s are
    the guard's one line), without reverse DNS."""

    def address_string(self) -> str:
        return str(self.client_address[0])

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code)[:1] in ("4", "5") and str(code) != "503":
            super().log_request(code, size)


class DashboardServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server (as optuna-dashboard's ``run_server`` uses), one thread per request so that a slow
    storage does not block every viewer. Made by `bind`; the app is set once the storage is open."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family  # wsgiref's server is IPv4 only by default
        super().__init__(address, _QuietHandler)
        self.read_only = False  # set with the app: whether its guard refuses changes
        self.studies: list[str] = []  # the aiq-search studies whose figures were refreshed at startup

    @property
    def _host(self) -> str:
        host = self.server_address[0]
        if not isinstance(host, str):  # an IPv4 or IPv6 socket's address is (host, port, ...) with a str host
            raise TypeError(f"the dashboard server is bound to {self.server_address!r}, not an IP host and port")
        return host

    @property
    def url(self) -> str:
        host, port = self._host, self.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/dashboard"

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect (bound to 127.0.0.0/8 or ::1)."""
        return ipaddress.ip_address(self._host).is_loopback

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a browser that went away is no error
            super().handle_error(request, client_address)


def bind(host: str, port: int) -> DashboardServer:
    """A server bound to ``host``:``port`` (port 0: any free one), or a one-line error saying why not."""
    if not 0 <= port <= 65535:
        raise AiqSearchError(f"port must be between 1 and 65535, got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise AiqSearchError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        return DashboardServer((host, port), family)
    except OSError as exc:
        hint = " (another program, perhaps another dashboard, uses it: pick another --port)" \
            if exc.errno == errno.EADDRINUSE else ""
        raise AiqSearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
