"""Telegram bots: pure parsing of Bot API updates, pure rendering of replies, and a small client on PTB's ``Bot``.

Wire format: the Telegram Bot API, https://core.telegram.org/bots/api (``Update``, ``Message``, ``getUpdates``,
``sendMessage``, ``sendPhoto``, ``sendDocument``, ``getFile``, ``setWebhook``, ``sendChatAction``, and
"Formatting options" for the 4,096-character limit).

``parse_*`` and ``render_*`` touch neither the network, the database nor the clock. ``TelegramChannel`` is the
only I/O here: python-telegram-bot's async ``Bot``, pointed at ``config["api_base"]`` (a self-hosted Bot API
server, or the tests' stub), driven from sync code with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import mimetypes
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from telegram import Bot, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from connectors.base import Outbound, OutboundAttachment
from connectors.errors import ChannelAuthError, ChannelError, PermanentError, TemporaryError
from inbox.ingest import Inbound

log = logging.getLogger(__name__)

# PTB 22 is moving durations (RetryAfter.retry_after, Voice.duration, ...) to timedelta and warns on every
# RetryAfter it raises until a program opts in with this documented switch; we handle both types, so we opt in.
os.environ.setdefault("PTB_TIMEDELTA", "true")

CHANNEL = "telegram"
DEFAULT_API_BASE = "https://api.telegram.org"
TEXT_LIMIT = 4096  # sendMessage: 1-4096 characters after entities parsing
CAPTION_LIMIT = 1024  # sendPhoto/sendDocument captions
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile: the cloud Bot API serves files up to 20 MB
PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024  # sendPhoto; bigger images go as documents
UPLOAD_LIMIT = 50 * 1024 * 1024  # sendDocument through the cloud Bot API
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
# Update kinds we act on; every other key of an Update is reported as ignored or unknown, never a crash.
HANDLED_KINDS = ("message", "edited_message", "my_chat_member")
# Kinds a bot receives but a helpdesk has nothing to do with (documented in the Update object).
IGNORED_KINDS = frozenset({
    "channel_post", "edited_channel_post", "business_connection", "business_message", "edited_business_message",
    "deleted_business_messages", "message_reaction", "message_reaction_count", "inline_query",
    "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media",
    "poll", "poll_answer", "chat_member", "chat_join_request", "chat_boost", "removed_chat_boost",
})
# Service messages (joins, pins, title changes): not something a customer wrote.
SERVICE_FIELDS = frozenset({
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo", "delete_chat_photo",
    "group_chat_created", "supergroup_chat_created", "channel_chat_created", "pinned_message",
    "migrate_to_chat_id", "migrate_from_chat_id", "message_auto_delete_timer_changed", "forum_topic_created",
    "forum_topic_edited", "forum_topic_closed", "forum_topic_reopened", "video_chat_started", "video_chat_ended",
    "video_chat_scheduled", "video_chat_participants_invited", "write_access_allowed", "users_shared",
    "chat_shared", "boost_added", "chat_background_set",
})
# Fields about a message rather than its content: not named when we report content we cannot show.
_ENVELOPE_FIELDS = frozenset({
    "message_id", "message_thread_id", "from", "sender_chat", "sender_boost_count", "sender_business_bot", "date",
    "business_connection_id", "chat", "forward_origin", "is_topic_message", "is_automatic_forward",
    "reply_to_message", "external_reply", "quote", "reply_to_story", "via_bot", "edit_date", "has_protected_content",
    "is_from_offline", "media_group_id", "author_signature", "entities", "caption", "caption_entities",
    "link_preview_options", "effect_id", "show_caption_above_media", "has_media_spoiler", "reply_markup",
    *SERVICE_FIELDS,
})

T = TypeVar("T")


# --- parsing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRef:
    """A file a message carries; the sync downloads it with ``getFile`` (parsing never touches the network)."""

    file_id: str
    file_unique_id: str
    filename: str
    content_type: str
    file_size: int | None
    kind: str  # photo, document, voice, video_note, video, audio, animation, sticker


@dataclass(frozen=True)
class ParsedUpdate:
    """What one update means for the inbox.

    ``action`` is one of ``ingest`` (a new customer message), ``edit`` (new text for a stored message),
    ``blocked``/``unblocked`` (the customer stopped or restarted the bot; ``handle`` says who), ``ignore``
    (a known kind we skip on purpose, ``reason`` says why) and ``unknown`` (a kind this code does not know).
    """

    update_id: int | None
    kind: str
    action: str
    inbound: Inbound | None = None
    media: tuple[MediaRef, ...] = ()
    reply_to_external_id: str | None = None  # the message answered (customer's or ours), same chat
    edited_at: dt.datetime | None = None
    handle: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class _Content:
    kind: str
    text: str
    media: tuple[MediaRef, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def external_id(chat_id: int | str, message_id: int | str) -> str:
    """A message's id for the inbox: ``message_id`` is unique only within its chat."""
    return f"{chat_id}:{message_id}"


