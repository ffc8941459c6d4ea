"""The getUpdates poll on both databases: offsets committed with messages, media, edits, replies, blocks, logs."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from connectors.errors import TemporaryError
from inbox.identities import find_identity
from inbox.models import Attachment, Contact, Inbox, Message, Quarantine, Ticket
from inbox.runtime import Storage
from tests.telegram.botapi_stub import BotApiStub
from tests.telegram.conftest import load_update, make_telegram_inbox
from workers import telegram_sync
from workers.sync import sync_inbox
from workers.telegram_sync import sync_telegram_inbox

ANNA = "5550192834"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"p" * 500
VOICE = b"OggS\x00\x02" + b"v" * 300


def new_inbox(storage: Storage, tg: BotApiStub, **config: object) -> int:
    with storage.factory() as session:
        inbox = make_telegram_inbox(session, storage, tg, **config)
        session.commit()
        return inbox.id


def messages(storage: Storage, inbox_id: int) -> list[Message]:
    with storage.factory() as session:
        return list(session.scalars(select(Message).where(Message.inbox_id == inbox_id).order_by(Message.id)))


def cursor(storage: Storage, inbox_id: int) -> dict[str, object]:
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        return dict(inbox.cursor)


def add_media_files(tg: BotApiStub) -> None:
    tg.add_file(PHOTO, file_id="AgACAgIAAxkBAAIBKmdEq1_large", path="photos/file_12.jpg")
    tg.add_file(VOICE, file_id="AwACAgIAAxkBAAIBLGdEq3_voice", path="voice/file_13.oga")
    tg.add_file(b"%PDF-1.7 invoice", file_id="BQACAgIAAxkBAAIBK2dEq2_invoice", path="documents/file_14.pdf")


def test_poll_stores_each_kind_and_commits_the_offset(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    add_media_files(tg)
    for name in ("private_text", "private_photo_caption", "private_document", "private_voice", "private_location",
                 "private_sticker_animated", "group_text", "callback_query", "unknown_kind"):
        tg.push(load_update(name))
    result = sync_inbox(storage, inbox_id)  # through the channel dispatcher, as the worker does
    assert (result.fetched, result.stored, result.ignored, result.unknown) == (9, 6, 2, 1)
    assert result.files == 3
    stored = messages(storage, inbox_id)
    assert [m.external_id for m in stored] == [f"{ANNA}:{n}" for n in (41, 42, 43, 44, 48, 47)]
    assert len({m.ticket_id for m in stored}) == 1  # one chat, one ticket
    with storage.factory() as session:
        atts = list(session.scalars(select(Attachment).order_by(Attachment.id)))
        assert [(a.filename, a.content_type) for a in atts] == [
            ("photo_AQADsm3.jpg", "image/jpeg"), ("Rechnung-10442.pdf", "application/pdf"),
            ("voice_AgADvo1.ogg", "audio/ogg")]
        assert storage.blobs.get(atts[0].sha256 or "") == PHOTO
        contact = session.scalars(select(Contact)).one()
        assert contact.name == "Anna Müller"
        assert contact.attributes == {"telegram_username": "anna_mueller", "language": "de"}
    cur = cursor(storage, inbox_id)
    assert cur["update_offset"] == 815000117
    assert [e["kind"] for e in cur["unknown_updates"]] == ["paid_media_teleport"]  # type: ignore[union-attr]
    # The next poll asks with the stored offset, which confirms the batch: Telegram forgets it.
    again = sync_telegram_inbox(storage, inbox_id)
    assert again.fetched == 0 and tg.updates == []
    assert tg.calls[-1].params["offset"] == 815000117


def test_a_crash_before_commit_refetches_the_batch_and_stores_it_once(
    storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox_id = new_inbox(storage, tg)
    add_media_files(tg)
    for name in ("private_text", "private_photo_caption", "private_document"):
        tg.push(load_update(name))
    calls = {"n": 0}
    real_add = telegram_sync.SyncResult.add

    def dying_add(self: telegram_sync.SyncResult, outcome: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed mid-batch")
        real_add(self, outcome)

    monkeypatch.setattr(telegram_sync.SyncResult, "add", dying_add)
    with pytest.raises(SystemExit):
        sync_telegram_inbox(storage, inbox_id)
    assert messages(storage, inbox_id) == [] and "update_offset" not in cursor(storage, inbox_id)
    monkeypatch.setattr(telegram_sync.SyncResult, "add", real_add)
    result = sync_telegram_inbox(storage, inbox_id)
    assert result.stored == 3 and len(messages(storage, inbox_id)) == 3


def test_a_redelivered_batch_is_stored_once_without_downloading_again(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    add_media_files(tg)
    tg.push(load_update("private_photo_caption"))
    sync_telegram_inbox(storage, inbox_id)
    # As if the commit of the offset had been lost: Telegram still holds the update, our cursor is older.
    with storage.factory() as session, session.begin():
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        inbox.cursor = {}
    assert len(tg.updates) == 1  # never confirmed: the sync stops at a short batch, the next poll confirms
    before = tg.methods().count("getFile")
    result = sync_telegram_inbox(storage, inbox_id)
    assert (result.stored, result.duplicates) == (0, 1)
    assert tg.methods().count("getFile") == before
    assert len(messages(storage, inbox_id)) == 1


def test_edit_updates_the_text_and_keeps_the_previous_version(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    tg.push(load_update("private_text"))
    sync_telegram_inbox(storage, inbox_id)
    tg.push(load_update("edited_message"))
    tg.push(load_update("edited_message") | {"update_id": 815000199})  # the same edit again changes nothing
    result = sync_telegram_inbox(storage, inbox_id)
    assert (result.edited, result.duplicates) == (1, 1)
    (msg,) = messages(storage, inbox_id)
    assert "#10443" in msg.body_text
    (edit,) = msg.meta["edits"]
    assert "#10442" in edit["text"] and edit["replaced_at"].startswith("2025-11-25T10:45:20")


def test_reply_joins_the_answered_messages_ticket(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    tg.push(load_update("private_text"))
    sync_telegram_inbox(storage, inbox_id)
    (first,) = messages(storage, inbox_id)
    with storage.factory() as session, session.begin():
        # An agent opened a second ticket for the same customer: plain messages now go there.
        newer = Ticket(inbox_id=inbox_id, contact_id=first.contact_id, channel="telegram", subject="Other matter",
                       status="open")
        session.add(newer)
    tg.push(load_update("private_reply"))
    plain = load_update("private_text")
    plain["message"] |= {"message_id": 52, "text": "Und noch etwas anderes"}
    tg.push(plain)
    sync_telegram_inbox(storage, inbox_id)
    _, reply, other = messages(storage, inbox_id)
    assert reply.ticket_id == first.ticket_id and "ticket token" in reply.thread_reason
    assert other.ticket_id != first.ticket_id


def test_files_over_the_size_limit_are_recorded_not_downloaded(
    storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "settings", dataclasses.replace(storage.settings, max_attachment_bytes=1000))
    inbox_id = new_inbox(storage, tg)
    add_media_files(tg)
    tg.push(load_update("private_photo_caption"))
    result = sync_telegram_inbox(storage, inbox_id)
    assert (result.stored, result.files, result.files_skipped) == (1, 0, 1)
    assert "getFile" not in tg.methods()
    with storage.factory() as session:
        att = session.scalars(select(Attachment)).one()
        assert (att.sha256, att.size, att.skipped_reason) == (None, 64210, "larger than the 1000 bytes limit")


def test_a_failed_download_aborts_the_batch_before_its_offset(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    add_media_files(tg)
    tg.push(load_update("private_text"))
    tg.push(load_update("private_photo_caption"))
    tg.fail("getFile", 502)
    with pytest.raises(TemporaryError):
        sync_telegram_inbox(storage, inbox_id)
    assert messages(storage, inbox_id) == []
    result = sync_telegram_inbox(storage, inbox_id)
    assert (result.stored, result.files) == (2, 1)


def test_blocking_marks_the_identity_and_writing_again_clears_it(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    tg.push(load_update("private_text"))
    tg.push(load_update("my_chat_member_kicked"))
    assert sync_telegram_inbox(storage, inbox_id).blocked == 1
    with storage.factory() as session:
        identity = find_identity(session, "telegram", ANNA)
        assert identity is not None and identity.unreachable == "bot blocked by the user"
    tg.push(load_update("private_reply"))
    sync_telegram_inbox(storage, inbox_id)
    with storage.factory() as session:
        identity = find_identity(session, "telegram", ANNA)
        assert identity is not None and identity.unreachable is None


def test_groups_are_stored_when_the_inbox_allows_them(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg, groups=True)
    tg.push(load_update("group_text"))
    assert sync_telegram_inbox(storage, inbox_id).stored == 1
    (msg,) = messages(storage, inbox_id)
    assert msg.body_text.startswith("Piotr: ")


def test_a_malformed_update_is_quarantined_and_the_rest_stored(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg)
    broken = load_update("private_text")
    del broken["message"]["chat"]  # PTB keeps it as it is; our parser cannot place it
    broken["update_id"] = 815000050
    tg.updates.append(broken)
    tg.push(load_update("private_text"))
    result = sync_telegram_inbox(storage, inbox_id)
    assert (result.quarantined, result.stored) == (1, 1)
    with storage.factory() as session:
        q = session.scalars(select(Quarantine)).one()
        assert q.source_ref == "telegram update 815000050"
        assert session.scalar(select(func.count()).select_from(Message)) == 1
    assert cursor(storage, inbox_id)["update_offset"] == 815000102


def test_webhook_inboxes_are_not_polled(storage: Storage, tg: BotApiStub) -> None:
    inbox_id = new_inbox(storage, tg, mode="webhook")
    assert sync_telegram_inbox(storage, inbox_id).fetched == 0
    assert tg.calls == []



def test_a_revoked_token_marks_the_inbox_for_reauthentication(storage: Storage, tg: BotApiStub) -> None:
    from workers.inbound import sync_and_record

    inbox_id = new_inbox(storage, tg)
    tg.fail("getUpdates", 401)
    assert sync_and_record(storage, inbox_id) == "needs_reauth"
    tg.fail("getUpdates", 502)
    assert sync_and_record(storage, inbox_id) == "error"
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None and inbox.credential_state == "needs_reauth"
        assert inbox.last_error is not None and "unreachable" in inbox.last_error
    assert sync_and_record(storage, inbox_id).startswith("ok")


def test_reply_to_the_agents_answer_joins_that_ticket(storage: Storage, tg: BotApiStub) -> None:
    from tickets import lifecycle

    inbox_id = new_inbox(storage, tg)
    tg.push(load_update("private_text"))
    sync_telegram_inbox(storage, inbox_id)
    (first,) = messages(storage, inbox_id)
    with storage.factory() as session, session.begin():
        ticket = lifecycle.get_ticket(session, first.ticket_id)
        answer = lifecycle.reply(session, ticket, "Wir sehen nach.", by=None)
        answer.external_id, answer.delivery_state = f"{ANNA}:901", "sent"  # what delivery stores: chat:message_id
        session.add(Ticket(inbox_id=inbox_id, contact_id=first.contact_id, channel="telegram", subject="Newer",
                           status="open"))
    quoting = load_update("private_reply")
    quoting["message"] |= {"message_id": 53, "text": "Danke, und wann kommt es?"}
    quoting["message"]["reply_to_message"] |= {"message_id": 901, "from": {"id": 123456789, "is_bot": True,
                                                                         "first_name": "Shop Support"}}
    tg.push(quoting)
    sync_telegram_inbox(storage, inbox_id)
    reply = messages(storage, inbox_id)[-1]
    assert reply.external_id == f"{ANNA}:53" and reply.ticket_id == first.ticket_id
    assert reply.meta["reply_to"] == f"{ANNA}:901"
