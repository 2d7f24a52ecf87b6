"""A local OpenID metadata + JWKS server, and RS256 tokens signed like the Bot Framework's.

botbuilder fetches the signing keys with a blocking ``requests.get`` from inside the event
loop that serves the bot, so this server runs in its own thread (a server on that loop
would deadlock). Point ``BotFrameworkConfig.openid_metadata_url`` at ``metadata_url``.

For the bot's own outbound calls (replies, member look-ups) the SDK would ask Azure AD for a
token over HTTPS; :class:`StaticTokenCredentials` is the SDK's credentials-factory interface
answering with a fixed token instead, so an authenticated bot can reply to a fake connector
(which records the ``Authorization`` header it got). :func:`authenticated_gateway` builds
the gateway with both.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from botframework.connector.auth import AppCredentials, ServiceClientCredentialsFactory
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from adapters.teams.botframework import BotFrameworkConfig, BotFrameworkGateway

ISSUER = "https://api.botframework.com"
BOT_TOKEN = "bot-outbound-test-token"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OpenIdServer:
    """Serves ``/.well-known/openid-configuration`` and ``/keys`` (one key, endorsed for msteams)."""

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        self.key = new_key()
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "endorsements": ["msteams", "emulator"]})
        self._jwks = {"keys": [jwk]}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/openid-configuration"

    def __enter__(self) -> OpenIdServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(self, *, audience: str, service_url: str, issuer: str = ISSUER, ttl: float = 3600,
              key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **claims: Any) -> str:
        """An RS256 token as the Bot Connector sends it to a bot."""
        now = int(time.time())
        payload = {"iss": issuer, "aud": audience, "serviceurl": service_url, "nbf": now - 10,
                   "exp": now + int(ttl), "iat": now - 10, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": ISSUER,
                        "jwks_uri": f"{server.base}/keys",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/keys":
                    body = server._jwks
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


class _StaticToken(AppCredentials):  # type: ignore[misc]
    def __init__(self, app_id: str) -> None:
        super().__init__(app_id=app_id)

    def get_access_token(self, force_refresh: bool = False) -> str:
        return BOT_TOKEN


class StaticTokenCredentials(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """The bot's outbound credentials: app id ``app_id``, token :data:`BOT_TOKEN` (no Azure AD)."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == self.app_id

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(self, app_id: str, oauth_scope: str, login_endpoint: str,
                                 validate_authority: bool) -> AppCredentials:
        return _StaticToken(app_id)


def authenticated_gateway(openid: OpenIdServer, app_id: str) -> BotFrameworkGateway:
    """A gateway with authentication on: tokens checked against ``openid``, replies with :data:`BOT_TOKEN`."""
    config = BotFrameworkConfig(app_id=app_id, app_password="not-used", openid_metadata_url=openid.metadata_url)
    return BotFrameworkGateway(config, credentials_factory=StaticTokenCredentials(app_id))
