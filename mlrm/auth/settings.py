"""Where a server finds its users, keys and token settings (environment ``MLRM_*`` or flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_AUTH_FILE = ".mlrm/auth.yaml"
DEFAULT_KEYS_FILE = ".mlrm/jwt-keys.yaml"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLRM_", extra="ignore", use_attribute_docstrings=True)

    auth_file: str = DEFAULT_AUTH_FILE
    """The users-and-keys YAML file (`mlrm users`, `mlrm keys` edit it)."""
    jwt_keys: SecretStr | None = None
    """JWT signing keys, `kid:secret,kid:secret` (the first signs); or use a keys file."""
    jwt_keys_file: str | None = None
    """A YAML file of `kid: secret` (default `.mlrm/jwt-keys.yaml` when it exists; `mlrm auth init-key`)."""
    jwt_issuer: str = "mlrm"
    """The `iss` of issued tokens; tokens of another issuer are refused."""
    jwt_ttl: float = Field(3600.0, gt=0)
    """Seconds a token from POST /token stays valid."""
    jwt_leeway: float = Field(10.0, ge=0)
    """Seconds of clock skew tolerated on `exp` and `iat`."""

    def keys_file(self) -> Path | None:
        """The keys file in use: the configured one, or the default when it exists."""
        if self.jwt_keys_file:
            return Path(self.jwt_keys_file)
        default = Path(DEFAULT_KEYS_FILE)
        return default if default.exists() else None
