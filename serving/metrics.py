"""Prometheus metrics: requests, latency histograms per route, the served index version, swaps.

Each app has its own registry, so several servers (tests) in one process never
collide. The middleware is plain ASGI (no BaseHTTPMiddleware overhead) and
labels by route template, never by raw path, to keep label cardinality fixed.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("imgsim_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("imgsim_http_request_seconds", "time to answer a request", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.index_version = Gauge("imgsim_index_version", "served index version (0 when none)", registry=r)
        self.index_vectors = Gauge("imgsim_index_vectors", "vectors in the served index", registry=r)
        self.index_loaded = Gauge("imgsim_index_loaded", "1 when an index version is served", registry=r)
        self.swaps = Gauge("imgsim_index_swaps_total", "index versions swapped in after the first", registry=r)
        self.swap_failures = Gauge("imgsim_index_swap_failures_total", "index versions that failed to load or verify",
                                   registry=r)
        self.refused = Gauge("imgsim_index_version_refused", "1 for each version refused, with the reason",
                             ["version", "reason"], registry=r)
        self.degraded = Gauge("imgsim_index_degraded",
                              "1 while the served version is not CURRENT's store copy (fallback in use)", registry=r)
        self.current_ok = Gauge("imgsim_index_current_readable", "1 when CURRENT names a version on disk",
                                registry=r)
        self.from_backup = Gauge("imgsim_index_served_from_backup", "1 when the served copy comes from BACKUP_DIR",
                                 registry=r)
        self.checks = Gauge("imgsim_index_integrity_checks_total", "re-checks of the served version's checksums",
                            registry=r)
        self.check_failures = Gauge("imgsim_index_integrity_failures_total",
                                    "re-checks that found the served version's files damaged", registry=r)
        self.check_ok = Gauge("imgsim_index_integrity_ok", "1 when the last re-check found the served files sound",
                              registry=r)
        self.db_up = Gauge("imgsim_database_up", "1 when the database answered the last query", registry=r)
        self.event_relations = Counter("imgsim_event_relations", "events whose verified pairs were loaded for the "
                                       "duplicate routes, by source: precomputed (the version's relations files) "
                                       "or computed (by the server)", ["source"], registry=r)
        self.event_relations_seconds = Counter("imgsim_event_relations_seconds", "time spent loading events' "
                                               "verified pairs, by source", ["source"], registry=r)
        self.filter_skipped = Gauge("imgsim_deleted_filter_skipped_total",
                                    "searches answered without the deleted-image check (database down)", registry=r)

    def observe_holder(self, holder: Any) -> None:
        """Copy the holder's state into gauges (called after every refresh)."""
        current = holder.current
        self.index_version.set(current.version if current is not None else 0)
        self.index_vectors.set(current.count if current is not None else 0)
        self.index_loaded.set(1 if current is not None else 0)
        self.swaps.set(holder.stats.swaps)
        self.swap_failures.set(holder.stats.failures)
        self.degraded.set(1 if holder.degraded else 0)
        self.current_ok.set(1 if holder.pointer.version is not None else 0)
        self.from_backup.set(1 if current is not None and current.source == "backup" else 0)
        self.checks.set(holder.integrity.checks)
        self.check_failures.set(holder.integrity.failures)
        self.check_ok.set(0 if holder.integrity.last_problem else 1)
        self.refused.clear()
        for version, reason in holder.stats.failed_versions.items():
            self.refused.labels(version=str(version), reason=reason[:200]).set(1)


class MetricsMiddleware:
    """Count and time every request by (method, route template, status)."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "?")
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
