"""The access token guards every path but /healthz; without one the service listens on loopback
only, unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from matchrcnn.serve.access import (
    COOKIE,
    TOKEN_ENV,
    AccessError,
    check_binding,
    is_loopback,
    same_token,
)
from matchrcnn.serve.service import SearchService
from tests.serve.conftest import TOKEN, make_client, search, tool_main

serve_main = tool_main("serve_gallery")
GUARDED = ("/", "/api/gallery", "/api/items/1/crop", "/api/items/1/image", "/docs",
           "/openapi.json", "/static/app.js", "/api/nothing-here")


@pytest.fixture(scope="module")
def guarded(service: SearchService) -> TestClient:
    with make_client(service, token=TOKEN) as client:
        yield client


def test_every_path_but_healthz_needs_the_token(guarded: TestClient, user_photo: Path) -> None:
    assert guarded.get("/healthz").status_code == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Cookie": f"{COOKIE}=wrong"}):
        for path in GUARDED:
            response = guarded.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert "access token" in response.json()["detail"]
            assert response.headers["www-authenticate"].startswith("Bearer")
        refused = guarded.post("/api/search", headers=headers,
                               files={"image": ("p.jpg", user_photo.read_bytes(), "image/jpeg")})
        assert refused.status_code == 401
    for path in GUARDED[:-1]:
        assert guarded.get(path, headers=bearer).status_code == 200, path
    assert guarded.get("/api/nothing-here", headers=bearer).status_code == 404
    answer = guarded.post("/api/search", headers=bearer, data={"min_score": "0"},
                          files={"image": ("p.jpg", user_photo.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["items"]


def test_a_browser_trades_the_token_in_the_address_for_a_cookie(service: SearchService,
                                                                 user_photo: Path) -> None:
    with make_client(service, token=TOKEN) as browser:
        wrong = browser.get("/?token=not-the-token", follow_redirects=False)
        assert wrong.status_code == 401 and COOKIE not in browser.cookies
        opened = browser.get(f"/?token={TOKEN}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get("/").status_code == 200  # the cookie now goes with every request
        assert browser.get("/api/gallery").status_code == 200
        assert search(browser, user_photo, min_score=0.0).status_code == 200


def test_comparison() -> None:
    assert same_token(TOKEN, TOKEN)
    assert not same_token(TOKEN[:-1], TOKEN)
    assert not same_token(TOKEN + "0", TOKEN)
    assert not same_token("", TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    check_binding(host, None, allow_public=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com",
                                  "localhost.example.com"])
def test_other_hosts_need_a_token_or_allow_public(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(AccessError, match=f"refusing to listen on {host} without an access"):
        check_binding(host, None, allow_public=False)
    check_binding(host, TOKEN, allow_public=False)
    check_binding(host, None, allow_public=True)


@pytest.mark.parametrize("token", ["", "short", "has space in it 0123", "semi;colon-0123456789",
                                   "plus+sign+0123456789"])
def test_tokens_that_cannot_travel_are_refused(token: str) -> None:
    with pytest.raises(AccessError, match="at least 16 characters"):
        check_binding("127.0.0.1", token, allow_public=False)


def test_the_tool_refuses_a_public_host_before_loading_anything(tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    """The refusal comes first: the weights and gallery named here do not even exist."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    missing = ["--config-file", "configs/synthetic/quickstart.yaml", "--weights",
               str(tmp_path / "none.pth"), "--gallery", str(tmp_path / "none")]
    assert serve_main([*missing, "--host", "0.0.0.0"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: refusing to listen on 0.0.0.0 without an access token")
    assert serve_main([*missing, "--host", "0.0.0.0", "--token", "short"]) == 1
    assert "at least 16 characters" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # the token from the environment lets it go on
    assert serve_main([*missing, "--host", "0.0.0.0"]) == 1
    error = capsys.readouterr().err  # now the missing weights are what stops it
    assert error.startswith("error: ") and "none.pth" in error and "refusing" not in error


@pytest.mark.parametrize(("flags", "message"), [
    (["--port", "0"], "--port must be in 1..65535"),
    (["--port", "70000"], "--port must be in 1..65535"),
    (["--max-upload-mb", "0.0"], "--max-upload-mb must be positive"),
    (["--max-waiting", "0"], "max_waiting must be a positive integer"),
    (["--max-pixels", "-5"], "max_pixels must be a positive integer"),
])
def test_the_tool_refuses_bad_settings_before_loading_anything(flags: list[str], message: str,
                                                               tmp_path: Path, capsys) -> None:
    assert serve_main(["--config-file", "configs/synthetic/quickstart.yaml", "--weights",
                       str(tmp_path / "none.pth"), "--gallery", str(tmp_path), *flags]) == 1
    assert capsys.readouterr().err == f"error: {message}, got {flags[1]}\n"
