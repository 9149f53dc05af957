"""A credential for ``MLClient`` with no identity service behind it: ``FakeCredential`` hands out unsigned JWTs
(``make_jwt``) whose audience is the requested scope's resource, as ``azure-ai-ml`` checks for pipeline jobs."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

from tests.fakes.aml.contract import ML_RESOURCE

__all__ = ["FakeCredential", "make_jwt"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned (alg none-ish, RS256 header, dummy signature) JWT that PyJWT decodes with verify_signature=False."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "fake-key"}
    return ".".join(
        [
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            _b64url(b"fake-signature"),
        ]
    )


class FakeCredential:
    """azure.core TokenCredential + SupportsTokenInfo. The token's ``aud`` is the requested scope's resource
    (``https://management.azure.com/.default`` -> ``https://management.azure.com``; ``https://ml.azure.com/.default``
    -> ``https://ml.azure.com``, which is what ``jobs.create_or_update`` checks for pipeline jobs)."""

    def __init__(
        self,
        tenant_id: str = "00000000-0000-0000-0000-0000000000aa",
        object_id: str = "00000000-0000-0000-0000-0000000000bb",
        upn: str = "forecastops@example.com",
    ) -> None:
        self.tenant_id = tenant_id
        self.object_id = object_id
        self.upn = upn
        self.scopes_requested: list[tuple[str, ...]] = []

    def _token(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        self.scopes_requested.append(tuple(scopes))
        scope = scopes[0] if scopes else ML_RESOURCE + "/.default"
        aud = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        aud = aud.rstrip("/")
        now = int(time.time())
        exp = now + 10 * 365 * 24 * 3600
        claims = {
            "aud": aud,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "oid": self.object_id,
            "tid": self.tenant_id,
            "sub": self.object_id,
            "upn": self.upn,
            "name": "ForecastOps Test",
            "appid": "00000000-0000-0000-0000-0000000000cc",
            "ver": "1.0",
        }
        return make_jwt(claims), exp

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token, exp = self._token(scopes)
        return AccessToken(token, exp)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        token, exp = self._token(scopes)
        return AccessTokenInfo(token, exp, token_type="Bearer", refresh_on=exp - 300)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeCredential:
        return self

    def __exit__(self, *args: Any) -> None:
        pass
