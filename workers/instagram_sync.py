"""Instagram inboxes: one poll walks the shop's recent posts, their comments and answers, and posts it is tagged in.

Instaloader does the talking (https://instaloader.github.io/as-module.html: ``Profile.get_posts``,
``Post.get_comments``, ``Profile.get_tagged_posts``, ``Instaloader.load_session``/``save_session``,
``RateController``); ``connectors.instagram`` maps its nodes. What keeps a poll cheap and polite:

- Posts: only the newest ``recent_posts`` (a watch window; older posts are not watched). A post's comment count
  comes with the listing, so a post whose count did not change since the last poll costs no request at all.
- Comments of a changed post are all read (up to ``MAX_COMMENTS_PER_POST``), known ids skipped: Instagram's
  comment order is its own, and a deleted comment hides a new one from the count. Tagged posts come newest first
  and stop at the first known one.
- What was seen lives in ``Inbox.cursor`` (per post: count and seen comment ids; the tagged shortcodes; the
  profile's user id). The unique (inbox_id, external_id) stores a refetched comment once anyway.
- Instaloader's ``RateController`` counts the requests, its history kept in the cursor from poll to poll; a wait
  longer than ``max_rate_wait`` ends the poll instead of blocking a worker. A 429, login-required or checkpoint
  answer ends the poll with an exponential backoff in ``cursor["backoff"]`` and "needs attention: <reason>" on
  the inbox.
- Everything found is ingested with ``ingest_many`` and committed once per poll, with the cursor (also when the
  poll ended early: what was read before the failure is kept). A deleted comment is never deleted here.
- The login session (instaloader's cookie dict) is stored encrypted in ``Inbox.secrets`` and written back when
  Instagram refreshed it.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import instaloader
from instaloader import Instaloader, Post, Profile, RateController
from sqlalchemy.orm import Session

from connectors import instagram
from connectors.errors import ChannelAuthError, ChannelError, PermanentError, TemporaryError
from inbox.crypto import decrypt_json, encrypt_json
from inbox.db import utcnow
from inbox.errors import SecretError
from inbox.ingest import Inbound, ingest_many
from inbox.models import Inbox
from inbox.runtime import Storage

log = logging.getLogger(__name__)

RECENT_POSTS = 12  # one page of the profile's timeline
RECENT_TAGGED = 12
MAX_COMMENTS_PER_POST = 500  # per poll; the rest comes with the next one
SEEN_PER_POST = 2000  # comment ids remembered per post
SEEN_TAGGED = 200
BACKOFF_BASE = 300.0  # seconds after the first failure, doubled per further failure
BACKOFF_MAX = 6 * 3600.0
MAX_RATE_WAIT = 30.0  # the longest the rate controller may sleep inside a poll

LoaderFactory = Callable[
    [Mapping[str, Any], str | None, Mapping[str, Any] | None, Mapping[str, list[float]]],
    "tuple[Instaloader, PollRateController]",
]


class PollRateController(RateController):
    """Instaloader's rate controller, with two changes for a worker:

    - its request history comes from, and goes back to, the inbox's cursor (wall-clock times), since each poll
      builds a new Instaloader, often in a new forked process, while Instagram's limits span the hour;
    - a long wait ends the poll (``RateLimited``) instead of blocking a worker for up to half an hour; the
      backoff brings the inbox back later.
    """

    def __init__(self, context: instaloader.InstaloaderContext, *, history: Mapping[str, list[float]],
                 max_wait: float) -> None:
        super().__init__(context)
        offset = time.time() - time.monotonic()
        self._query_timestamps = {kind: [t - offset for t in times] for kind, times in history.items()}
        self.max_wait = max_wait

    def sleep(self, secs: float) -> None:
        if secs > self.max_wait:
            raise instagram.RateLimited(secs)
        time.sleep(secs)

    def history(self) -> dict[str, list[float]]:
        """The requests of the last hour (the longest window instaloader looks at), as wall-clock times."""
        offset = time.time() - time.monotonic()
        cutoff = time.time() - 3600
        out = {kind: [round(t + offset, 3) for t in times if t + offset > cutoff]
               for kind, times in self._query_timestamps.items()}
        return {kind: times for kind, times in out.items() if times}


def make_loader(config: Mapping[str, Any], login: str | None, session_data: Mapping[str, Any] | None,
                history: Mapping[str, list[float]]) -> tuple[Instaloader, PollRateController]:
    """An Instaloader that downloads nothing to disk, logged in with the stored session when there is one."""
    max_wait = float(config.get("max_rate_wait", MAX_RATE_WAIT))
    controllers: list[PollRateController] = []

    def controller(context: instaloader.InstaloaderContext) -> PollRateController:
        controllers.append(PollRateController(context, history=history, max_wait=max_wait))
        return controllers[-1]

    loader = Instaloader(
        sleep=bool(config.get("sleep", True)),  # instaloader's short random pause before each request
        quiet=True,
        download_pictures=False,
        download_videos=False,
        download_video_thumbnails=False,
        save_metadata=False,
        compress_json=False,
        max_connection_attempts=int(config.get("max_attempts", 2)),
        request_timeout=float(config.get("timeout", 30)),
        rate_controller=controller,
        resume_prefix=None,
    )
    if login and session_data:
        loader.load_session(login, dict(session_data))
    return loader, controllers[-1]


@dataclass
class InstagramSyncResult:
    posts: int = 0  # posts of the watch window looked at
    posts_fetched: int = 0  # of which the comments were fetched (new post or changed count)
    posts_skipped: int = 0  # gone between the listing and the comments (deleted posts)
    comments: int = 0  # comments and answers read
    tagged: int = 0  # tagged posts read
    stored: int = 0
    duplicates: int = 0
    too_old: int = 0  # first poll only: older than the inbox's ``backfill_days``, marked seen, not stored
    skipped: str | None = None

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items() if v is not None)


@dataclass
class _Walk:
    """What one poll found, and the cursor parts that are complete (a post counts once all of it was read)."""

    shop: str
    inbounds: list[Inbound] = field(default_factory=list)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tagged: list[str] = field(default_factory=list)
    profile_id: str | None = None
    result: InstagramSyncResult = field(default_factory=InstagramSyncResult)


# --- the walk (network, no database) -------------------------------------------------------------------------


def _comment_node(item: Any) -> dict[str, Any]:
    """A plain node from instaloader's ``PostComment``/``PostCommentAnswer``; the owner's node is read as
    instaloader holds it, since reading ``owner.full_name`` could fetch the commenter's whole profile."""
    return {
        "id": item.id,
        "created_at": item.created_at_utc,
        "text": item.text,
        "owner": instaloader.get_json_structure(item.owner)["node"],
    }


