"""Teams endpoint with authentication on: RS256 tokens checked against a local OpenID/JWKS server.

Only activities that make no outbound calls are sent (invokes, a reaction on an unknown
reply): replying with auth on would need an Azure AD token for the bot itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from adapters.factory import Services
from adapters.settings import Settings
from adapters.teams.botframework import BotFrameworkConfig, BotFrameworkGateway
from adapters.teams.http import teams_router
from tests.fakes.openid_server import OpenIdServer, new_key
from tests.fakes.teams_connector import Activities, serve

APP_ID = "11111111-2222-3333-4444-555555555555"
SERVICE_URL = "https://smba.trafficmanager.net/emea/"

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)


@pytest.fixture(scope="module")
def openid() -> Iterator[OpenIdServer]:
    with OpenIdServer() as server:
        yield server


@pytest.fixture(scope="module")
def base_url(openid: OpenIdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("teams-auth")
    services = Services(Settings(data_dir=Path(data), _env_file=None))  # type: ignore[call-arg]
    gateway = BotFrameworkGateway(
        BotFrameworkConfig(app_id=APP_ID, app_password="not-used", openid_metadata_url=openid.metadata_url)
    )
    app = FastAPI()
    app.include_router(teams_router(services, gateway=gateway))
    with serve(app) as url:
        yield url


def _feedback_invoke() -> dict[str, object]:
    return Activities(SERVICE_URL).invoke(
        "message/submitAction", {"actionName": "feedback", "actionValue": {"reaction": "like"}}, reply_to="unknown"
    )


def _post(base_url: str, activity: dict[str, object], token: str | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{base_url}/api/messages", json=activity, headers=headers, timeout=20)


def test_valid_token_is_accepted_for_an_invoke(base_url: str, openid: OpenIdServer) -> None:
    token = openid.token(audience=APP_ID, service_url=SERVICE_URL)
    response = _post(base_url, _feedback_invoke(), token)
    assert response.status_code == 200


def test_valid_token_is_accepted_for_an_activity(base_url: str, openid: OpenIdServer) -> None:
    token = openid.token(audience=APP_ID, service_url=SERVICE_URL)
    activity = Activities(SERVICE_URL).reaction("like", reply_to="not-a-bot-reply")
    assert _post(base_url, activity, token).status_code == 201


def test_wrong_audience_is_401(base_url: str, openid: OpenIdServer) -> None:
    token = openid.token(audience="someone-elses-bot", service_url=SERVICE_URL)
    assert _post(base_url, _feedback_invoke(), token).status_code == 401


def test_wrong_service_url_is_401(base_url: str, openid: OpenIdServer) -> None:
    token = openid.token(audience=APP_ID, service_url="https://evil.example.com/")
    assert _post(base_url, _feedback_invoke(), token).status_code == 401


@pytest.mark.parametrize(
    "header", ["Bearer junk", "Bearer a.b.c", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Bearer", "Basic dXNlcjpwdw=="]
)
def test_junk_token_is_401_not_500(base_url: str, header: str) -> None:
    response = httpx.post(
        f"{base_url}/api/messages", json=_feedback_invoke(), headers={"Authorization": header}, timeout=20
    )
    assert response.status_code == 401


def test_missing_header_is_401(base_url: str) -> None:
    assert _post(base_url, _feedback_invoke(), None).status_code == 401


def test_token_signed_with_another_key_is_401(base_url: str, openid: OpenIdServer) -> None:
    forged = openid.token(audience=APP_ID, service_url=SERVICE_URL, key=new_key())
    assert _post(base_url, _feedback_invoke(), forged).status_code == 401
    unknown_kid = openid.token(audience=APP_ID, service_url=SERVICE_URL, key=new_key(), kid="other-key")
    assert _post(base_url, _feedback_invoke(), unknown_kid).status_code == 401


def test_expired_token_and_wrong_issuer_are_401(base_url: str, openid: OpenIdServer) -> None:
    expired = openid.token(audience=APP_ID, service_url=SERVICE_URL, ttl=-3600)
    assert _post(base_url, _feedback_invoke(), expired).status_code == 401
    other_issuer = openid.token(audience=APP_ID, service_url=SERVICE_URL, issuer="https://sts.example.com/")
    assert _post(base_url, _feedback_invoke(), other_issuer).status_code == 401


def test_incomplete_credentials_fail_at_start_up(tmp_path: Path) -> None:
    from bot.errors import ConfigError

    no_password = Services(Settings(data_dir=tmp_path, microsoft_app_id=APP_ID, _env_file=None))  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="MicrosoftAppPassword"):
        no_password.teams_gateway  # noqa: B018 - built (and checked) on first use
    no_tenant = Services(Settings(data_dir=tmp_path, microsoft_app_id=APP_ID, microsoft_app_password="s",  # type: ignore[call-arg]
                                  microsoft_app_type="SingleTenant", _env_file=None))
    with pytest.raises(ConfigError, match="MicrosoftAppTenantId"):
        no_tenant.teams_gateway  # noqa: B018 - built (and checked) on first use
