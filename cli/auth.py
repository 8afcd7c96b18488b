"""Authentication: users, API keys and JWT signing keys (`mlrm users`, `mlrm keys`, `mlrm auth`), and
the security a server starts with (:func:`server_security`, used by `mlrm serve`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import common

if TYPE_CHECKING:
    from mlrm.auth import Security
    from mlrm.auth.store import AuthStore
    from mlrm.web.tls import Tls

users_app = typer.Typer(help="Users who may ask POST /token for a token (argon2id password hashes).",
                        no_args_is_help=True)  # fmt: skip
keys_app = typer.Typer(help="API keys for programs (stored hashed; shown once).", no_args_is_help=True)
auth_app = typer.Typer(help="JWT signing keys and tokens.", no_args_is_help=True)
common.app.add_typer(users_app, name="users")
common.app.add_typer(keys_app, name="keys")
common.app.add_typer(auth_app, name="auth")

AuthFileOpt = Annotated[
    str | None, typer.Option("--auth-file", envvar="MLRM_AUTH_FILE",
                             help="Users-and-keys file (default .mlrm/auth.yaml).")
]  # fmt: skip
KeysFileOpt = Annotated[
    str | None, typer.Option("--jwt-keys-file", envvar="MLRM_JWT_KEYS_FILE",
                             help="JWT signing keys file (default .mlrm/jwt-keys.yaml).")
]  # fmt: skip
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="Serve the ports without authentication (no tokens, no API keys).")
]
TlsCertOpt = Annotated[str | None, typer.Option(envvar="MLRM_TLS_CERT", help="PEM certificate: TLS on every port.")]
TlsKeyOpt = Annotated[str | None, typer.Option(envvar="MLRM_TLS_KEY", help="PEM private key of --tls-cert.")]
TlsClientCaOpt = Annotated[
    str | None, typer.Option(envvar="MLRM_TLS_CLIENT_CA", help="PEM CA: clients must show a certificate it signed.")
]
ScopeOpt = Annotated[
    list[str], typer.Option("--scope", "-s", help="infer, submit, read or admin (repeat, or comma-separate).")
]


def _store(auth_file: str | None) -> AuthStore:
    from mlrm.auth.settings import AuthSettings
    from mlrm.auth.store import AuthStore

    return AuthStore(auth_file or AuthSettings().auth_file)


def _scopes(values: list[str]) -> list[str]:
    from mlrm.auth.scopes import check_scopes

    return list(check_scopes(s for v in values for s in v.split(",")))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


# -- users -------------------------------------------------------------------------------------------
@users_app.command("add")
@common.user_errors
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    scope: ScopeOpt,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    auth_file: AuthFileOpt = None,
) -> None:
    """Add a user with a password (prompted, or one line of stdin) and scopes."""
    store = _store(auth_file)
    scopes = _scopes(scope)
    store.add_user(name, _password(password_stdin), scopes)
    common.err.print(f"added user {name} ({', '.join(scopes) or 'no scopes'}) to {store.path}", highlight=False)


@users_app.command("passwd")
@common.user_errors
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    auth_file: AuthFileOpt = None,
) -> None:
    """Set a user's password (tokens issued before stay valid until they expire)."""
    store = _store(auth_file)
    store.set_password(name, _password(password_stdin))
    common.err.print(f"changed the password of {name}", highlight=False)


@users_app.command("scopes")
@common.user_errors
def users_scopes(
    name: Annotated[str, typer.Argument(help="User name.")], scope: ScopeOpt, auth_file: AuthFileOpt = None
) -> None:
    """Replace a user's scopes (from their next token on)."""
    _store(auth_file).set_scopes(name, _scopes(scope))


@users_app.command("remove")
@common.user_errors
def users_remove(name: Annotated[str, typer.Argument(help="User name.")], auth_file: AuthFileOpt = None) -> None:
    """Remove a user (their tokens stay valid until they expire)."""
    _store(auth_file).remove_user(name)
    common.err.print(f"removed user {name}", highlight=False)