def _walk_comments(post: Post, ref: instagram.PostRef, state: Mapping[str, Any] | None, count: int | None,
                   walk: _Walk) -> dict[str, Any]:
    """Read a changed post's comments and answers; known ids are skipped, unknown ones become inbounds.

    All of them: the count cannot say where the new ones are, since Instagram lists comments in its own order
    (not by time) and a deleted comment hides a new one from a count difference.
    """
    seen: dict[str, None] = dict.fromkeys(state.get("seen", []) if state else [])
    for number, comment in enumerate(post.get_comments()):
        if number >= MAX_COMMENTS_PER_POST:
            break
        items: list[tuple[Any, str | None]] = [(comment, None)]
        items.extend((answer, str(comment.id)) for answer in comment.answers)
        for item, parent in items:
            walk.result.comments += 1
            comment_id = str(item.id)
            if comment_id in seen:
                continue
            seen[comment_id] = None
            inbound = instagram.parse_comment(_comment_node(item), ref, parent_id=parent, shop=walk.shop)
            if inbound is not None:
                walk.inbounds.append(inbound)
    return {"comments": count if count is not None else -1, "seen": list(seen)[-SEEN_PER_POST:]}


def _walk_posts(profile: Profile, cursor: Mapping[str, Any], limit: int, walk: _Walk) -> None:
    known: Mapping[str, Any] = cursor.get("posts") or {}
    walk.posts = dict(known)  # until the window is read to its end, posts not reached keep their state
    window: dict[str, dict[str, Any]] = {}
    for post in islice(profile.get_posts(), limit):
        node = instaloader.get_json_structure(post)["node"]
        ref = instagram.parse_post(node)
        count = instagram.comment_count(node)
        walk.result.posts += 1
        state = known.get(ref.shortcode)
        if state is not None and count is not None and state.get("comments") == count:
            window[ref.shortcode] = state  # nothing new (or as many deleted as added): no request
            continue
        walk.result.posts_fetched += 1
        if count == 0:
            window[ref.shortcode] = {"comments": 0, "seen": list(state.get("seen", [])) if state else []}
        else:
            try:
                window[ref.shortcode] = _walk_comments(post, ref, state, count, walk)
            except (instaloader.QueryReturnedNotFoundException, instaloader.BadResponseException,
                    instaloader.PostChangedException) as exc:
                # Deleted (or re-coded) since the listing: this post only; it is asked again next time.
                log.info("instagram: post %s skipped: %s", ref.shortcode, exc)
                walk.result.posts_skipped += 1
                if state is not None:
                    window[ref.shortcode] = dict(state)
                continue
        walk.posts[ref.shortcode] = window[ref.shortcode]
    walk.posts = window  # posts that left the window are forgotten (and no longer watched)


