"""Fixtures shared with the worker and settings suites (real worker processes, admin clients)."""

from __future__ import annotations

from tests.email.conftest import dovecot, imap_user  # noqa: E402, F401
from tests.settings.conftest import app, sign_in  # noqa: F401
from tests.workers.conftest import (  # noqa: F401
    file_settings,
    file_storage,
    wk,  # noqa: E402, F401
    workers_factory,
)
