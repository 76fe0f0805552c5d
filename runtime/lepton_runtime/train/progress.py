"""Live progress on a Prometheus endpoint (rank 0 only: one scrape target per job)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server


class Progress:
    """Gauges for epoch, step, loss, throughput and accuracy of the running job."""

    def __init__(self, job: str, port: int | None) -> None:
        self.registry = CollectorRegistry()
        prefix = f"lepton_{job}"
        self.epoch = Gauge(f"{prefix}_epoch", "Current epoch (from 1)", registry=self.registry)
        self.step = Gauge(f"{prefix}_step", "Optimizer steps done", registry=self.registry)
        self.loss = Gauge(
            f"{prefix}_loss", "Training loss of the last step", registry=self.registry
        )
        self.samples_per_second = Gauge(
            f"{prefix}_samples_per_second",
            "Training throughput, all workers",
            registry=self.registry,
        )
        self.accuracy = Gauge(
            f"{prefix}_accuracy", "Test accuracy after the last epoch", registry=self.registry
        )
        self.port: int | None = None
        self._server: WSGIServer | None = None
        if port:
            self._server, _ = start_http_server(port, registry=self.registry)
            self.port = int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving (in-process callers such as tests run many jobs)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