@users_app.command("list")
@common.user_errors
def users_list(auth_file: AuthFileOpt = None, as_json: common.JsonOpt = False) -> None:
    """List users and their scopes (never their password hashes)."""
    users = _store(auth_file).load().users
    rows = [{"name": n, "scopes": u.scopes, "created": u.created} for n, u in users.items()]
    if as_json:
        common.print_json(rows)
        return
    common.print_table(("user", "scopes", "created"), [(r["name"], " ".join(r["scopes"]), r["created"]) for r in rows],
                       ids={"user"})  # fmt: skip


# -- API keys ----------------------------------------------------------------------------------------
@keys_app.command("create")
@common.user_errors
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: ScopeOpt,
    auth_file: AuthFileOpt = None,
) -> None:
    """Create an API key and print it, once: only its hash is kept. Send it as `X-API-Key: <key>`."""
    store = _store(auth_file)
    key_id, key = store.create_key(name, _scopes(scope))
    common.err.print(f"API key {key_id} ({name}); store it now, it cannot be shown again:", highlight=False)
    sys.stdout.write(key + "\n")


@keys_app.command("list")
@common.user_errors
def keys_list(auth_file: AuthFileOpt = None, as_json: common.JsonOpt = False) -> None:
    """List API keys: id, name, scopes, created, revoked (never a secret, nor its hash)."""
    keys = _store(auth_file).load().keys
    rows = [{"id": i, "name": k.name, "scopes": k.scopes, "created": k.created, "revoked": k.revoked}
            for i, k in keys.items()]  # fmt: skip
    if as_json:
        common.print_json(rows)
        return
    common.print_table(
        ("id", "name", "scopes", "created", "revoked"),
        [(r["id"], r["name"], " ".join(r["scopes"]), r["created"], "yes" if r["revoked"] else "") for r in rows],
        ids={"id"},
    )


@keys_app.command("revoke")
@common.user_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")], auth_file: AuthFileOpt = None) -> None:
    """Revoke an API key: servers refuse it from the next request on."""
    _store(auth_file).revoke_key(key_id)
    common.err.print(f"revoked API key {key_id}", highlight=False)


# -- JWT signing keys ---------------------------------------------------------------------------------
def _keys_path(jwt_keys_file: str | None) -> Path:
    from mlrm.auth.settings import DEFAULT_KEYS_FILE

    return Path(jwt_keys_file or DEFAULT_KEYS_FILE)


@auth_app.command("init-key")
@common.user_errors
def init_key(jwt_keys_file: KeysFileOpt = None) -> None:
    """Write a new JWT signing key file (mode 0600); servers started here find it by default."""
    from mlrm.auth.files import locked
    from mlrm.auth.tokens import SigningKeys, new_key, write_keys_file
    from mlrm.errors import ConfigError

    path = _keys_path(jwt_keys_file)
    with locked(path):
        if path.exists():
            raise ConfigError(f"{path} exists already: `mlrm auth rotate-key` adds a new signing key to it")
        kid, secret = new_key()
        write_keys_file(path, SigningKeys({kid: secret}, str(path)))
    common.err.print(f"wrote JWT signing key {kid} to {path}", highlight=False)


@auth_app.command("rotate-key")
@common.user_errors
def rotate_key(
    jwt_keys_file: KeysFileOpt = None,
    keep: Annotated[int, typer.Option(min=1, help="Older keys kept to verify tokens already issued.")] = 1,
) -> None:
    """Put a new signing key first; keep the newest `--keep` old ones for verifying, drop the rest."""
    from mlrm.auth.files import locked
    from mlrm.auth.tokens import SigningKeys, new_key, read_keys_file, write_keys_file

    path = _keys_path(jwt_keys_file)
    with locked(path):
        old = read_keys_file(path)
        kid, secret = new_key()
        kept = {k: old.secret(k).decode() for k in old.ids[:keep]}  # type: ignore[union-attr]
        write_keys_file(path, SigningKeys({kid: secret, **kept}, str(path)))
    dropped = old.ids[keep:]
    common.err.print(f"{path}: new signing key {kid}; still verifying {', '.join(kept)}"
                     + (f"; retired {', '.join(dropped)}" if dropped else ""), highlight=False)  # fmt: skip


