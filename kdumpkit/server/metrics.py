"""Prometheus metrics, counted from the database at each scrape: every worker's work shows
whichever process answers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from kdumpkit.server.db import DONE, FAILED, QUEUED, RUNNING, UNREADABLE, Dump
from kdumpkit.server.work import Context


class DatabaseCollector(Collector):
    """Dumps received, bytes, queue depth, analysis time, failures."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self):  # type: ignore[no-untyped-def]
        with self.ctx.sessions() as session:
            received, size = session.execute(
                select(func.count(Dump.id), func.coalesce(func.sum(Dump.size), 0))
            ).one()
            by_status = dict(
                session.execute(select(Dump.status, func.count()).group_by(Dump.status)).all()
            )
            analysed, seconds = session.execute(
                select(
                    func.count(Dump.id), func.coalesce(func.sum(Dump.analysis_seconds), 0.0)
                ).where(Dump.analysis_seconds.is_not(None))
            ).one()
        yield CounterMetricFamily("kdumpkit_dumps_received", "Dumps stored", value=received)
        yield CounterMetricFamily("kdumpkit_dump_bytes_received", "Bytes stored", value=size)
        depth = GaugeMetricFamily(
            "kdumpkit_queue_depth", "Dumps waiting or being analysed", labels=["status"]
        )
        for status in (QUEUED, RUNNING):
            depth.add_metric([status], by_status.get(status, 0))
        yield depth
        outcomes = CounterMetricFamily(
            "kdumpkit_analyses", "Finished analyses by outcome", labels=["status"]
        )
        for status in (DONE, FAILED, UNREADABLE):
            outcomes.add_metric([status], by_status.get(status, 0))
        yield outcomes
        yield CounterMetricFamily(
            "kdumpkit_analysis_failures", "Analyses failed", value=by_status.get(FAILED, 0)
        )
        yield SummaryMetricFamily(
            "kdumpkit_analysis_seconds",
            "Time per analysis",
            count_value=analysed,
            sum_value=float(seconds or 0.0),
        )


def render(ctx: Context) -> str:
    """The exposition text."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(ctx))
    return generate_latest(registry).decode()
