"""A Telegram inbox set up in the browser's settings: the token checked with getMe, and the group-chat option."""

from __future__ import annotations

from sqlalchemy import select

from inbox.config import Settings
from inbox.models import Inbox
from inbox.runtime import Storage
from tests.telegram.botapi_stub import TOKEN, BotApiStub
from web import create_app
from web.channel_settings_views import form_of
from web.channel_setup import Connected, connect_from_form


def render_fields(settings: Settings, form: dict[str, str]) -> str:
    app = create_app(settings)
    try:
        with app.test_request_context():
            module = app.jinja_env.get_template("settings/_channel_fields.html").module
            return str(module.channel_fields("telegram", form, stored=True))  # type: ignore[attr-defined]
    finally:
        app.extensions["helpline"].dispose()


def test_group_chats_are_a_per_inbox_option_kept_when_editing(settings: Settings, storage: Storage,
                                                              tg: BotApiStub) -> None:
    form = {"name": "Shop bot", "api_base": tg.api_base, "token": TOKEN}
    with storage.factory() as session:
        done = connect_from_form(session, storage.settings, "telegram", form | {"groups": "1"})
        session.commit()
        assert isinstance(done, Connected) and done.inbox.config["groups"] is True
        assert "Shop Support" in done.test.summary  # getMe's name, shown on save
        edit = form_of(done.inbox)
    assert edit["groups"] == "1" and "token" not in edit
    html = render_fields(settings, edit)
    assert 'name="groups" value="1" checked' in html
    # Saved again from the edit form, unticked: groups are off, and the stored token is kept (write-only field).
    with storage.factory() as session:
        inbox = session.scalars(select(Inbox)).one()
        again = connect_from_form(session, storage.settings, "telegram", {k: v for k, v in edit.items()
                                                                         if k != "groups"}, inbox=inbox)
        session.commit()
        assert isinstance(again, Connected) and again.inbox.config["groups"] is False
    assert 'name="groups" value="1">' in render_fields(settings, form_of(again.inbox))
