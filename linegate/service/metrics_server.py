"""The metrics endpoint: a small threaded HTTP server inside the supervisor process.

It serves prometheus_client's text exposition of one registry holding the collector; each request
runs in its own short-lived daemon thread, so a scrape never waits in the supervisor's loop and a
slow client never holds up the stop. Binding can fail (port in use, address not on this host):
:func:`serve_metrics` logs ``metrics_unavailable`` naming the key and the line keeps inspecting.
"""

from __future__ import annotations

import errno
import socket
import socketserver
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.registry import Collector

from linegate.config.schema import MetricsSection

CLIENT_TIMEOUT_S = 5.0
"""A client that sends or reads nothing for this long is dropped."""
POLL_S = 0.1
"""How often the serving thread looks for a stop request (bounds how long :meth:`MetricsServer.stop` takes)."""


class _QuietHandler(WSGIRequestHandler):
    """No access log: a scrape every few seconds would flood the journal."""

    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True  # a restart right after a stop binds again (TIME_WAIT); never two listeners

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name (socket.getfqdn), which can take
        # seconds on a plant network without DNS: the name is only used in CGI variables.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``GET /metrics`` on *host*:*port* from a registry holding *collector*, until :meth:`stop`."""

    def __init__(self, collector: Collector, host: str, port: int) -> None:
        """Binds at once: raises OSError (port in use, address not here) before any thread starts."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        family, address = _address(host, port)
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        self._server = server_class(address, _QuietHandler)
        self._server.set_app(make_wsgi_app(registry))
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_S}, name="metrics-http", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port; a request still running finishes in its own thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _address(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """The address family and socket address to bind *host* (an address or a name) to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def unavailable(exc: OSError, host: str, port: int) -> tuple[str, str]:
    """The configuration key to look at and an operator's sentence for a failed bind."""
    if isinstance(exc, socket.gaierror):
        return "metrics.host", f"{host!r} cannot be resolved to an address on this host ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return "metrics.port", f"port {port} is already in use on {host} (another linegate instance or exporter?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "metrics.host", f"{host} is not an address of this host"
    if exc.errno == errno.EACCES:
        return "metrics.port", f"port {port} needs privileges linegate does not have (use a port above 1023)"
    return "metrics.host", f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def serve_metrics(section: MetricsSection, collector: Collector, log: Any) -> MetricsServer | None:
    """Start the endpoint if enabled; None when disabled or when it cannot listen (logged, not fatal)."""
    if not section.enabled:
        return None
    try:
        server = MetricsServer(collector, section.host, section.port)
    except OSError as exc:
        key, reason = unavailable(exc, section.host, section.port)
        log.error("metrics_unavailable", key=key, host=section.host, port=section.port, reason=reason,
                  action="inspecting without the metrics endpoint")
        return None
    log.info("metrics_listening", url=server.url)
    return server


__all__ = ["MetricsServer", "serve_metrics", "unavailable"]