def _walk_tagged(profile: Profile, cursor: Mapping[str, Any], limit: int, walk: _Walk) -> None:
    known = list(cursor.get("tagged") or [])
    walk.tagged = known
    fresh: list[str] = []
    for post in islice(profile.get_tagged_posts(), limit):
        if post.shortcode in known:
            break  # newest first: everything after this one was seen
        walk.result.tagged += 1
        fresh.append(post.shortcode)
        inbound = instagram.parse_tagged_post(instaloader.get_json_structure(post)["node"], shop=walk.shop)
        if inbound is not None:
            walk.inbounds.append(inbound)
    walk.tagged = (fresh + known)[:SEEN_TAGGED]


def walk_profile(loader: Instaloader, config: Mapping[str, Any], cursor: Mapping[str, Any], walk: _Walk) -> None:
    """Read what is new; fills ``walk`` as it goes, so that a failure half-way keeps what was read."""
    if cursor.get("profile_id"):
        # Known user id: skip the profile page request; get_posts asks the profile query anyway.
        profile = Profile(loader.context, {"id": int(cursor["profile_id"]), "username": walk.shop})
    else:
        profile = Profile.from_username(loader.context, walk.shop)
    walk.profile_id = str(profile.userid)
    _walk_posts(profile, cursor, int(config.get("recent_posts", RECENT_POSTS)), walk)
    if config.get("watch_tagged", True):
        _walk_tagged(profile, cursor, int(config.get("recent_tagged", RECENT_TAGGED)), walk)


# --- one poll ----------------------------------------------------------------------------------------------


def backoff_delay(failures: int, base: float = BACKOFF_BASE, retry_after: float | None = None) -> float:
    """Seconds to wait after ``failures`` failed polls in a row: base, 2×base, 4×base, ... up to 6 hours."""
    delay = min(base * 2.0 ** max(failures - 1, 0), BACKOFF_MAX)
    return float(max(delay, retry_after or 0.0))


@dataclass
class _Job:
    """What a poll needs from the inbox row, read in a short transaction before any request is made."""

    shop: str
    login: str
    session_data: dict[str, Any]
    config: dict[str, Any]
    cursor: dict[str, Any]
    secrets: dict[str, Any]


def sync_instagram_inbox(
    storage: Storage,
    inbox_id: int,
    *,
    loader_factory: LoaderFactory = make_loader,
    now: dt.datetime | None = None,
) -> InstagramSyncResult:
    """Poll one Instagram inbox; raises ``ChannelError`` kinds (reason "needs attention: ...") after recording
    them on the inbox, as ``workers.inbound.sync_and_record`` expects.

    No transaction is open while Instagram is asked (a poll may take a minute of polite pauses, and on SQLite a
    transaction holds the database's write lock): the inbox is read first, then written once with the results.
    """
    now = now or utcnow()
    job = _prepare(storage, inbox_id, now)
    if job is None:
        return InstagramSyncResult(skipped="Graph API mode: messages arrive by webhook")
    walk = _Walk(shop=job.shop)
    failure: ChannelError | None = None
    try:
        loader, rate = loader_factory(job.config, job.login, job.session_data, job.cursor.get("rate") or {})
    except (KeyError, TypeError, ValueError, instaloader.InstaloaderException) as exc:
        error = ChannelAuthError(f"{instagram.ATTENTION}the stored Instagram session is unusable ({exc!r})")
        with storage.factory() as session:
            raise _fail(session, _inbox(session, inbox_id), job.cursor, error, now) from exc
    try:
        walk_profile(loader, job.config, job.cursor, walk)
    except (instaloader.InstaloaderException, instaloader.AbortDownloadException, instagram.RateLimited) as exc:
        failure = instagram.classify_failure(exc)
        log.warning("instagram inbox %s: %s", inbox_id, failure.reason)
    except (KeyError, TypeError, ValueError) as exc:  # Instagram changed a JSON shape under instaloader
        log.exception("instagram inbox %s: unexpected answer", inbox_id)
        failure = TemporaryError(f"{instagram.ATTENTION}Instagram answered in an unknown format ({exc!r})"[:500])
    finally:
        refreshed = loader.save_session() if loader.context.is_logged_in else None
        loader.close()  # type: ignore[no-untyped-call]
    cursor = {**job.cursor, "rate": rate.history()}
    with storage.factory() as session:
        inbox = _inbox(session, inbox_id)
        _store(session, inbox, walk, cursor, _backfill_cutoff(job.config, job.cursor, now))
        if refreshed and refreshed != job.session_data:
            inbox.secrets = encrypt_json(storage.settings.secret_key, {**job.secrets, "session": refreshed})
        if failure is not None:
            raise _fail(session, inbox, inbox.cursor, failure, now)
        cursor = copy.deepcopy(inbox.cursor)
        cursor.pop("backoff", None)
        inbox.cursor = cursor
        inbox.last_sync_at = now
        inbox.credential_state = "ok"
        session.commit()
    return walk.result


