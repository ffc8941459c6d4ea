"""The IMAP IDLE watcher: wakes up on new mail, and reconnects after Dovecot restarts."""

from __future__ import annotations

import queue
import threading

from sqlalchemy.orm import Session

from inbox.runtime import Storage
from tests.email.conftest import email_inbox, mail
from tests.mail_services import Dovecot
from workers.mail_sync import watch_mailboxes


def test_idle_wakes_on_new_mail_and_survives_a_server_restart(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    inbox_id = email_inbox(session, dovecot, imap_user, storage.settings.secret_key).id
    session.close()
    woken: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_mailboxes,
        args=(storage, woken.put),
        kwargs={"stop": stop, "inbox_ids": [inbox_id], "idle_slice": 1.0, "rescan_every": 0.5, "max_backoff": 1.0},
    )
    watcher.start()
    try:
        assert woken.get(timeout=10) == inbox_id  # the catch-up call after connecting
        dovecot.deliver(imap_user, mail())
        assert woken.get(timeout=10) == inbox_id  # IDLE reported EXISTS
        dovecot.restart()
        assert woken.get(timeout=20) == inbox_id  # reconnected (and caught up)
        dovecot.deliver(imap_user, mail())
        assert woken.get(timeout=10) == inbox_id
    finally:
        stop.set()
        watcher.join(timeout=20)
    assert not watcher.is_alive()


def test_a_broken_mailbox_does_not_hold_up_the_others(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    from tests.services import free_port

    good = email_inbox(session, dovecot, imap_user, storage.settings.secret_key).id
    broken = email_inbox(session, dovecot, dovecot.new_user(), storage.settings.secret_key, imap_port=free_port()).id
    session.close()
    woken: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_mailboxes,
        args=(storage, woken.put),
        kwargs={"stop": stop, "inbox_ids": [good, broken], "idle_slice": 1.0, "max_backoff": 1.0},
    )
    watcher.start()
    try:
        assert woken.get(timeout=10) == good
        dovecot.deliver(imap_user, mail())
        assert woken.get(timeout=10) == good
        assert woken.empty()  # the broken one never woke anyone, and never blocked the good one
    finally:
        stop.set()
        watcher.join(timeout=20)
