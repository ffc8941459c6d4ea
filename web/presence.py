"""Who is online: the agents' open Socket.IO connections, shared by every web process through Redis.

Each web process keeps its connections in a Redis hash of its own, ``helpline:presence:<process id>`` (socket id
-> user id, name, team ids), and renews the hash's expiry every ``REFRESH`` seconds. When a process dies without
saying goodbye, its hash expires after ``TTL`` seconds and its agents drop off. Readers (the live queue, the
teammates list) merge every process's hash. Renewing only extends the expiry; it never writes the entries again,
so a Redis that lost the key (a restart) learns of a connection again when it joins a room or reconnects.
Without Redis (one process) the same bookkeeping lives in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "helpline:presence:"
TTL = 90  # seconds: a process that has not renewed its connections for this long is gone
REFRESH = 30  # seconds between renewals


@dataclass(frozen=True)
class Online:
    user_id: int
    name: str
    teams: tuple[int, ...]


class Presence:
    """Connections by socket id, in Redis when configured, else in this process's memory."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis: Redis | None = (
            Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) if redis_url else None
        )
        self.key = f"{PREFIX}{uuid.uuid4().hex}"  # this process's hash
        self._local: dict[str, Online] = {}
        self._lock = threading.Lock()
        self._refresher: threading.Thread | None = None

    # -- writing ----------------------------------------------------------------------------------------------
    def add(self, sid: str, who: Online) -> None:
        with self._lock:
            self._local[sid] = who
        if self.redis is not None:
            value = json.dumps({"u": who.user_id, "n": who.name, "t": list(who.teams)})
            try:
                self.redis.pipeline().hset(self.key, sid, value).expire(self.key, TTL).execute()
            except RedisError:
                log.warning("presence: could not write to Redis", exc_info=True)
            self._start_refresher()

    def remove(self, sid: str) -> Online | None:
        with self._lock:
            found = self._local.pop(sid, None)
        if self.redis is not None:
            try:
                self.redis.hdel(self.key, sid)
            except RedisError:
                log.warning("presence: could not remove %s from Redis", sid, exc_info=True)
        return found

    def refresh(self) -> None:
        """Renew the expiry of this process's hash (every ``REFRESH`` seconds, from a background thread)."""
        if self.redis is None:
            return
        try:
            self.redis.expire(self.key, TTL)
        except RedisError:
            log.warning("presence: could not renew in Redis", exc_info=True)

    def _start_refresher(self) -> None:
        with self._lock:
            if self._refresher is not None:
                return
            self._refresher = threading.Thread(target=self._loop, name="presence-refresh", daemon=True)
        self._refresher.start()

    def _loop(self) -> None:
        while True:
            time.sleep(REFRESH)
            self.refresh()

    # -- reading ----------------------------------------------------------------------------------------------
    def connections(self) -> dict[str, Online]:
        """Every live connection of every web process."""
        if self.redis is None:
            with self._lock:
                return dict(self._local)
        out: dict[str, Online] = {}
        try:
            for key in self.redis.scan_iter(match=f"{PREFIX}*", count=100):
                raw: dict[Any, Any] = self.redis.hgetall(key)  # type: ignore[assignment]
                for sid, value in raw.items():
                    try:
                        data = json.loads(value)
                        who = Online(int(data["u"]), str(data["n"]), tuple(int(t) for t in data["t"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # not ours to read
                    out[sid.decode() if isinstance(sid, bytes) else str(sid)] = who
        except RedisError:
            log.warning("presence: Redis unreachable; showing this process's connections", exc_info=True)
            with self._lock:
                return dict(self._local)
        return out

    def local_sids(self, user_id: int) -> list[str]:
        """The socket ids of ``user_id`` connected to this process."""
        with self._lock:
            return [sid for sid, who in self._local.items() if who.user_id == user_id]

    def users(self, team_id: int | None = None) -> dict[int, str]:
        """Online users (id -> name), optionally only the members of one team."""
        return {who.user_id: who.name for who in self.connections().values() if team_id is None or team_id in who.teams}