def update_kind(update: Mapping[str, Any]) -> str:
    """The one optional field an Update carries besides ``update_id`` ("message", "callback_query", ...)."""
    kinds = [k for k in update if k != "update_id"]
    return kinds[0] if kinds else "empty"


def full_name(user: Mapping[str, Any]) -> str:
    return " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p).strip()


def parse_update(update: Mapping[str, Any], *, groups: bool = False) -> Inbound | None:
    """Turn one update into an Inbound (a new message or the new text of an edited one), or None if ignored.

    ``parse_update_full`` says more: edits, media to download, blocks, and why an update was skipped.
    """
    return parse_update_full(update, groups=groups).inbound


def parse_update_full(update: Mapping[str, Any], *, groups: bool = False) -> ParsedUpdate:
    """Classify and parse one update; never raises on a well-formed JSON object of an unknown kind."""
    update_id = update.get("update_id") if isinstance(update.get("update_id"), int) else None
    kind = update_kind(update)
    body = update.get(kind)
    if kind in ("message", "edited_message") and isinstance(body, Mapping):
        return _parse_message(update_id, kind, body, groups=groups)
    if kind == "my_chat_member" and isinstance(body, Mapping):
        return _parse_member(update_id, body)
    if kind in IGNORED_KINDS:
        return ParsedUpdate(update_id, kind, "ignore", reason=f"{kind} updates are not customer messages")
    return ParsedUpdate(update_id, kind, "unknown", reason=f"unknown update kind {kind!r}")


def _parse_member(update_id: int | None, body: Mapping[str, Any]) -> ParsedUpdate:
    chat = body.get("chat") or {}
    status = (body.get("new_chat_member") or {}).get("status")
    if chat.get("type") != "private":
        return ParsedUpdate(update_id, "my_chat_member", "ignore", reason="bot added to or removed from a group")
    handle = str(chat["id"])
    if status == "kicked":  # what Telegram sends when the user blocks the bot
        return ParsedUpdate(update_id, "my_chat_member", "blocked", handle=handle, reason="bot blocked by the user")
    return ParsedUpdate(update_id, "my_chat_member", "unblocked", handle=handle, reason=f"bot is {status} again")


def _parse_message(update_id: int | None, kind: str, msg: Mapping[str, Any], *, groups: bool) -> ParsedUpdate:
    chat = msg["chat"]
    sender = msg.get("from") or {}
    chat_type = chat.get("type")

    def skip(reason: str) -> ParsedUpdate:
        return ParsedUpdate(update_id, kind, "ignore", reason=reason)

    if chat_type == "channel":
        return skip("channel posts are not customer messages")
    if chat_type in ("group", "supergroup") and not groups:
        return skip("group chat (groups are off for this inbox)")
    if sender.get("is_bot"):
        return skip("message from a bot")
    if any(msg.get(f) for f in SERVICE_FIELDS):  # PTB's to_dict() writes some flags as False: falsy, not service
        return skip("service message")
    content = parse_content(msg)
    chat_id = chat["id"]
    is_group = chat_type in ("group", "supergroup")
    name = full_name(sender) or sender.get("username") or str(sender.get("id", ""))
    text = content.text
    if is_group:
        # A group is one conversation: the group is the contact (replies go to the group), the sender is named.
        handle, display_name, attributes = str(chat_id), chat.get("title") or str(chat_id), {}
        text = f"{name}: {text}"
    else:
        handle, display_name = str(chat_id), name
        attributes = {"telegram_username": sender.get("username"), "language": sender.get("language_code")}
    reply = msg.get("reply_to_message")
    reply_to = external_id(chat_id, reply["message_id"]) if isinstance(reply, Mapping) else None
    meta: dict[str, Any] = {
        "telegram": {"chat_id": chat_id, "message_id": msg["message_id"], "chat_type": chat_type,
                     "from_id": sender.get("id"), "username": sender.get("username"), "update_id": update_id},
        "kind": content.kind,
        **content.extra,
    }
    if reply_to:
        meta["reply_to"] = reply_to
    if msg.get("forward_origin"):
        meta["forwarded"] = True  # the customer passes on someone else's words: agents should know
    sent_at = dt.datetime.fromtimestamp(msg["date"], tz=dt.UTC)
    edited_at = dt.datetime.fromtimestamp(msg["edit_date"], tz=dt.UTC) if msg.get("edit_date") else None
    inbound = Inbound(
        channel=CHANNEL,
        external_id=external_id(chat_id, msg["message_id"]),
        handle=handle,
        display_name=display_name,
        text=text,
        sent_at=sent_at,
        contact_attributes={k: v for k, v in attributes.items() if v},
        meta=meta,
    )
    action = "edit" if kind == "edited_message" else "ingest"
    return ParsedUpdate(update_id, kind, action, inbound, content.media, reply_to, edited_at)


