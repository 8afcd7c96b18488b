"""Tokens: signed with the first key, verified by every listed one; expired, forged, foreign or
malformed tokens are refused with a reason that never repeats the token."""

from __future__ import annotations

import time

import jwt
import pytest

from mlrm.auth.tokens import SigningKeys, Tokens, keys_from_text, new_key, read_keys_file, write_keys_file
from mlrm.errors import ConfigError, UnauthorizedError

OLD = "old-key-" + "o" * 40
NEW = "new-key-" + "n" * 40


def tokens(keys: dict[str, str], **options) -> Tokens:
    signing = SigningKeys(keys)
    return Tokens(lambda: signing, **options)


def test_a_token_carries_issuer_subject_scope_and_expiry_and_names_its_key():
    issuer = tokens({"k1": OLD}, issuer="https://mlrm.example", ttl=600)
    token, life = issuer.issue("alice", ["infer", "read"])
    assert life == 600
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(token, OLD, algorithms=["HS256"], issuer="https://mlrm.example")
    assert (claims["sub"], claims["scope"], claims["exp"] - claims["iat"]) == ("alice", "infer read", 600)
    verified = issuer.verify(token)
    assert (verified.subject, verified.scopes) == ("alice", ("infer", "read"))


def _refusal(verifier: Tokens, token: str) -> str:
    with pytest.raises(UnauthorizedError) as info:
        verifier.verify(token)
    assert not token or token not in info.value.message
    return info.value.message


def test_an_expired_token_is_refused_past_the_leeway():
    verifier = tokens({"k1": OLD}, leeway=5)
    assert verifier.verify(verifier.issue("alice", ["read"], ttl=-3)[0])  # within the leeway
    assert "expired" in _refusal(verifier, verifier.issue("alice", ["read"], ttl=-60)[0])


def test_forged_foreign_and_malformed_tokens_are_refused():
    verifier = tokens({"k1": OLD})
    now = int(time.time())
    claims = {"iss": "mlrm", "sub": "mallory", "scope": "admin", "iat": now, "exp": now + 60}
    forged = jwt.encode(claims, "someone-elses-key-" + "x" * 40, algorithm="HS256", headers={"kid": "k1"})
    assert "signature" in _refusal(verifier, forged)
    unknown = jwt.encode(claims, OLD, algorithm="HS256", headers={"kid": "k9"})
    assert "unknown key" in _refusal(verifier, unknown)
    foreign = jwt.encode({**claims, "iss": "other"}, OLD, algorithm="HS256", headers={"kid": "k1"})
    assert "issued by someone else" in _refusal(verifier, foreign)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    assert "algorithm" in _refusal(verifier, unsigned)
    no_expiry = jwt.encode({k: v for k, v in claims.items() if k != "exp"}, OLD, algorithm="HS256",
                           headers={"kid": "k1"})  # fmt: skip
    assert "invalid token" in _refusal(verifier, no_expiry)
    for garbage in ("", "abc", "a.b.c", forged[:-10]):
        assert _refusal(verifier, garbage)


def test_rotation_a_listed_old_key_still_verifies_a_retired_one_does_not(tmp_path):
    path = tmp_path / "jwt-keys.yaml"
    write_keys_file(path, SigningKeys({"k1": OLD}))
    server = Tokens.from_file(path)
    old_token, _ = server.issue("alice", ["read"])
    write_keys_file(path, SigningKeys({"k2": NEW, "k1": OLD}))  # rotated: k2 signs, k1 still verifies
    new_token, _ = server.issue("alice", ["read"])
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert server.verify(old_token).subject == server.verify(new_token).subject == "alice"
    write_keys_file(path, SigningKeys({"k2": NEW}))  # k1 retired
    assert "unknown key" in _refusal(server, old_token)
    assert server.verify(new_token)


def test_signing_keys_are_checked_and_never_shown():
    kid, secret = new_key()
    keys = keys_from_text(f"{kid}:{secret}, k0:{OLD}")
    assert keys.ids == [kid, "k0"] and keys.signing == kid
    assert secret not in repr(keys) and OLD not in repr(keys)
    assert keys_from_text(secret).signing.startswith("k")  # a lone secret is named by its fingerprint
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        keys_from_text("k1:tooshort")
    with pytest.raises(ConfigError, match="lists no key"):
        keys_from_text(" , ")


def test_a_malformed_keys_file_names_the_file(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=str(path)):
        read_keys_file(path)
    path.write_text("k1: short\n")
    with pytest.raises(ConfigError, match=f"{path}.*shorter"):
        read_keys_file(path)


def test_a_remembered_token_is_still_refused_once_it_expires():
    verifier = tokens({"k1": OLD}, leeway=10)
    token, _ = verifier.issue("alice", ["read"], ttl=-5)  # expired 5 s ago: accepted within the leeway
    assert verifier.verify(token).subject == "alice"  # and remembered
    verifier.leeway = 0
    assert "expired" in _refusal(verifier, token)
