"""Fixtures of the server tests; they live in server_support.py (a unique module name:
``import conftest`` would be ambiguous with tests/conftest.py)."""

from server_support import (  # noqa: F401
    backend,
    make_server,
    postgres,
    pytest_runtest_makereport,
    redis,
)
