"""Sender HTML made safe to show an agent: sanitised with nh3, remote content blocked until asked for.

The result is meant for a sandboxed iframe without scripts behind a strict CSP; this module is the first of
those layers, so it must hold on its own: no script, no event handler, no ``javascript:`` URL, no SVG, no
``<meta refresh>`` and, by default, no URL that makes the browser fetch anything (images, ``srcset``,
``background``, CSS ``url()``). ``cid:`` images stay, for the web layer to resolve to the same message's
attachments. Pure functions: no network, database or clock.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import nh3

_TAGS = (nh3.ALLOWED_TAGS - {"area", "map"}) | {"font", "center"}
_GLOBAL_ATTRS = {"style", "align", "valign", "dir", "lang", "title", "width", "height", "bgcolor", "color"}
_ATTRS: dict[str, set[str]] = {
    "*": _GLOBAL_ATTRS,
    "a": {"href", "name"},
    "img": {"src", "alt"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap"},
    "col": {"span"},
    "colgroup": {"span"},
    "font": {"face", "size"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "time": {"datetime"},
    "data": {"value"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}
# Links do nothing until clicked; images are the fetches we hold back.
_LINK_SCHEMES = {"http", "https", "mailto", "tel"}
_IMG_SCHEMES_REMOTE = {"http", "https", "cid"}
_REMOTE_URL = re.compile(r"^\s*(?:https?:)?//", re.I)
# CSS that can fetch or run something: url(), image-set(), @import, IE expression()/behavior, -moz-binding.
_CSS_DANGER = re.compile(r"url\s*\(|image-set|@import|expression\s*\(|behavior\s*:|-moz-binding|javascript:", re.I)
_CLEAN_CONTENT = {
    "script",
    "style",
    "title",
    "head",
    "svg",
    "math",
    "iframe",
    "object",
    "embed",
    "noscript",
    "template",
    "xml",
    "textarea",
    "select",
}


@dataclass(frozen=True)
class SafeHtml:
    html: str
    blocked: int  # remote resources held back; the UI offers "load remote images" only when > 0


def _filter_css(value: str) -> str | None:
    kept = [decl for decl in value.split(";") if decl.strip() and not _CSS_DANGER.search(decl)]
    return ";".join(kept) if kept else None


def _make_filter(allow_remote: bool, counter: list[int]) -> Callable[[str, str, str], str | None]:
    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr == "style":
            if "url" in value.lower():
                counter[0] += 1  # a CSS background is a remote fetch too; it stays out even when allowed
            return _filter_css(value)
        if tag == "img" and attr == "src":
            if value.lower().startswith("cid:"):
                return value
            if _REMOTE_URL.match(value):
                if allow_remote:
                    return value
                counter[0] += 1
                return None
            return None  # data:, relative paths and everything else never load
        return value

    return attribute_filter


def sanitize_html(source: str, *, allow_remote: bool = False) -> SafeHtml:
    """Sanitise sender HTML; with ``allow_remote`` remote images load (after the agent asked)."""
    counter = [0]
    cleaned = nh3.clean(
        source.replace("\x00", ""),
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT,
        attributes=_ATTRS,
        attribute_filter=_make_filter(allow_remote, counter),
        url_schemes=_LINK_SCHEMES | _IMG_SCHEMES_REMOTE,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return SafeHtml(cleaned, counter[0])


_BLOCK = re.compile(r"<\s*/?\s*(?:br|p|div|tr|h[1-6]|li|blockquote|table|hr|ul|ol|pre)\b[^>]*>", re.I)
_LI = re.compile(r"<\s*li\b[^>]*>", re.I)
_CELL = re.compile(r"<\s*/t[dh]\s*>", re.I)
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_BLANKS = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


def html_to_text(source: str) -> str:
    """Plain text of an HTML body, for search, previews and notifications (structure kept as line breaks)."""
    marked = _BLOCK.sub("\n", _CELL.sub("\t", _LI.sub("\n- ", source)))
    stripped = nh3.clean(marked, tags=set(), clean_content_tags=_CLEAN_CONTENT)
    text = htmllib.unescape(stripped)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


_CID_SRC = re.compile(r'src="cid:([^"]*)"')


def resolve_cid(safe_html: str, urls: Mapping[str, str]) -> str:
    """Point ``cid:`` images of sanitised HTML at the URLs of the same message's attachments (by Content-ID).

    ``urls`` maps Content-IDs (without angle brackets) to URLs the app serves to authorised agents; a ``cid:`` that
    names no attachment of this message loses its ``src``, so one message can never show another's files.
    """

    def swap(match: re.Match[str]) -> str:
        url = urls.get(htmllib.unescape(match.group(1)))
        return f'src="{htmllib.escape(url, quote=True)}"' if url else ""

    return _CID_SRC.sub(swap, safe_html)
