"""TLS for a server's REST and gRPC ports: a certificate and its key, and optionally the CA whose
client certificates are required (mutual TLS).

    tls = Tls(cert="server.pem", key="server.key", client_ca="clients-ca.pem")
    ApiServers(rest=app, grpc=registrar, tls=tls)
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import field_validator

from mlrm.config import Section


class Tls(Section):
    cert: Path
    """PEM certificate chain the server presents (the leaf first)."""
    key: Path
    """PEM private key of that certificate."""
    client_ca: Path | None = None
    """PEM CA certificate(s): when set, clients must present a certificate it signed."""

    @field_validator("cert", "key", "client_ca")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file")
        return value

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of ``uvicorn.Config`` for this TLS setup."""
        options: dict[str, Any] = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            options |= {"ssl_ca_certs": str(self.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_server_credentials`` for this TLS setup (client certificates required with a client CA)."""
        import grpc

        ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())], root_certificates=ca, require_client_auth=ca is not None
        )
