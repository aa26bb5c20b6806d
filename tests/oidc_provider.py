"""A local OpenID Connect provider for browser tests of st.login: discovery, authorize (signs in whoever the test
named, without a form), token (an RS256 id_token), JWKS and userinfo, on 127.0.0.1; nothing leaves the machine."""
from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID, CLIENT_SECRET = "cytoauto-test", "test-secret"


@dataclass
class Provider:
    """The running provider; set `user` (id_token claims) before a browser signs in."""

    issuer: str
    user: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)
    key: RSAKey | None = None

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def auth_secrets(self, app_url: str) -> str:
        """The [auth] section of a secrets.toml for an app served at `app_url`."""
        return (f'[auth]\nredirect_uri = "{app_url}/oauth2callback"\ncookie_secret = "{secrets.token_hex(32)}"\n'
                f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
                f'server_metadata_url = "{self.metadata_url}"\n')


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _json(self, obj: dict, status: int = 200) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/.well-known/openid-configuration":
                self._json({
                    "issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize",
                    "token_endpoint": f"{provider.issuer}/token", "jwks_uri": f"{provider.issuer}/jwks",
                    "userinfo_endpoint": f"{provider.issuer}/userinfo", "response_types_supported": ["code"],
                    "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "profile", "email"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    "code_challenge_methods_supported": ["S256"],
                })
            elif url.path == "/jwks":
                self._json({"keys": [provider.key.as_dict(private=False)]})
            elif url.path == "/authorize":
                code = secrets.token_urlsafe(16)
                provider.codes[code] = (dict(provider.user), query.get("nonce"))
                target = f"{query['redirect_uri']}?{urllib.parse.urlencode({'code': code, 'state': query['state']})}"
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
            elif url.path == "/userinfo":
                self._json(dict(provider.user))
            else:
                self._json({"error": "not_found"}, 404)

        def do_POST(self) -> None:
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            if self.path != "/token" or form.get("code") not in provider.codes:
                self._json({"error": "invalid_grant"}, 400)
                return
            user, nonce = provider.codes.pop(form["code"])
            now = int(time.time())
            claims = {**user, "iss": provider.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 3600}
            if nonce:
                claims["nonce"] = nonce
            id_token = jwt.encode({"alg": "RS256", "kid": provider.key.kid}, claims, provider.key)
            self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 3600,
                        "id_token": id_token, "scope": "openid profile email"})

    return Handler


@contextmanager
def oidc_provider() -> Iterator[Provider]:
    """Serve a provider on a free port of 127.0.0.1 for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    provider = Provider(issuer=f"http://127.0.0.1:{server.server_address[1]}",
                        key=RSAKey.generate_key(2048, parameters={"kid": "test"}, private=True))
    server.RequestHandlerClass = _handler(provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
