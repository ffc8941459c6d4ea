"""Fixtures shared with the worker and settings suites (real worker processes, admin clients)."""

from __future__ import annotations

from tests.settings.conftest import app, sign_in  # noqa: F401
from tests.workers.conftest import file_settings, file_storage, redis, workers_factory  # noqa: F401
