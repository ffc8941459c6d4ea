"""What a process needs to touch storage: settings, engine, session factory and blob store, built once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from inbox import events
from inbox.blobs import BlobStore
from inbox.config import Settings
from inbox.db import make_engine


@dataclass
class Storage:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    blobs: BlobStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        settings = settings.with_secret()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.sqlalchemy_url)
        blobs = BlobStore(settings.blob_dir)
        # Every session carries the blob store and the size limit, so ingest() needs only a session.
        factory = sessionmaker(
            engine,
            expire_on_commit=False,
            info={"blobs": blobs, "max_attachment_bytes": settings.max_attachment_bytes, "settings": settings},
        )
        events.install(factory)
        return cls(settings, engine, factory, blobs)

    def dispose(self) -> None:
        self.engine.dispose()
