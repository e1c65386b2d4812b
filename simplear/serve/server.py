"""Run KServe's ModelServer for the SimpleAR model on given addresses, with the OpenAI route, errors and metrics."""

from __future__ import annotations

import socket

from fastapi import FastAPI
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model import BaseKServeModel
from kserve.model_server import app
from kserve.protocol.rest.server import RESTServer

from simplear.serve.body_limit import BodyLimit
from simplear.serve.disconnect import CancelOnDisconnect
from simplear.serve.errors import install_error_handlers
from simplear.serve.metrics import MeasureRoutes, ServeMetrics
from simplear.serve.model import SimpleARPredictor
from simplear.serve.openai_route import openai_router
from simplear.serve.request_body import CheckedDataPlane, PostOnly


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (IPv4 or IPv6 literal, or a name), listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


class SimpleARRESTServer(RESTServer):
    """KServe's REST server with the server's own error handlers registered after (so instead of) KServe's."""

    def _add_exception_handlers(self, app: FastAPI) -> None:
        """KServe's handlers, then ours: client errors answered and logged in one line (simplear.serve.errors)."""
        super()._add_exception_handlers(app)
        install_error_handlers(app)


class HostModelServer(ModelServer):
    """KServe's ModelServer, REST only, on the given addresses: KServe 0.21's RESTServer would bind 0.0.0.0.

    Its data plane reads request bodies as simplear.serve.request_body says (clear 400s for malformed ones).
    """

    def __init__(self, hosts: tuple[str, ...], http_port: int) -> None:
        super().__init__(http_port=http_port, enable_grpc=False, workers=1)
        self.hosts = hosts
        self.dataplane = CheckedDataPlane(model_registry=self.registered_models)

    def start(self, models: list[BaseKServeModel]) -> None:
        """Register the models, then run KServe's REST server on one socket per address until a signal stops it."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = SimpleARRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            access_log_format=self.access_log_format,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        sockets = [listening_socket(host, self.http_port) for host in self.hosts]
        self.register_signal_handler()
        self._rest_server.run(sockets=sockets)


def serve(model: SimpleARPredictor, metrics: ServeMetrics, hosts: tuple[str, ...], http_port: int,
          max_body_bytes: int) -> None:
    """Serve a loaded model on every host at http_port until a signal stops the server."""
    app.include_router(openai_router(model))
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(PostOnly)
    app.add_middleware(MeasureRoutes, metrics=metrics)
    app.add_middleware(CancelOnDisconnect)
    HostModelServer(hosts, http_port).start([model])
