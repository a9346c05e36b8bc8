from __future__ import annotations

from taskiq import AsyncBroker, InMemoryBroker, TaskiqScheduler
from taskiq.middlewares import SmartRetryMiddleware
from taskiq.schedule_sources import LabelScheduleSource

from app_api.core.settings import get_settings


def _make_broker() -> AsyncBroker:
    s = get_settings()
    retry = SmartRetryMiddleware(
        default_retry_count=5,
        default_delay=2,
        use_jitter=True,
        use_delay_exponent=True,
        max_delay_exponent=300,
    )
    if s.embedded_jobs:
        return InMemoryBroker(max_async_tasks=50).with_middlewares(retry)
    from taskiq_redis import RedisStreamBroker

    return RedisStreamBroker(
        url=s.redis_url, queue_name="wojia:jobs", consumer_group_name="wojia"
    ).with_middlewares(retry)


broker: AsyncBroker = _make_broker()
scheduler = TaskiqScheduler(broker=broker, sources=[LabelScheduleSource(broker)])
