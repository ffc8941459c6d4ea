"""Managing tags themselves: rename, colour, merge one into another, delete, and how many tickets carry each.

SLA policies name a tag by its text (``SlaPolicy.tag``), so renaming or merging a tag rewrites them too: a
policy must keep applying to the same tickets.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from inbox.errors import InvalidChange
from inbox.models import Tag, TicketTag
from inbox.sla_models import SlaPolicy

COLORS = ("gray", "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink")


def clean_name(name: str) -> str:
    name = " ".join(name.split()).lower()[:60]
    if not name:
        raise InvalidChange("a tag needs a name")
    return name


def tag_counts(session: Session) -> list[tuple[Tag, int]]:
    """Every tag with its number of tickets, by name."""
    counts = select(TicketTag.tag_id, func.count().label("n")).group_by(TicketTag.tag_id).subquery()
    stmt = select(Tag, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.tag_id == Tag.id).order_by(Tag.name)
    return [(tag, int(n)) for tag, n in session.execute(stmt)]


def create_tag(session: Session, name: str, color: str = "") -> Tag:
    name = clean_name(name)
    if session.scalar(select(Tag.id).where(Tag.name == name)) is not None:
        raise InvalidChange(f"the tag {name!r} already exists")
    tag = Tag(name=name, color=_color(color))
    session.add(tag)
    session.flush()
    return tag


def _color(color: str) -> str:
    if color and color not in COLORS:
        raise InvalidChange(f"pick a colour from: {', '.join(COLORS)}")
    return color


def update_tag(session: Session, tag: Tag, *, name: str, color: str) -> None:
    """Rename and recolour; renaming onto another tag's name is refused (merge them instead)."""
    name = clean_name(name)
    if name != tag.name:
        if session.scalar(select(Tag.id).where(Tag.name == name, Tag.id != tag.id)) is not None:
            raise InvalidChange(f"the tag {name!r} already exists; merge into it instead")
        session.execute(update(SlaPolicy).where(SlaPolicy.tag == tag.name).values(tag=name))
        tag.name = name
    tag.color = _color(color)
    session.flush()


def merge_tags(session: Session, source: Tag, target: Tag) -> int:
    """Move ``source``'s tickets to ``target`` (a ticket with both keeps one) and delete ``source``.
    Returns how many tickets gained ``target``."""
    if source.id == target.id:
        raise InvalidChange("pick another tag to merge into")
    already = select(TicketTag.ticket_id).where(TicketTag.tag_id == target.id)
    moved = session.execute(
        update(TicketTag)
        .where(TicketTag.tag_id == source.id, TicketTag.ticket_id.not_in(already))
        .values(tag_id=target.id)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(TicketTag).where(TicketTag.tag_id == source.id))
    session.execute(update(SlaPolicy).where(SlaPolicy.tag == source.name).values(tag=target.name))
    session.delete(source)
    session.flush()
    session.expire_all()  # tickets' loaded tag lists are stale after the bulk update
    return int(getattr(moved, "rowcount", 0) or 0)


def delete_tag(session: Session, tag: Tag) -> int:
    """Delete a tag and take it off every ticket; returns how many tickets carried it. SLA policies that named
    it are switched off rather than left to match every ticket."""
    count = int(session.scalar(select(func.count()).select_from(TicketTag).where(TicketTag.tag_id == tag.id)) or 0)
    session.execute(delete(TicketTag).where(TicketTag.tag_id == tag.id))
    session.execute(update(SlaPolicy).where(SlaPolicy.tag == tag.name).values(active=False))
    session.delete(tag)
    session.flush()
    return count