def _duration(seconds: Any) -> str:
    total = int(seconds or 0)
    return f"{total // 60}:{total % 60:02d}"


def _media(obj: Mapping[str, Any], kind: str, default_name: str, default_type: str) -> MediaRef:
    filename = obj.get("file_name") or default_name
    content_type = obj.get("mime_type") or mimetypes.guess_type(filename)[0] or default_type
    return MediaRef(obj["file_id"], obj.get("file_unique_id", obj["file_id"]), filename, content_type,
                    obj.get("file_size"), kind)


def parse_content(msg: Mapping[str, Any]) -> _Content:
    """What the customer sent, as readable text plus files; captions win over the generated labels."""
    caption = msg.get("caption") or ""
    if "text" in msg:
        return _Content("text", msg["text"])
    if photos := msg.get("photo"):
        best = photos[-1]  # PhotoSize list, smallest first
        ref = _media(best, "photo", f"photo_{best.get('file_unique_id', 'file')}.jpg", "image/jpeg")
        return _Content("photo", caption or "📷 Photo", (ref,))
    if anim := msg.get("animation"):  # checked before "document": GIF messages carry both
        ref = _media(anim, "animation", f"animation_{anim.get('file_unique_id', 'file')}.mp4", "video/mp4")
        return _Content("animation", caption or "🎞 GIF", (ref,))
    if doc := msg.get("document"):
        ref = _media(doc, "document", f"document_{doc.get('file_unique_id', 'file')}", "application/octet-stream")
        return _Content("document", caption or f"📎 {ref.filename}", (ref,))
    if voice := msg.get("voice"):
        ref = _media(voice, "voice", f"voice_{voice.get('file_unique_id', 'file')}.ogg", "audio/ogg")
        return _Content("voice", caption or f"🎤 Voice message ({_duration(voice.get('duration'))})", (ref,))
    if note := msg.get("video_note"):
        ref = _media(note, "video_note", f"video_note_{note.get('file_unique_id', 'file')}.mp4", "video/mp4")
        return _Content("video_note", f"🎥 Video message ({_duration(note.get('duration'))})", (ref,))
    if video := msg.get("video"):
        ref = _media(video, "video", f"video_{video.get('file_unique_id', 'file')}.mp4", "video/mp4")
        return _Content("video", caption or f"🎬 Video ({_duration(video.get('duration'))})", (ref,))
    if audio := msg.get("audio"):
        ref = _media(audio, "audio", f"audio_{audio.get('file_unique_id', 'file')}.mp3", "audio/mpeg")
        title = " – ".join(p for p in (audio.get("performer"), audio.get("title")) if p) or ref.filename
        return _Content("audio", caption or f"🎵 {title}", (ref,))
    if sticker := msg.get("sticker"):
        return _sticker(sticker)
    if venue := msg.get("venue"):
        loc = venue["location"]
        text = f"📍 {venue.get('title', '')}, {venue.get('address', '')}\n{map_link(loc)}"
        return _Content("venue", text, extra={"location": _latlon(loc)})
    if loc := msg.get("location"):
        live = " (live)" if loc.get("live_period") else ""
        text = f"📍 Location{live}: {loc['latitude']:.6f}, {loc['longitude']:.6f}\n{map_link(loc)}"
        return _Content("location", text, extra={"location": _latlon(loc)})
    if contact := msg.get("contact"):
        return _Content("contact", f"👤 Contact: {full_name(contact)}, {contact.get('phone_number', '')}".strip(", "),
                        extra={"shared_contact": {k: contact.get(k) for k in ("phone_number", "user_id")}})
    if poll := msg.get("poll"):
        options = "\n".join(f"- {o.get('text', '')}" for o in poll.get("options", []))
        return _Content("poll", f"📊 Poll: {poll.get('question', '')}\n{options}".strip())
    if dice := msg.get("dice"):
        return _Content("dice", f"{dice.get('emoji', '🎲')} {dice.get('value', '')}".strip())
    what = ", ".join(sorted(k for k in msg if k not in _ENVELOPE_FIELDS)) or "empty"
    return _Content("unsupported", f"[unsupported Telegram message: {what}]")