@auth_app.command("token")
@common.user_errors
def token(
    subject: Annotated[str, typer.Argument(help="Who the token is for (its `sub`).")],
    scope: ScopeOpt,
    ttl: Annotated[str, typer.Option(help="Lifetime: seconds, or a number with s/m/h/d.")] = "1h",
    jwt_keys_file: KeysFileOpt = None,
) -> None:
    """Sign a token directly with the signing key (for scripts and services; no password involved)."""
    from mlrm.auth import AuthSettings, Security
    from mlrm.errors import ConfigError

    seconds = common.parse_duration(ttl, "--ttl")
    scopes = _scopes(scope)
    settings = AuthSettings(**({"jwt_keys_file": jwt_keys_file} if jwt_keys_file else {}))
    security = Security.from_settings(settings)
    if security is None:
        raise ConfigError("no JWT signing key: set MLRM_JWT_KEYS or MLRM_JWT_KEYS_FILE, or `mlrm auth init-key`")
    text, _ = security.tokens.issue(subject, scopes, seconds)
    sys.stdout.write(text + "\n")


# -- what a server starts with ------------------------------------------------------------------------
def server_security(
    *, who: str, opens_port: bool, shared_bus: bool, insecure: bool = False, auth_file: str | None = None,
    jwt_keys_file: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
    tls_client_ca: str | None = None,
) -> tuple[Security | None, Tls | None]:  # fmt: skip
    """The authentication and TLS a server opening ports starts with. Secure by default: a server on
    a shared bus with no JWT signing key refuses to start unless told ``--insecure``; a standalone one
    (no bus) runs open with a notice."""
    from mlrm.auth import AuthSettings, Security
    from mlrm.errors import ConfigError
    from mlrm.web.tls import Tls

    tls = None
    if tls_cert or tls_key or tls_client_ca:
        if not (tls_cert and tls_key):
            raise ConfigError("TLS needs both --tls-cert and --tls-key (MLRM_TLS_CERT, MLRM_TLS_KEY)")
        tls = Tls(cert=tls_cert, key=tls_key, client_ca=tls_client_ca)  # type: ignore[arg-type]
    if not opens_port:
        return None, tls
    if insecure:
        common.err.print(f"{who}: [yellow]authentication is OFF (--insecure)[/yellow]: anyone who reaches the "
                         "ports may call every endpoint", highlight=False)  # fmt: skip
        return None, tls
    overrides: dict[str, Any] = {"auth_file": auth_file, "jwt_keys_file": jwt_keys_file}
    security = Security.from_settings(AuthSettings(**{k: v for k, v in overrides.items() if v}))
    if security is None and shared_bus:
        raise ConfigError(
            f"{who}: refusing to open ports without authentication: no JWT signing key. Set MLRM_JWT_KEYS or "
            "MLRM_JWT_KEYS_FILE (--jwt-keys-file), or run `mlrm auth init-key`; or pass --insecure to serve "
            "without authentication"
        )
    if security is None:
        common.err.print(f"{who}: [yellow]no authentication[/yellow] (standalone, no JWT signing key): anyone "
                         "who reaches the ports may call every endpoint; `mlrm auth init-key` turns it on",
                         highlight=False)  # fmt: skip
    else:
        common.err.print(f"{who}: authentication on (tokens from POST /token; users and keys in "
                         f"{security.store.path})", highlight=False)  # fmt: skip
    return security, tls
