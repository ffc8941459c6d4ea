"""Benchmark Helpline's IMAP ingest with the shared harness (../shared/bench/imap, read its README).

The harness loads N generated support mails into a private Dovecot on loopback, times one command, then scores
the ``<Message-ID>\\t<ticket id>`` export against its manifest (tickets, replies threaded, missing, duplicates).
Helpline plugs in with its own CLI, so the measured path is the product's:

    reset:  fresh data folder, ``helpline db upgrade``, ``helpline inbox add email ...``
    ingest: ``helpline inbox sync bench``            (timed, includes the process start-up)
    export: ``helpline export message-map --inbox bench``

With ``--references`` it also runs the harness's ``raw_fetch.py`` (bare fetch, and fetch + stdlib parse) with
this interpreter right after each product run, so each ratio compares runs taken under the same conditions. The
last lines are a Markdown table of the medians (docs/benchmarks.md).

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
    rows = []
    with tempfile.TemporaryDirectory(prefix="helpline-bench-") as tmp:
        data = Path(tmp) / "data"
        env = product_env(data)
        for n in args.n:
            runs, refs = [], []
            for k in range(1, args.runs + 1):
                run = run_product(harness, n, f"{args.label}-n{n}-r{k}", env)
                run["attachments_expected"], run["attachments_stored"] = attachment_counts(harness, data)
                print(json.dumps(run), flush=True)
                runs.append(run)
                if args.references:
                    # Right after the product run, on the mailbox it just read: the machine is shared and its
                    # load changes by the minute, so each ratio compares runs taken under the same conditions.
                    ref = {"raw_fetch": run_reference(harness, False), "raw_parse": run_reference(harness, True)}
                    print(json.dumps(ref), flush=True)
                    refs.append(ref)
            summary = summarize(n, runs, refs)
            print("SUMMARY " + json.dumps(summary), flush=True)
            rows.append(summary)
    print(markdown(rows))
    return 0


def summarize(n: int, runs: list[dict[str, Any]], refs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: Any) -> float:
        return float(statistics.median(values))

    summary: dict[str, Any] = {
        "n": n,
        "median_msgs_per_s": med(r["msgs_per_s"] for r in runs),
        "median_wall_s": med(r["wall_s"] for r in runs),
        "median_cpu_s": med(r["cpu_s"] for r in runs),
        "median_max_rss_mib": med(r["max_rss_mib"] for r in runs),
        "all_ok": all(r["ok"] for r in runs),
        "tickets": f"{runs[0]['tickets']} / {runs[0]['threads_expected']}",
        "replies_threaded": f"{min(r['replies_threaded'] for r in runs)} / {runs[0]['replies']}",
        "missing_duplicates": f"{max(r['missing'] for r in runs)} / {max(r['duplicates'] for r in runs)}",
        # the harness scores threading; attachments are checked here, against the corpus manifest
        "attachments": f"{min(r['attachments_stored'] for r in runs)} / {runs[0]['attachments_expected']}",
    }
    if refs:
        for key in ("raw_fetch", "raw_parse"):
            summary[f"{key}_msgs_per_s"] = med(float(ref[key]["msgs_per_s"]) for ref in refs)
            summary[f"ratio_to_{key}"] = round(
                med(r["msgs_per_s"] / float(ref[key]["msgs_per_s"]) for r, ref in zip(runs, refs, strict=True)), 3
            )
    return summary


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| N | Helpline msg/s | wall s | CPU s | peak RSS MiB | bare fetch msg/s | fetch + policy.default parse msg/s "
        "| Helpline / parse (same-run median) | tickets | replies threaded | missing / dup | attachments |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['median_msgs_per_s']:.0f} | {r['median_wall_s']:.2f} | {r['median_cpu_s']:.1f} "
            f"| {r['median_max_rss_mib']:.0f} | {r.get('raw_fetch_msgs_per_s', float('nan')):.0f} "
            f"| {r.get('raw_parse_msgs_per_s', float('nan')):.0f} | {r.get('ratio_to_raw_parse', float('nan')):.2f}x "
            f"| {r['tickets']} | {r['replies_threaded']} | {r['missing_duplicates']} | {r['attachments']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
