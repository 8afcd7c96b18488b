"""TLS on REST and gRPC (real certificates from trustme): the TLS port refuses plain HTTP, a client
trusting the CA gets through, one that does not is refused, and with a client CA configured a client
must show a certificate it signed."""

from __future__ import annotations

import ssl

import grpc
import httpx
import pytest
import trustme
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlrm.web.auth import requires
from mlrm.web.http import json_response
from mlrm.web.servers import ApiServers
from mlrm.web.tls import Tls


@requires(None)
async def hello(request: Request) -> Response:
    return json_response({"hello": "world"})


def grpc_registrar(server: grpc.Server) -> None:
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", {"Say": echo})])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    ca, clients = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    names = {"ca": "ca.pem", "cert": "server.pem", "key": "server.key", "clients_ca": "clients-ca.pem",
             "client": "client.pem", "other_ca": "other-ca.pem"}  # fmt: skip
    files = {what: tmp / name for what, name in names.items()}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(files["cert"]), append=True)
    clients.cert_pem.write_to_path(str(files["clients_ca"]))
    client = clients.issue_cert("client@example.org")
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    return files


def _servers(tls: Tls) -> ApiServers:
    return ApiServers(rest=Starlette(routes=[Route("/hello", hello)]), grpc=grpc_registrar, http_port=0, grpc_port=0,
                      tls=tls)  # fmt: skip


def _grpc_call(port: int, credentials: grpc.ChannelCredentials) -> bytes | grpc.RpcError:
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        try:
            return channel.unary_unary("/test.Echo/Say")(b"ping", timeout=10)
        except grpc.RpcError as exc:
            return exc


def test_rest_and_grpc_over_tls(pki):
    with _servers(Tls(cert=pki["cert"], key=pki["key"])) as servers:
        https = f"https://127.0.0.1:{servers.http_port}/hello"
        assert httpx.get(https, verify=ssl.create_default_context(cafile=str(pki["ca"]))).json() == {"hello": "world"}
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            httpx.get(https, verify=ssl.create_default_context(cafile=str(pki["other_ca"])))
        with pytest.raises(httpx.TransportError):  # the TLS port refuses plain HTTP
            httpx.get(f"http://127.0.0.1:{servers.http_port}/hello")
        trusted = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        assert _grpc_call(servers.grpc_port, trusted) == b"ping"
        untrusted = _grpc_call(servers.grpc_port, grpc.ssl_channel_credentials(pki["other_ca"].read_bytes()))
        assert isinstance(untrusted, grpc.RpcError) and untrusted.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}") as channel:  # plain gRPC to the TLS port
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary("/test.Echo/Say")(b"ping", timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificates_are_required_with_a_client_ca(pki):
    with _servers(Tls(cert=pki["cert"], key=pki["key"], client_ca=pki["clients_ca"])) as servers:
        https = f"https://127.0.0.1:{servers.http_port}/hello"
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises(httpx.TransportError):
            httpx.get(https, verify=context)  # no client certificate
        context.load_cert_chain(str(pki["client"]))
        assert httpx.get(https, verify=context).json() == {"hello": "world"}
        ca = pki["ca"].read_bytes()
        without = _grpc_call(servers.grpc_port, grpc.ssl_channel_credentials(ca))
        assert isinstance(without, grpc.RpcError) and without.code() == grpc.StatusCode.UNAVAILABLE
        client = pki["client"].read_bytes()
        with_cert = grpc.ssl_channel_credentials(ca, private_key=client, certificate_chain=client)
        assert _grpc_call(servers.grpc_port, with_cert) == b"ping"


def test_missing_certificate_files_are_a_clear_error(tmp_path):
    with pytest.raises(ValidationError, match="no such file"):
        Tls(cert=tmp_path / "nope.pem", key=tmp_path / "nope.key")
