"""Prometheus metrics of one server, with the official client library and a registry of its own."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Latency buckets from 1 ms to 10 s: a drawn digit takes a few ms, a 12-MP photo a second.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Requests, errors, latency, and the size and duration of each model call."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, max_batch_size: int) -> None:
        # A registry per server, so that several apps in one process (tests) do not collide.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mnist_requests", "HTTP requests answered.", ["method", "endpoint", "status"], registry=self.registry
        )
        self.errors = Counter(
            "mnist_request_errors", "Requests answered with a 4xx or 5xx status.", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mnist_request_duration_seconds", "Time from request to response.", ["endpoint"], buckets=_LATENCY, registry=self.registry
        )
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        self.batch_size = Histogram(
            "mnist_batch_size", "Images per model call.", buckets=[size for size in sizes if size <= max(max_batch_size, 256)], registry=self.registry
        )
        self.model_seconds = Histogram(
            "mnist_model_call_duration_seconds", "Time one model call takes.", buckets=_LATENCY, registry=self.registry
        )
        self.images = Counter("mnist_images", "Images classified.", registry=self.registry)

    def observe_request(self, *, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def observe_batch(self, images: int, seconds: float) -> None:
        """Count one model call."""
        self.batch_size.observe(images)
        self.model_seconds.observe(seconds)
        self.images.inc(images)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