def _sticker(sticker: Mapping[str, Any]) -> _Content:
    emoji = sticker.get("emoji") or ""
    text = f"{emoji} (sticker)".strip()
    if sticker.get("is_animated") or sticker.get("is_video"):
        return _Content("sticker", text)  # .tgs/.webm render nowhere but Telegram: the emoji says it
    ref = _media(sticker, "sticker", f"sticker_{sticker.get('file_unique_id', 'file')}.webp", "image/webp")
    return _Content("sticker", text, (ref,))


def _latlon(loc: Mapping[str, Any]) -> dict[str, float]:
    return {"latitude": float(loc["latitude"]), "longitude": float(loc["longitude"])}


def map_link(loc: Mapping[str, Any]) -> str:
    lat, lon = float(loc["latitude"]), float(loc["longitude"])
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=17/{lat:.6f}/{lon:.6f}"


# --- rendering ----------------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def render_text_chunks(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split text into messages of at most ``limit`` UTF-16 units, at a paragraph, line or word break if one
    lies in the second half of a chunk; the separator at a cut is dropped, nothing else is lost."""
    chunks: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        units = 0
        cut = 0
        for i, ch in enumerate(rest):
            units += 2 if ord(ch) > 0xFFFF else 1
            if units > limit:
                cut = i
                break
        cut = max(cut, 1)  # a limit below one character must not loop forever
        head = rest[:cut]
        for sep in ("\n\n", "\n", " "):
            pos = head.rfind(sep)
            if pos >= cut // 2:
                chunks.append(rest[:pos])
                rest = rest[pos + len(sep):]
                break
        else:
            chunks.append(head)
            rest = rest[cut:]
    if rest.strip():
        chunks.append(rest)
    return [c for c in chunks if c.strip()]


@dataclass(frozen=True)
class SendStep:
    """One Bot API call of a reply: ``sendMessage`` with text, or ``sendPhoto``/``sendDocument`` with a caption."""

    method: str
    text: str = ""
    attachment: int | None = None  # index into Outbound.attachments
    reply_to: int | None = None  # Telegram message_id answered (first step only)


def reply_message_id(outbound: Outbound) -> int | None:
    """The Telegram message id to answer, if the answered message is in the recipient's chat."""
    ref = outbound.reply_to_external_id
    if not ref or ":" not in ref:
        return None
    chat, _, mid = ref.rpartition(":")
    return int(mid) if chat == str(outbound.to_handle) and mid.isdigit() else None


def is_photo(att: OutboundAttachment) -> bool:
    return att.content_type.lower() in PHOTO_TYPES and len(att.data) <= PHOTO_UPLOAD_LIMIT


def render_outbound(outbound: Outbound) -> list[SendStep]:
    """Plan the Bot API calls for one reply: a lone file takes the text as its caption when it fits; otherwise
    the text goes first, split at 4,096 characters, then each file."""
    text = outbound.text.strip()
    atts = outbound.attachments
    steps: list[SendStep] = []
    if len(atts) == 1 and utf16_len(text) <= CAPTION_LIMIT:
        steps.append(SendStep("sendPhoto" if is_photo(atts[0]) else "sendDocument", text, 0))
    else:
        steps.extend(SendStep("sendMessage", chunk) for chunk in render_text_chunks(text))
        steps.extend(SendStep("sendPhoto" if is_photo(a) else "sendDocument", "", i) for i, a in enumerate(atts))
    reply_to = reply_message_id(outbound)
    if steps and reply_to is not None:
        first = steps[0]
        steps[0] = SendStep(first.method, first.text, first.attachment, reply_to)
    return steps


