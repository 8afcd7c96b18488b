"""Authentication and authorization for every mlrm server: users, API keys, JWTs and scopes.

:mod:`.scopes` (the four scopes), :mod:`.store` (the users-and-keys file), :mod:`.tokens` (JWTs,
signing keys and rotation), :mod:`.settings` (where they come from), :mod:`.security` (checking a
request's credentials). The web side (Starlette, gRPC) lives in :mod:`mlrm.web.auth`.
"""

from mlrm.auth.scopes import SCOPES, Scope
from mlrm.auth.security import Principal, Security
from mlrm.auth.settings import AuthSettings

__all__ = ["SCOPES", "AuthSettings", "Principal", "Scope", "Security"]
