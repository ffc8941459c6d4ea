"""A stand-in for www.instagram.com at the HTTP layer, for the real instaloader 4.16 code to talk to.

It answers the requests instaloader makes for ``Profile.from_username``, ``Profile.get_posts`` (logged in),
``Post.get_comments`` (GraphQL, and the iPhone API past 12 comments), threaded answers and
``Profile.get_tagged_posts``, paginated, in the JSON shapes instaloader 4.16 reads (hand-built from its source:
the doc_ids/query_hashes, paths and fields below; node templates in tests/data/instagram/*.json). It refuses
anything else: ``unexpected`` lists every request it did not know, and the fixture asserts it stays empty.

Mounted as a ``requests`` transport adapter on every ``requests.Session`` (instaloader makes several: anonymous,
logged-in, and short-lived GraphQL copies), so nothing leaves the process.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

DATA = Path(__file__).resolve().parents[1] / "data" / "instagram"
SESSION = {"sessionid": "sess-123", "csrftoken": "csrf-123", "ds_user_id": "1001", "mid": "mid-1"}

# doc_ids and query_hashes of instaloader 4.16 (structures.py)
DOC_PROFILE = "27937681195819736"  # Profile._obtain_metadata, logged in
DOC_TIMELINE = "29104886249145907"  # Profile.get_posts, logged in, api/graphql
DOC_MEDIA = "27128499623469141"  # Post._obtain_metadata
HASH_COMMENTS = "97b41c52301f77ce508f55e66d17620e"  # Post.get_comments
HASH_ANSWERS = "51fdd02b67508306ad4484ff574a0b62"  # threaded answers beyond the preview
HASH_TAGGED = "e31a871f7301132ceaab56507a66bbb7"  # Profile.get_tagged_posts


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@dataclass
class FakePost:
    code: str
    pk: str
    taken_at: int
    caption: str = ""
    image: str = ""
    comments: list[dict[str, Any]] = field(default_factory=list)  # GraphQL comment nodes, with answers inside

    def comment_count(self) -> int:
        return sum(1 + len(c["edge_threaded_comments"]["edges"]) for c in self.comments)


@dataclass
class Canned:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


LOGIN_REDIRECT = Canned(302, headers={"location": "https://www.instagram.com/accounts/login/?next=%2F"})
TOO_MANY = Canned(429, {"message": "Please wait a few minutes before you try again.", "status": "fail"})
CHECKPOINT = Canned(400, {"message": "checkpoint_required", "checkpoint_url": "/challenge/", "status": "fail"})


class FakeInstagram(BaseAdapter):
    def __init__(self, shop: str = "shop", shop_id: str = "1001") -> None:
        super().__init__()
        self.shop, self.shop_id = shop, shop_id
        self.posts: list[FakePost] = []  # newest first, as the timeline lists them
        self.tagged: list[dict[str, Any]] = []  # GraphQL post nodes, newest first
        self.timeline_page = 12
        self.comments_page = 12  # GraphQL comments per page (instaloader asks for 12)
        self.iphone_comments_page = 12  # iPhone API comments per page (next_min_id)
        self.answers_preview = 3  # answers shown inside a comment; more are fetched separately
        self.failures: dict[str, list[Canned]] = {}  # route -> answers to give before the normal ones
        self.log: list[tuple[str, str]] = []  # (route, detail)
        self.unexpected: list[str] = []
        self.on_request: Callable[[str], None] | None = None  # called with each known route before it is answered
        self._seq = 0

    # --- building the scenario ---

    def next_id(self) -> str:
        self._seq += 1
        return f"1780000000000{self._seq:04d}"

    def add_post(self, code: str, caption: str = "", taken_at: int = 1_760_000_000) -> FakePost:
        post = FakePost(code, str(3_000_000_000 + len(self.posts)), taken_at, caption,
                        f"https://scontent.cdninstagram.test/{code}.jpg")
        self.posts.insert(0, post)
        return post

    def comment(self, post: FakePost, username: str, text: str, *, created_at: int = 1_760_000_100,
                answer_to: str | None = None, comment_id: str | None = None, full_name: str = "") -> str:
        node = copy.deepcopy(load("comment_node.json"))
        node.update(id=comment_id or self.next_id(), text=text, created_at=created_at)
        # GraphQL comment owners carry no full name; the iPhone API's do (kept here, left out of GraphQL answers)
        node["owner"].update(username=username, id=str(abs(hash(username)) % 10**9), full_name=full_name)
        if answer_to is None:
            post.comments.append(node)
        else:
            parent = next(c for c in post.comments if c["id"] == answer_to)
            node.pop("edge_threaded_comments")
            parent["edge_threaded_comments"]["edges"].append({"node": node})
            parent["edge_threaded_comments"]["count"] += 1
        return str(node["id"])

    def delete_comment(self, post: FakePost, comment_id: str) -> None:
        post.comments = [c for c in post.comments if c["id"] != comment_id]

    def add_tagged(self, code: str, username: str, caption: str, taken_at: int = 1_760_000_500) -> None:
        node = copy.deepcopy(load("tagged_node.json"))
        node.update(shortcode=code, id=str(4_000_000_000 + len(self.tagged)), taken_at_timestamp=taken_at,
                    display_url=f"https://scontent.cdninstagram.test/{code}.jpg")
        node["edge_media_to_caption"]["edges"][0]["node"]["text"] = caption
        node["owner"].update(username=username, id=str(abs(hash(username)) % 10**9))
        self.tagged.insert(0, node)

    def fail(self, route: str, *answers: Canned) -> None:
        self.failures.setdefault(route, []).extend(answers)

    def routes(self) -> list[str]:
        return [route for route, _ in self.log]

    # --- the transport ---

    def close(self) -> None:
        pass

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urlsplit(request.url or "")
        if url.scheme != "https" or url.hostname not in ("www.instagram.com", "i.instagram.com"):
            self.unexpected.append(f"{request.method} {request.url}")
            raise requests.ConnectionError(f"refused by the test transport: {request.url}")
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if request.method == "POST" and request.body:
            body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
            params.update({k: v[0] for k, v in parse_qs(body).items()})
        route, detail = self._route(url.hostname or "", request.method or "", url.path, params)
        self.log.append((route, detail))
        if self.on_request is not None:
            self.on_request(route)
        if route == "unknown":
            self.unexpected.append(f"{request.method} {request.url} {params}")
            return self._response(request, Canned(404, {"message": "not in the fake", "status": "fail"}))
        if self.failures.get(route):
            return self._response(request, self.failures[route].pop(0))
        if route not in ("profile_page", "home_page") and not self._logged_in(request):
            return self._response(request, LOGIN_REDIRECT)  # these endpoints answer logged-in sessions only
        handlers = {"profile_page": self._profile_page, "home_page": self._home_page, "profile": self._profile,
                    "timeline": self._timeline, "media": self._media_info, "comments": self._comments,
                    "tagged": self._tagged, "answers": self._answers, "iphone_comments": self._iphone_comments,
                    "iphone_answers": self._iphone_answers}
        return self._response(request, handlers[route](params))

    def _route(self, host: str, method: str, path: str, params: Mapping[str, str]) -> tuple[str, str]:
        if host == "i.instagram.com":
            if method == "GET" and (match := re.fullmatch(r"/api/v1/media/(\d+)/comments/", path)):
                return "iphone_comments", f"{match[1]}@{params.get('min_id', '')}"
            if method == "GET" and (match := re.fullmatch(r"/api/v1/media/(\d+)/comments/(\d+)/child_comments/",
                                                          path)):
                return "iphone_answers", f"{match[1]}/{match[2]}"
            return "unknown", f"{method} {host}{path}"
        variables = json.loads(params.get("variables", "{}") or "{}")
        doc_id, query_hash = params.get("doc_id"), params.get("query_hash")
        after = variables.get("after") or ""
        if method == "GET" and path == f"/{self.shop}/":
            return "profile_page", ""
        if method == "GET" and path == "/":
            return "home_page", ""
        if method == "POST" and path == "/graphql/query" and doc_id == DOC_PROFILE:
            return "profile", variables.get("id", "")
        if method == "POST" and path == "/api/graphql" and doc_id == DOC_TIMELINE:
            return "timeline", after
        if method == "POST" and path == "/graphql/query" and doc_id == DOC_MEDIA:
            return "media", variables.get("shortcode", "")
        if method == "GET" and path == "/graphql/query" and query_hash == HASH_COMMENTS:
            return "comments", f"{variables.get('shortcode')}@{after}"
        if method == "GET" and path == "/graphql/query" and query_hash == HASH_TAGGED:
            return "tagged", after
        if method == "GET" and path == "/graphql/query" and query_hash == HASH_ANSWERS:
            return "answers", f"{variables.get('comment_id')}@{after}"
        return "unknown", f"{method} {path}"

    @staticmethod
    def _logged_in(request: requests.PreparedRequest) -> bool:
        if "sessionid=sess-123" in request.headers.get("Cookie", ""):
            return True
        # The iPhone API: instaloader derives a bearer token from the session cookies and drops the cookies.
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer IGT:2:"):
            token = json.loads(base64.b64decode(bearer.removeprefix("Bearer IGT:2:")))
            return bool(token.get("sessionid") == "sess-123")
        return False

    def _response(self, request: requests.PreparedRequest, canned: Canned) -> requests.Response:
        resp = requests.Response()
        resp.status_code = canned.status
        resp.reason = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}.get(
            canned.status, "Error")
        resp.url = request.url or ""
        resp.request = request
        headers = dict(canned.headers)
        if isinstance(canned.body, str):
            resp._content = canned.body.encode()
            headers.setdefault("Content-Type", "text/html; charset=utf-8")
        else:
            resp._content = json.dumps(canned.body if canned.body is not None else {}).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        resp.headers = CaseInsensitiveDict(headers)
        resp.encoding = "utf-8"
        return resp

    # --- answers, in the shapes instaloader reads ---

    def _user(self) -> dict[str, Any]:
        return {"pk": self.shop_id, "id": self.shop_id, "username": self.shop, "full_name": "The Shop",
                "is_private": False, "profile_pic_url": "https://scontent.cdninstagram.test/shop.jpg"}

    def _profile_page(self, _params: Mapping[str, str]) -> Canned:
        embedded = {"require": [["ScheduledServerJS", "handle", None, [{"__bbox": {"require": [[
            "RelayPrefetchedStreamCache", "next", [], ["adp_PolarisProfilePageContentQuery", {"__bbox": {
                "complete": True, "result": {"data": {"xig_user_by_username": {**self._user(), "id": "page-id-1"}}},
            }}]]]}}]]]}
        # "id" on the page is not the user id; instaloader takes "pk".
        html = ('<!DOCTYPE html><html><head></head><body><script type="application/json" data-sjs>'
                f"{json.dumps(embedded)}</script></body></html>")
        return Canned(200, html)

    def _home_page(self, _params: Mapping[str, str]) -> Canned:
        html = ('<html><script>["DTSGInitialData",[],{"token":"dtsg-1"},258]'
                '["LSD",[],{"token":"lsd-1"},323] {"IG_USER_EIMU":"1001"}</script></html>')
        return Canned(200, html)

    def _profile(self, _params: Mapping[str, str]) -> Canned:
        user = {**self._user(), "media_count": len(self.posts), "follower_count": 10, "following_count": 5,
                "friendship_status": {"following": False, "followed_by": False, "blocking": False}}
        return Canned(200, {"data": {"user": user}, "status": "ok"})

    def _media(self, post: FakePost) -> dict[str, Any]:
        media = copy.deepcopy(load("timeline_media.json"))
        media.update(code=post.code, pk=post.pk, id=f"{post.pk}_{self.shop_id}", taken_at=post.taken_at,
                     comment_count=post.comment_count(), caption={"text": post.caption} if post.caption else None)
        media["image_versions2"]["candidates"][0]["url"] = post.image
        media["user"] = self._user()
        return media

    def _timeline(self, params: Mapping[str, str]) -> Canned:
        if "lsd" not in params or "fb_dtsg" not in params:
            return Canned(400, {"message": "missing web app tokens", "status": "fail"})
        variables = json.loads(params["variables"])
        start = int(variables.get("after") or 0)
        page = self.posts[start : start + self.timeline_page]
        more = start + self.timeline_page < len(self.posts)
        connection = {"edges": [{"node": self._media(p), "cursor": str(start + i)} for i, p in enumerate(page)],
                      "page_info": {"has_next_page": more, "end_cursor": str(start + len(page)) if more else None}}
        return Canned(200, {"data": {"xdt_api__v1__feed__user_timeline_graphql_connection": connection}})

    def _post(self, code: str) -> FakePost:
        return next(p for p in self.posts if p.code == code)

    def _media_info(self, params: Mapping[str, str]) -> Canned:
        return Canned(200, {"data": {"xdt_api__v1__media__shortcode__web_info": {
            "items": [self._media(self._post(json.loads(params["variables"])["shortcode"]))]}}, "status": "ok"})

    def _comments(self, params: Mapping[str, str]) -> Canned:
        variables = json.loads(params["variables"])
        post = self._post(variables["shortcode"])
        start = int(variables.get("after") or 0)
        page = post.comments[start : start + self.comments_page]
        more = start + self.comments_page < len(post.comments)
        connection = {"count": post.comment_count(), "edges": [{"node": self._graphql(n)} for n in page],
                      "page_info": {"has_next_page": more, "end_cursor": str(start + len(page)) if more else None}}
        return Canned(200, {"data": {"shortcode_media": {"edge_media_to_parent_comment": connection}},
                            "status": "ok"})

    def _graphql(self, node: dict[str, Any], *, preview: bool = True) -> dict[str, Any]:
        out = copy.deepcopy(node)
        out["owner"].pop("full_name", None)
        if "edge_threaded_comments" in out:
            answers = out["edge_threaded_comments"]["edges"]
            kept = answers[: self.answers_preview] if preview else answers
            out["edge_threaded_comments"]["edges"] = [{"node": self._graphql(a["node"])} for a in kept]
            out["edge_threaded_comments"]["page_info"]["has_next_page"] = len(kept) < len(answers)
        return out

    def _parent(self, comment_id: str) -> dict[str, Any]:
        return next(c for p in self.posts for c in p.comments if str(c["id"]) == str(comment_id))

    def _answers(self, params: Mapping[str, str]) -> Canned:
        variables = json.loads(params["variables"])
        answers = self._parent(variables["comment_id"])["edge_threaded_comments"]["edges"]
        start = int(variables.get("after") or 0)
        page = answers[start : start + 12]
        more = start + 12 < len(answers)
        connection = {"count": len(answers), "edges": [{"node": self._graphql(a["node"])} for a in page],
                      "page_info": {"has_next_page": more, "end_cursor": str(start + len(page)) if more else None}}
        return Canned(200, {"data": {"comment": {"edge_threaded_comments": connection}}, "status": "ok"})

    @staticmethod
    def _iphone(node: Mapping[str, Any]) -> dict[str, Any]:
        owner = node["owner"]
        user = {"pk": owner["id"], "username": owner["username"], "full_name": owner.get("full_name", ""),
                "is_private": False, "is_verified": False, "profile_pic_url": owner["profile_pic_url"]}
        out = copy.deepcopy(load("iphone_comment_node.json"))
        out.update(pk=str(node["id"]), text=node["text"], created_at=node["created_at"],
                   created_at_utc=node["created_at"], user=user, user_id=owner["id"])
        return out

    def _iphone_comments(self, params: Mapping[str, str]) -> Canned:
        path_pk = self.log[-1][1].split("@")[0]
        post = next(p for p in self.posts if p.pk == path_pk)
        start = int(params.get("min_id") or 0)
        page = post.comments[start : start + self.iphone_comments_page]
        nodes = []
        for comment in page:
            node = self._iphone(comment)
            answers = [a["node"] for a in comment["edge_threaded_comments"]["edges"]]
            node["child_comment_count"] = len(answers)
            node["preview_child_comments"] = [self._iphone(a) for a in answers[: self.answers_preview]]
            nodes.append(node)
        body: dict[str, Any] = {"comments": nodes, "comment_count": post.comment_count(), "status": "ok"}
        if start + len(page) < len(post.comments):
            body["next_min_id"] = str(start + len(page))
        return Canned(200, body)

    def _iphone_answers(self, _params: Mapping[str, str]) -> Canned:
        parent_id = self.log[-1][1].split("/")[1]
        answers = [a["node"] for a in self._parent(parent_id)["edge_threaded_comments"]["edges"]]
        return Canned(200, {"child_comments": [self._iphone(a) for a in answers], "status": "ok"})

    def _tagged(self, params: Mapping[str, str]) -> Canned:
        variables = json.loads(params["variables"])
        start = int(variables.get("after") or 0)
        page = self.tagged[start : start + 12]
        more = start + 12 < len(self.tagged)
        connection = {"count": len(self.tagged), "edges": [{"node": n} for n in page],
                      "page_info": {"has_next_page": more, "end_cursor": str(start + len(page)) if more else None}}
        return Canned(200, {"data": {"user": {"edge_user_to_photos_of_you": connection}}, "status": "ok"})


def installed(fake: FakeInstagram, monkeypatch: Any) -> Iterator[FakeInstagram]:
    """Route every non-loopback request of every requests.Session to ``fake`` (loopback stays real, for stubs)."""
    original = requests.Session.get_adapter

    def get_adapter(self: requests.Session, url: str) -> BaseAdapter:
        if re.match(r"^https?://(127\.0\.0\.1|localhost)[:/]", url):
            return original(self, url)
        return fake

    monkeypatch.setattr(requests.Session, "get_adapter", get_adapter)
    yield fake