# --- errors -------------------------------------------------------------------------------------------------


class RecipientUnreachable(PermanentError):
    """The customer blocked the bot or deleted their account: no reply can reach them until they write again.

    ``unreachable`` lets the delivery job mark the identity without knowing about Telegram.
    """

    unreachable = True


def retry_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after  # a timedelta with PTB_TIMEDELTA set (see the top of this module), else seconds
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def map_error(exc: TelegramError) -> ChannelError:
    """Map PTB's exceptions to the three kinds the workers treat differently."""
    message = exc.message
    if isinstance(exc, RetryAfter):
        seconds = retry_seconds(exc)
        return TemporaryError(f"Telegram flood control: retry in {seconds:g} s", retry_after=seconds)
    if isinstance(exc, InvalidToken):
        return ChannelAuthError(f"Telegram rejected the bot token ({message})")
    if isinstance(exc, Forbidden):
        lowered = message.lower()
        if "blocked" in lowered:
            return RecipientUnreachable("bot blocked by the user")
        if "deactivated" in lowered:
            return RecipientUnreachable("the user deleted their Telegram account")
        return PermanentError(f"Telegram refused: {message}")
    if isinstance(exc, ChatMigrated):
        return PermanentError(f"the group became a supergroup (new chat id {exc.new_chat_id})")
    if isinstance(exc, Conflict):
        if "webhook" in message.lower():  # getUpdates while a webhook is set: a configuration problem
            return PermanentError(f"Telegram: {message}")
        return TemporaryError(f"Telegram: {message}")  # another poller ran at the same moment
    if isinstance(exc, BadRequest):  # a subclass of NetworkError: checked first
        return PermanentError(f"Telegram refused the request: {message}")
    if isinstance(exc, TimedOut):
        return TemporaryError("Telegram did not answer in time")
    if isinstance(exc, NetworkError):
        return TemporaryError(f"Telegram unreachable: {message}")
    return TemporaryError(f"Telegram error: {message}")


# --- I/O ----------------------------------------------------------------------------------------------------


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):g} MB"
    return f"{n / 1024:g} KB" if n >= 1024 else f"{n} bytes"


@dataclass(frozen=True)
class Download:
    """A file fetched with getFile, or the reason it was not (too big)."""

    data: bytes | None
    size: int | None
    skipped_reason: str | None = None


