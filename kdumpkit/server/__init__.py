"""``kdumpkit server``: every dump of a fleet stored on arrival, analysed by Celery workers,
grouped into problems by versioned crash signatures, browsed on server-rendered pages and
a JSON API.

Layers inside the package: ``config`` (settings) < ``db`` (SQLAlchemy models, Alembic) <
``store`` (dump files) < ``analysis`` (the one adapter onto kdumpkit's report) <
``signatures`` < ``work`` (claim, analyse, complete, retention) < ``tasks`` (Celery) <
``web`` (FastAPI: API, pages, metrics).
"""
