"""Celery: the app the server sends tasks with and workers run them in.

Late acknowledgement (``task_acks_late``), no acknowledgement of a failed or timed-out task
(``task_acks_on_failure_or_timeout=False``) and ``task_reject_on_worker_lost``: a task
whose worker dies goes back to the broker for another worker.  With Redis, a worker killed
whole (``kill -9`` of the main process) leaves its message unacknowledged until the
transport's visibility timeout; the server's lease sweep (:func:`work.stale_dumps`) sends
such a dump again sooner, and :func:`work.claim`/:func:`work.complete` make the second
delivery harmless.
"""

from __future__ import annotations

from functools import cache

from celery import Celery

from kdumpkit.server.config import ServerConfig

TASK = "kdumpkit.analyse"
QUEUE = "kdumpkit"


def make_celery(config: ServerConfig) -> Celery:
    """The Celery app for this server's broker."""
    app = Celery("kdumpkit", broker=config.broker_url, set_as_current=False)
    transport: dict[str, object] = {}
    if not config.embedded_broker:
        # unacknowledged Redis messages come back after this long (the lease sweep is faster);
        # kombu's SQLAlchemy transport hands its options to create_engine: none for it
        transport["visibility_timeout"] = max(60, int(config.time_limit * 2))
    app.conf.update(
        task_acks_late=True,
        task_acks_on_failure_or_timeout=False,
        task_reject_on_worker_lost=True,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        worker_send_task_events=False,
        task_time_limit=config.time_limit + 60,
    )

    @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def analyse(self: object, dump_id: int) -> str:
        from kdumpkit.server.work import analyse_dump

        return analyse_dump(_context(), dump_id)

    return app


@cache
def _context():  # type: ignore[no-untyped-def]
    from kdumpkit.server.work import Context

    return Context.open(ServerConfig.from_environ())


def run_worker(config: ServerConfig, concurrency: int = 1, loglevel: str = "WARNING") -> None:
    """``celery worker`` on this process (prefork pool of ``concurrency`` processes)."""
    import os
    import warnings

    from celery.exceptions import SecurityWarning

    # Celery warns a root worker; the task takes only JSON, never pickle.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    os.environ.update(config.to_environ())
    _context()  # migrate before taking tasks
    app = make_celery(config)
    app.worker_main(
        [
            "--quiet",
            "worker",
            f"--loglevel={loglevel}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--queues={QUEUE}",
        ]
    )
