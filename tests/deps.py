"""Install what the suite needs beyond pip: Debian packages for the real servers and the browser.

Run by the README's test command (``python -m tests.deps``). Idempotent; does nothing when all is present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# (binary that proves the package is installed, Debian package)
APT_PACKAGES = [
    ("/usr/sbin/dovecot", "dovecot-imapd"),
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/redis-server", "redis-server"),
]


def main() -> int:
    missing = [pkg for path, pkg in APT_PACKAGES if not os.path.exists(path)]
    if not missing:
        print("tests.deps: all system packages present")
        return 0
    if not shutil.which("apt-get"):
        print(f"tests.deps: cannot install {missing}: no apt-get on this machine", file=sys.stderr)
        return 1
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"tests.deps: installing {' '.join(missing)}")
    update = subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, check=False)
    if update.returncode != 0:
        print("tests.deps: apt-get update failed; trying the install anyway", file=sys.stderr)
    result = subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, check=False
    )
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
