"""Entry point of the worker subprocesses in the tests: the real ``helpline worker``, plus the stub channel."""

from __future__ import annotations

import sys

from tests.workers.stub_channel import register

if __name__ == "__main__":
    register()
    from web.cli_processes import worker_main

    sys.exit(worker_main(sys.argv[1:]))
