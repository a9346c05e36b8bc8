"""Request metrics, recorded by the request middleware and exported at ``/metrics``."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("wojia_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "wojia_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Load shedding (app_api.core.shedding): requests being served, and requests answered 503 at once.
IN_FLIGHT = Gauge(
    "wojia_http_in_flight", "HTTP requests in flight in this process", multiprocess_mode="livesum"
)
SHED = Counter("wojia_http_shed_total", "HTTP requests shed (503 app.overloaded)", ["kind"])
