"""What only the S3 volume has: configuration, error messages, prefixes, multipart uploads, outages."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
import uuid

import pytest

from mlrm.errors import ConfigError, NotFoundError, VolumeError
from mlrm.volume import open_volume
from mlrm.volume.s3 import S3Volume
from tests.s3server import SeaweedFS, free_ports


def test_open_volume_by_s3_url(s3_volume, s3_bucket, s3_env):
    assert isinstance(s3_volume, S3Volume)
    assert s3_volume.url == f"s3://{s3_bucket}?endpoint={s3_env.endpoint}&region=us-east-1"
    s3_volume.put_bytes("k", b"v")
    again = open_volume(s3_volume.url)  # the URL names the same volume
    try:
        assert again.get_bytes("k") == b"v"
    finally:
        again.close()


def test_url_parameters_win_over_the_environment(s3_bucket, s3_env, monkeypatch):
    monkeypatch.setenv("MLRM_S3_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("MLRM_S3_REGION")
    vol = open_volume(f"s3://{s3_bucket}/p?endpoint={s3_env.endpoint}")
    try:
        vol.put_bytes("x", b"1")
        assert [o.key for o in vol.list()] == ["x"]
        assert vol.url == f"s3://{s3_bucket}/p?endpoint={s3_env.endpoint}"
    finally:
        vol.close()


def test_tls_with_a_private_ca(s3_bucket, s3_env, monkeypatch):
    if not s3_env.ca_bundle:
        pytest.skip("openssl is not installed: the session server runs plain HTTP")
    assert s3_env.endpoint.startswith("https://")
    monkeypatch.delenv("MLRM_S3_CA_BUNDLE")
    monkeypatch.setenv("SSL_CERT_FILE", "")
    with pytest.raises(VolumeError, match=r"certificate verify failed.*set MLRM_S3_CA_BUNDLE"):
        open_volume(f"s3://{s3_bucket}")
    vol = open_volume(f"s3://{s3_bucket}?ca_bundle={s3_env.ca_bundle}")
    try:
        vol.put_bytes("over-tls", b"ok")
        assert vol.get_bytes("over-tls") == b"ok"
    finally:
        vol.close()


def test_wrong_credentials_name_the_endpoint_and_the_fix(s3_bucket, s3_env, monkeypatch):
    monkeypatch.setenv("MLRM_S3_SECRET_KEY", "not-the-secret-42")
    with pytest.raises(VolumeError) as err:
        open_volume(f"s3://{s3_bucket}")
    message = str(err.value)
    assert s3_env.endpoint in message
    assert "check MLRM_S3_ACCESS_KEY / MLRM_S3_SECRET_KEY" in message
    assert "not-the-secret-42" not in message
    monkeypatch.setenv("MLRM_S3_ACCESS_KEY", "nobody")
    with pytest.raises(VolumeError, match="check MLRM_S3_ACCESS_KEY / MLRM_S3_SECRET_KEY"):
        open_volume(f"s3://{s3_bucket}")


def test_missing_bucket_names_bucket_endpoint_and_fix(s3_env):
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(VolumeError) as err:
        open_volume(f"s3://{bucket}")
    message = str(err.value)
    assert f"bucket '{bucket}' does not exist" in message
    assert s3_env.endpoint in message
    assert "create the bucket" in message
    assert "MLRM_S3_CREATE_BUCKET=1" in message


def test_create_bucket_on_open(s3_env):
    bucket = f"made-{uuid.uuid4().hex[:8]}"
    vol = open_volume(f"s3://{bucket}?create_bucket=1")
    try:
        vol.put_bytes("a", b"1")
        assert vol.get_bytes("a") == b"1"
        open_volume(f"s3://{bucket}?create_bucket=true").close()  # existing: fine
    finally:
        vol.close()
        client = s3_env.client()
        client.remove_bucket(bucket)
        client._http.clear()


def test_prefixes_isolate_volumes_in_one_bucket(s3_bucket):
    one, two, whole = (open_volume(f"s3://{s3_bucket}/{p}") for p in ("team/one", "team/two", ""))
    try:
        one.put_bytes("model.bin", b"1")
        two.put_bytes("model.bin", b"2")
        two.put_bytes("extra/x", b"x")
        assert one.get_bytes("model.bin") == b"1"
        assert two.get_bytes("model.bin") == b"2"
        assert [o.key for o in one.list()] == ["model.bin"]
        assert [o.key for o in two.list()] == ["extra/x", "model.bin"]
        assert not one.exists("extra/x")
        assert one.create("lock", b"one") is True
        assert two.create("lock", b"two") is True  # a different object
        assert two.delete_prefix("") == 3
        assert [o.key for o in one.list()] == ["lock", "model.bin"]
        assert [o.key for o in whole.list()] == ["team/one/lock", "team/one/model.bin"]
        with pytest.raises(NotFoundError, match=f"'model.bin' not found in volume s3://{s3_bucket}/team/two"):
            two.get_bytes("model.bin")
    finally:
        for vol in (one, two, whole):
            vol.close()


def test_large_write_is_a_streamed_multipart_upload(s3_volume):
    size_mb = 64
    chunk = b"\x00" * (1 << 20)
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with s3_volume.open_write("big/artefact.bin") as f:
            for i in range(size_mb):
                block = i.to_bytes(4, "big") + chunk[4:]
                digest.update(block)
                f.write(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # minio holds at most two 16 MiB parts (the one going up and the next one read from the
    # spool file), never the 64 MiB object.
    assert peak < 40 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert s3_volume.stat("big/artefact.bin").size == size_mb << 20
    etag = s3_volume._client.stat_object(s3_volume.bucket, "big/artefact.bin").etag
    assert etag.endswith("-4"), etag  # S3's multipart ETag: md5-of-parts "-" part count
    check = hashlib.sha256()
    with s3_volume.open_read("big/artefact.bin") as f:
        while block := f.read(1 << 20):
            check.update(block)
    assert check.hexdigest() == digest.hexdigest()


def test_secrets_never_show(s3_bucket, s3_env, monkeypatch):
    secret = s3_env.secret_key
    monkeypatch.delenv("MLRM_S3_ACCESS_KEY")
    monkeypatch.delenv("MLRM_S3_SECRET_KEY")
    vol = open_volume(f"s3://{s3_bucket}/p?access_key={s3_env.access_key}&secret_key={secret}")
    try:
        vol.put_bytes("k", b"v")
        assert secret not in vol.url
        assert secret not in repr(vol)
        assert s3_env.access_key not in repr(vol)
        with pytest.raises(NotFoundError) as err:
            vol.get_bytes("absent")
        assert secret not in str(err.value)
        assert secret not in repr(vol._cfg)
    finally:
        vol.close()
    with pytest.raises(VolumeError) as err:
        open_volume(f"s3://{s3_bucket}?access_key={s3_env.access_key}&secret_key=wrong-{secret}")
    assert secret not in str(err.value)
    with pytest.raises(ConfigError) as err:
        open_volume(f"s3://{s3_bucket}?secret_key={secret}&retries=many")
    assert secret not in str(err.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket-x?colour=red", "unknown S3 volume URL parameter"),
        ("s3://bucket-x?endpoint=http://127.0.0.1:1/path", "without a path"),
        ("s3://bucket-x?endpoint=ftp://127.0.0.1:1", "use http"),
        ("s3://Bad_Bucket?endpoint=http://127.0.0.1:1", "invalid S3 bucket name"),
        ("s3://bucket-x?endpoint=http://127.0.0.1:1&retries=-1", "retries"),
        ("s3://user:pw@bucket-x", "credentials do not belong"),
    ],
)
def test_configuration_errors(url, message, monkeypatch):
    with pytest.raises(ConfigError, match=message) as err:
        open_volume(url)
    assert "pw" not in str(err.value)


def test_endpoint_is_required(monkeypatch):
    monkeypatch.delenv("MLRM_S3_ENDPOINT", raising=False)
    with pytest.raises(ConfigError, match="MLRM_S3_ENDPOINT"):
        open_volume("s3://bucket-x")


def test_unreachable_endpoint_fails_after_bounded_retries(s3_env, monkeypatch):
    (port,) = free_ports(1)
    monkeypatch.setenv("MLRM_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    # MLRM_S3_RETRIES defaults to 3: 4 attempts, 0 + 1 + 2 s of backoff between them.
    with pytest.raises(VolumeError, match=rf"S3 endpoint http://127.0.0.1:{port} is unreachable after 4 attempts"):
        open_volume("s3://bucket-x")
    assert 2.5 < time.monotonic() - started < 10
    monkeypatch.setenv("MLRM_S3_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(VolumeError, match=r"unreachable after 1 attempt: .*Connection refused"):
        open_volume("s3://bucket-x")
    assert time.monotonic() - started < 2


def test_server_going_away_fails_writes_and_leaves_no_partial_object(seaweedfs_factory, monkeypatch):
    server: SeaweedFS = seaweedfs_factory()  # its own server: the session's one must survive
    client = server.client(retries=2)
    client.make_bucket("outage")
    client._http.clear()
    for name in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "REGION", "RETRIES"):
        monkeypatch.delenv(f"MLRM_S3_{name}", raising=False)
    url = (
        f"s3://outage/v?endpoint={server.endpoint}&region=us-east-1&retries=2"
        f"&access_key={server.access_key}&secret_key={server.secret_key}"
    )
    vol = open_volume(url)
    try:
        vol.put_bytes("kept.txt", b"before the outage")

        # The server dies after the first part of a multipart upload has gone up.
        real_upload_part = vol._client._upload_part

        def upload_part_then_die(*args, **kwargs):
            etag = real_upload_part(*args, **kwargs)
            server.stop()
            return etag

        monkeypatch.setattr(vol._client, "_upload_part", upload_part_then_die)
        started = time.monotonic()
        unreachable = rf"S3 endpoint {server.endpoint} is unreachable after 3 attempts"
        with pytest.raises(VolumeError, match=unreachable), vol.open_write("lost.bin") as f:
            for _ in range(20):
                f.write(b"y" * (1 << 20))
        assert time.monotonic() - started < 30

        monkeypatch.undo()
        started = time.monotonic()
        with pytest.raises(VolumeError, match="unreachable after 3 attempts"):
            vol.put_bytes("also-lost.txt", b"small")
        with pytest.raises(VolumeError, match="unreachable"):
            vol.get_bytes("kept.txt")
        assert time.monotonic() - started < 30
    finally:
        vol.close()

    server.start()  # same data folder and ports
    vol = open_volume(url)
    try:
        assert [o.key for o in vol.list()] == ["kept.txt"]
        assert vol.get_bytes("kept.txt") == b"before the outage"
        assert vol.stat("lost.bin") is None
    finally:
        vol.close()


def test_gc_aborts_uploads_a_killed_writer_left_unfinished(s3_volume):
    """A writer killed mid multipart upload leaves an invisible upload holding storage: gc aborts it,
    once it is old enough that no live writer can still be sending it."""
    client = s3_volume._client
    key = s3_volume.prefix + "predictions/big.csv"
    upload = client._create_multipart_upload(s3_volume.bucket, key, {})
    listed = lambda: [u.upload_id for u in client._list_multipart_uploads(s3_volume.bucket).uploads]  # noqa: E731
    assert upload in listed()
    assert s3_volume.collect_temporary(0) == 0  # a young upload may belong to a live writer
    assert s3_volume.collect_temporary(0, now=time.time() + 7200) == 1
    assert upload not in listed()
    assert list(s3_volume.list()) == []
