"""Benchmark Helpline's IMAP ingest with the shared harness (../shared/bench/imap, read its README).

The harness loads N generated support mails into a private Dovecot on loopback, times one command, then scores
the ``<Message-ID>\\t<ticket id>`` export against its manifest (tickets, replies threaded, missing, duplicates).
Helpline plugs in with its own CLI, so the measured path is the product's:

    reset:  fresh data folder, ``helpline db upgrade``, ``helpline inbox add email ...``
    ingest: ``helpline inbox sync bench``            (timed, includes the process start-up)
    export: ``helpline export message-map --inbox bench``

With ``--references`` it also runs the harness's ``raw_fetch.py`` (bare fetch, and fetch + stdlib parse) with
this interpreter, so the ratios come from the same sitting.

    python bench/imap_ingest.py [--n 1000 5000] [--runs 3] [--harness ../shared/bench/imap] [--references]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HARNESS = REPO.parent / "shared" / "bench" / "imap"


def helpline_command() -> str:
    script = Path(sys.executable).with_name("helpline")
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m web.cli"


def product_env(data_dir: Path) -> dict[str, str]:
    helpline = helpline_command()
    data = shlex.quote(str(data_dir))
    reset = (
        f"rm -rf {data} && mkdir -p {data} && {helpline} db upgrade >/dev/null && "
        f'{helpline} inbox add email --name bench --address "$IMAP_USER" --imap-host "$IMAP_HOST" '
        f'--imap-port "$IMAP_PORT" --imap-security none --username "$IMAP_USER" --password-env IMAP_PASSWORD'
    )
    return {
        "NAME": "helpline",
        "RESET_CMD": reset,
        "INGEST_CMD": f"{helpline} inbox sync bench",
        "EXPORT_CMD": f"{helpline} export message-map --inbox bench",
        "HELPLINE_DATA_DIR": str(data_dir),
        "SECRET_KEY": "benchmark-only-secret",
        "PYTHONPATH": str(REPO),
    }


def run_product(harness: Path, n: int, label: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(harness / "product_ingest.sh"), str(n), label],
        env=os.environ | env,
        cwd=harness,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_reference(harness: Path, parse: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(harness / "raw_fetch.py"), *([] if parse else ["--no-parse"])]
    eval_env = subprocess.run([str(harness / "dovecot.sh"), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for line in eval_env.splitlines():
        key, _, value = line.partition("=")
        env[key.strip()] = shlex.split(value)[0] if value else ""
    out = subprocess.run(cmd, env=env, cwd=harness, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def attachment_counts(harness: Path, data_dir: Path) -> tuple[int, int]:
    """Attachments in the manifest of the last load vs. attachment rows with stored content in the last run's DB."""
    manifest = json.loads((harness / "run" / "manifest.json").read_text())
    expected = sum(int(m.get("attachments", 0)) for m in manifest["messages"])
    with sqlite3.connect(data_dir / "helpline.db") as db:
        stored = db.execute("SELECT count(*) FROM attachment WHERE sha256 IS NOT NULL").fetchone()[0]
    return expected, int(stored)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--harness", type=Path, default=DEFAULT_HARNESS)
    parser.add_argument("--label", default="hl")
    parser.add_argument("--references", action="store_true", help="also time raw_fetch.py (fetch, fetch+parse)")
    args = parser.parse_args()
    harness = args.harness.resolve()
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    dovecot = str(harness / "dovecot.sh")
    started = subprocess.run([dovecot, "status"], capture_output=True).returncode != 0
    if started:  # keep one server for every run, so the references can read the mailbox the last run loaded
        subprocess.run([dovecot, "start"], check=True, capture_output=True)
    try:
        return _run_all(args, harness)
    finally:
        if started:
            subprocess.run([dovecot, "stop"], check=False, capture_output=True)


def _run_all(args: argparse.Namespace, harness: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="helpline-bench-") as tmp:
        env = product_env(Path(tmp) / "data")
        for n in args.n:
            runs = [run_product(harness, n, f"{args.label}-n{n}-r{k}", env) for k in range(1, args.runs + 1)]
            for run in runs:
                print(json.dumps(run), flush=True)
            expected, stored = attachment_counts(harness, Path(tmp) / "data")
            summary = {
                "n": n,
                "median_msgs_per_s": statistics.median(r["msgs_per_s"] for r in runs),
                "median_wall_s": statistics.median(r["wall_s"] for r in runs),
                "median_max_rss_mib": statistics.median(r["max_rss_mib"] for r in runs),
                "all_ok": all(r["ok"] for r in runs),
                "attachments_expected": expected,  # the harness scores threading; attachments are checked here
                "attachments_stored": stored,
            }
            if args.references:
                for parse in (False, True):
                    refs = [run_reference(harness, parse) for _ in range(args.runs)]
                    key = "raw_parse" if parse else "raw_fetch"
                    summary[f"{key}_msgs_per_s"] = statistics.median(float(r["msgs_per_s"]) for r in refs)
            print("SUMMARY " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