def _inbox(session: Session, inbox_id: int) -> Inbox:
    inbox = session.get(Inbox, inbox_id)
    if inbox is None or inbox.channel != instagram.CHANNEL:
        raise PermanentError(f"inbox {inbox_id} is not an Instagram inbox")
    return inbox


def _prepare(storage: Storage, inbox_id: int, now: dt.datetime) -> _Job | None:
    """Read the inbox; None for a webhook-only inbox. Failures found here are recorded and raised."""
    with storage.factory() as session:
        inbox = _inbox(session, inbox_id)
        config = dict(inbox.config or {})
        cursor = copy.deepcopy(inbox.cursor or {})
        if config.get("mode") == "graph" and not config.get("profile"):
            return None
        _check_backoff(cursor, now)
        try:
            secrets = decrypt_json(storage.settings.secret_key, inbox.secrets)
        except SecretError as exc:
            raise _fail(session, inbox, cursor, ChannelAuthError(f"{instagram.ATTENTION}{exc}"), now) from exc
        shop = instagram.normalize_username(str(config.get("profile") or inbox.address or ""))
        login, session_data = secrets.get("login"), secrets.get("session")
        if not shop:
            raise _fail(session, inbox, cursor, PermanentError(f"{instagram.ATTENTION}no profile configured"), now)
        if not login or not isinstance(session_data, dict) or not session_data:
            # Instagram shows comments to logged-in sessions only (instaloader raises LoginRequiredException).
            error = ChannelAuthError(f"{instagram.ATTENTION}login required: no Instagram session stored "
                                     "(helpline inbox add instagram --update --login USER --session-file F)")
            raise _fail(session, inbox, cursor, error, now)
        session.rollback()  # nothing to write: end the read transaction before Instagram is asked
        return _Job(shop, str(login), session_data, config, cursor, secrets)


def _check_backoff(cursor: Mapping[str, Any], now: dt.datetime) -> None:
    backoff = cursor.get("backoff") or {}
    until = backoff.get("until")
    if until and dt.datetime.fromisoformat(until) > now:
        wait = (dt.datetime.fromisoformat(until) - now).total_seconds()
        reason = f"{backoff.get('reason', instagram.ATTENTION + 'backing off')}; next try after {until[:16]}Z"
        # Still failing: raising keeps the inbox shown as "needs attention" while nothing is requested.
        if backoff.get("auth"):
            raise ChannelAuthError(reason, retry_after=wait)
        raise TemporaryError(reason, retry_after=wait)


def _backfill_cutoff(config: Mapping[str, Any], cursor: Mapping[str, Any], now: dt.datetime) -> dt.datetime | None:
    """On an inbox's first poll, comments older than ``backfill_days`` are history, not new tickets."""
    days = config.get("backfill_days")
    if "posts" in cursor or days is None:
        return None
    return now - dt.timedelta(days=float(days))


def _store(session: Session, inbox: Inbox, walk: _Walk, cursor: dict[str, Any],
           cutoff: dt.datetime | None = None) -> None:
    inbounds = walk.inbounds
    if cutoff is not None:
        inbounds = [i for i in inbounds if i.sent_at is None or i.sent_at >= cutoff]
        walk.result.too_old = len(walk.inbounds) - len(inbounds)
    stored = ingest_many(session, inbox.id, inbounds) if inbounds else []
    walk.result.stored = sum(1 for m in stored if m is not None)
    walk.result.duplicates = len(stored) - walk.result.stored
    cursor = copy.deepcopy(cursor)  # a new object, so the JSON column is seen as changed
    if walk.profile_id:
        cursor["profile_id"] = walk.profile_id
    if walk.posts:
        cursor["posts"] = walk.posts
    cursor["tagged"] = walk.tagged or cursor.get("tagged") or []
    inbox.cursor = cursor


def _fail(session: Session, inbox: Inbox, cursor: Mapping[str, Any], error: ChannelError,
          now: dt.datetime) -> ChannelError:
    """Record the failure and the next backoff on the inbox, commit (with what the poll read), return it."""
    state: dict[str, Any] = copy.deepcopy(dict(cursor))
    failures = int((state.get("backoff") or {}).get("failures", 0)) + 1
    base = float((inbox.config or {}).get("backoff_base", BACKOFF_BASE))
    delay = backoff_delay(failures, base, error.retry_after)
    auth = isinstance(error, ChannelAuthError)
    state["backoff"] = {
        "failures": failures,
        "until": (now + dt.timedelta(seconds=delay)).isoformat(),
        "reason": error.reason,
        "auth": auth,
    }
    inbox.cursor = state
    inbox.last_error = error.reason[:2000]
    inbox.last_error_at = now
    if auth:
        inbox.credential_state = "needs_reauth"
    session.commit()
    error.retry_after = delay
    return error