class TelegramChannel:
    """A bot account: send replies, and the few other Bot API calls the sync, webhook and CLI need."""

    name = CHANNEL

    def __init__(self, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> None:
        token = str(secrets.get("token") or "")
        if not token:
            raise ChannelAuthError("no bot token configured for this Telegram inbox")
        self._token = token
        base = str(config.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        self.base_url = f"{base}/bot"
        self.base_file_url = f"{base}/file/bot"
        self.timeout = float(config.get("timeout", 30))

    def _run(self, call: Callable[[Bot], Awaitable[T]]) -> T:
        """Run one PTB coroutine on a fresh event loop (workers and views are sync); errors become ours."""

        async def go() -> T:
            # Our own request objects, closed here: Bot.initialize() would cost a getMe on every call.
            requests = (HTTPXRequest(connect_timeout=10.0), HTTPXRequest(connect_timeout=10.0))
            bot = Bot(self._token, base_url=self.base_url, base_file_url=self.base_file_url,
                      request=requests[0], get_updates_request=requests[1])
            try:
                return await call(bot)
            finally:
                for request in requests:
                    await request.shutdown()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            runner = None
        else:
            # A loop already runs in this thread (Playwright's sync API, a notebook): asyncio.run() would refuse.
            runner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="telegram")
        try:
            if runner is None:
                return asyncio.run(go())
            with runner:
                return runner.submit(lambda: asyncio.run(go())).result()
        except TelegramError as exc:
            raise map_error(exc) from exc

    def get_me(self) -> dict[str, Any]:
        """The bot's own user (id, username, first_name): checks the token."""
        user = self._run(lambda bot: bot.get_me(read_timeout=self.timeout))
        return {"id": user.id, "username": user.username, "first_name": user.first_name}

    def send(self, outbound: Outbound) -> str:
        """Send one reply; returns ``chat_id:message_id`` of its first part (the id customers' replies quote).

        A reply of several parts that fails half-way is sent again in full on retry: Telegram has no
        idempotency key, and a duplicate beats a lost half.
        """
        too_big = [a.filename for a in outbound.attachments if len(a.data) > UPLOAD_LIMIT]
        if too_big:
            raise PermanentError(f"attachment larger than Telegram's 50 MB limit: {', '.join(too_big)}")
        steps = render_outbound(outbound)
        if not steps:
            raise PermanentError("the reply is empty")
        chat_id = outbound.to_handle

        async def go(bot: Bot) -> list[int]:
            ids = []
            for step in steps:
                ids.append(await self._send_step(bot, chat_id, step, outbound.attachments))
            return ids

        ids = self._run(go)
        return external_id(chat_id, ids[0])

    async def _send_step(self, bot: Bot, chat_id: str, step: SendStep, atts: tuple[OutboundAttachment, ...]) -> int:
        reply = ReplyParameters(step.reply_to, allow_sending_without_reply=True) if step.reply_to else None
        wait = self.timeout
        if step.method == "sendMessage":
            msg = await bot.send_message(chat_id, step.text, reply_parameters=reply, read_timeout=wait,
                                         write_timeout=wait)
        else:
            assert step.attachment is not None
            att = atts[step.attachment]
            caption = step.text or None
            if step.method == "sendPhoto":
                msg = await bot.send_photo(chat_id, att.data, caption=caption, reply_parameters=reply,
                                           filename=att.filename, read_timeout=wait, write_timeout=wait)
            else:
                msg = await bot.send_document(chat_id, att.data, caption=caption, reply_parameters=reply,
                                              filename=att.filename, read_timeout=wait, write_timeout=wait)
        return int(msg.message_id)

    def send_chat_action(self, chat_id: str, action: str = "typing") -> None:
        """Show "typing…" in the customer's chat (Telegram clears it after 5 s or at the next message)."""
        self._run(lambda bot: bot.send_chat_action(chat_id, action, read_timeout=self.timeout))

    def get_updates(self, offset: int | None, *, limit: int = 100, timeout: int = 0) -> list[dict[str, Any]]:
        """Updates from ``offset`` on, as Bot API JSON. Asking with an offset confirms every earlier update."""

        async def go(bot: Bot) -> list[dict[str, Any]]:
            updates = await bot.get_updates(offset=offset, limit=limit, timeout=timeout,
                                            read_timeout=self.timeout + timeout)
            return [u.to_dict() for u in updates]

        return self._run(go)

    def download(self, file_id: str, max_bytes: int) -> Download:
        """Fetch a file through getFile, unless Telegram reports it bigger than ``max_bytes``."""
        limit = min(max_bytes, DOWNLOAD_LIMIT)

        async def go(bot: Bot) -> Download:
            try:
                tg_file = await bot.get_file(file_id, read_timeout=self.timeout)
            except BadRequest as exc:
                if "too big" in exc.message.lower():
                    return Download(None, None, "larger than the 20 MB the Bot API lets bots download")
                raise
            if tg_file.file_size is not None and tg_file.file_size > limit:
                return Download(None, tg_file.file_size, f"larger than the {human_size(limit)} limit")
            data = bytes(await tg_file.download_as_bytearray(read_timeout=self.timeout))
            return Download(data, len(data))

        return self._run(go)

    def set_webhook(self, url: str, secret_token: str) -> None:
        """Have Telegram POST updates to ``url`` with the secret in X-Telegram-Bot-Api-Secret-Token."""
        self._run(lambda bot: bot.set_webhook(url, secret_token=secret_token, allowed_updates=list(HANDLED_KINDS),
                                              read_timeout=self.timeout))

    def delete_webhook(self) -> None:
        """Switch the bot to getUpdates (Telegram refuses getUpdates while a webhook is set)."""
        self._run(lambda bot: bot.delete_webhook(read_timeout=self.timeout))
