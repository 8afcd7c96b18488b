"""The distributed volume: an S3 bucket (SeaweedFS, MinIO, AWS...), through the ``minio`` SDK.

Configuration comes from the volume URL, then the environment::

    s3://bucket                      every key at the top of the bucket
    s3://bucket/some/prefix          every key stored under ``some/prefix/``
    s3://bucket?endpoint=http://127.0.0.1:8333&region=us-east-1

    MLRM_S3_ENDPOINT=http://127.0.0.1:8333   # the scheme decides TLS (https:// is the default)
    MLRM_S3_ACCESS_KEY=...  MLRM_S3_SECRET_KEY=...
    MLRM_S3_REGION=us-east-1                 # optional
    MLRM_S3_CA_BUNDLE=/path/ca.pem           # optional, for a private CA
    MLRM_S3_RETRIES=3                        # retries after the first attempt
    MLRM_S3_CREATE_BUCKET=1                  # create a missing bucket when the volume opens

Every setting can also be given as a query parameter of the same name in lower case
(``?endpoint=...&retries=5&create_bucket=1``); the URL wins over the environment.
Secrets are never part of :attr:`S3Volume.url`, its ``repr`` or an error message.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn
from urllib.parse import parse_qs, quote, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from urllib3.util.retry import Retry

from mlrm.errors import ConfigError, NotFoundError, VolumeError
from mlrm.volume.base import ObjectInfo, Volume, check_key, check_prefix

_SPOOL_MEMORY = 8 << 20  # an object being written stays in memory up to this size, then spills to disk
_PART_SIZE = 16 << 20  # multipart upload part size (S3 allows at most 10,000 parts)
_MAX_PARTS = 10_000
_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NotFound"}
_BAD_CREDENTIALS = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}
_SECRET_QUERY = {"access_key", "secret_key"}


class S3Settings(BaseSettings):
    """The S3 connection, from ``MLRM_S3_*`` environment variables (URL query parameters override them)."""

    model_config = SettingsConfigDict(env_prefix="MLRM_S3_", extra="forbid", use_attribute_docstrings=True)

    endpoint: str | None = None
    """``http(s)://host[:port]`` of the S3 server; ``https`` unless the scheme says otherwise."""
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    region: str | None = None
    """Region to sign requests for; asked from the server when unset."""
    ca_bundle: str | None = None
    """PEM file of the CA that signed the server's certificate (default: SSL_CERT_FILE, then certifi)."""
    retries: int = Field(3, ge=0, le=20)
    """Retries after the first attempt, for refused/reset connections and 5xx answers."""
    create_bucket: bool = False
    """Create the bucket when the volume opens, if it does not exist."""
    connect_timeout: float = Field(5.0, gt=0)
    """Seconds to wait for a TCP (and TLS) connection."""
    read_timeout: float = Field(60.0, gt=0)
    """Seconds to wait for the server between two reads of an answer."""


def _settings(query: dict[str, str]) -> S3Settings:
    unknown = sorted(set(query) - set(S3Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"unknown S3 volume URL parameter(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(S3Settings.model_fields))}"
        )
    try:
        return S3Settings(**query)  # type: ignore[arg-type]  # init values take priority over the environment
    except ValidationError as exc:
        # Only the field and the reason: a value could be a secret.
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid S3 volume settings (URL parameters or MLRM_S3_*): {problems}") from None


def _retry(retries: int, *, read: bool) -> Retry:
    """Bounded retries with exponential backoff (0, 1, 2, 4 s... capped at 4 s between attempts)."""
    return Retry(
        total=retries,
        connect=retries,
        read=retries if read else 0,
        status=retries if read else 0,
        other=0,
        redirect=0,
        backoff_factor=0.5,
        backoff_max=4,
        status_forcelist=(500, 502, 503, 504),
        raise_on_status=False,  # after the last retry, hand the answer to minio so it reports the S3 error
        respect_retry_after_header=False,  # keep the total time bounded
    )


class S3Volume(Volume):
    """A volume in an S3 bucket, optionally under a key prefix.

    Objects appear atomically: a PUT (or the completion of a multipart upload) makes
    the whole object visible at once, and nothing is sent before a write block exits
    cleanly.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ConfigError("an S3 volume URL starts with s3://")
        if "@" in parts.netloc:
            raise ConfigError(
                "credentials do not belong in the host part of an S3 volume URL; "
                "set MLRM_S3_ACCESS_KEY / MLRM_S3_SECRET_KEY"
            )
        self.bucket = parts.netloc
        try:
            check_bucket_name(self.bucket, strict=True)
        except ValueError as exc:
            raise ConfigError(f"invalid S3 bucket name {self.bucket!r} in the volume URL: {exc}") from None
        prefix = parts.path.strip("/")
        self.prefix = f"{check_key(prefix)}/" if prefix else ""
        query: dict[str, str] = {}
        for name, values in parse_qs(parts.query, keep_blank_values=True).items():
            query[name] = values[-1]
        cfg = _settings(query)
        self._cfg = cfg

        if not cfg.endpoint:
            raise ConfigError(
                f"no S3 endpoint for volume s3://{self.bucket}: set MLRM_S3_ENDPOINT "
                "(e.g. http://127.0.0.1:8333) or add ?endpoint=... to the volume URL; "
                "`mlrm dev s3` starts a local S3 server and prints the settings"
            )
        raw = cfg.endpoint if "://" in cfg.endpoint else f"https://{cfg.endpoint}"
        ep = urlsplit(raw)
        if ep.scheme not in ("http", "https") or not ep.netloc or "@" in ep.netloc or ep.path not in ("", "/"):
            raise ConfigError(
                f"invalid S3 endpoint {ep.scheme}://{ep.hostname or ''}: use http(s)://host[:port], without a path"
            )
        self.endpoint = f"{ep.scheme}://{ep.netloc}"
        if cfg.ca_bundle and not os.path.isfile(cfg.ca_bundle):
            raise ConfigError(f"MLRM_S3_CA_BUNDLE {cfg.ca_bundle} is not a file")
        if (cfg.access_key is None) != (cfg.secret_key is None):
            raise ConfigError("give both MLRM_S3_ACCESS_KEY and MLRM_S3_SECRET_KEY, or neither (anonymous access)")

        where = f"/{self.prefix.rstrip('/')}" if self.prefix else ""
        extra = f"&region={quote(cfg.region)}" if cfg.region else ""
        self.url = f"s3://{self.bucket}{where}?endpoint={self.endpoint}{extra}"
        self._attempts = cfg.retries + 1

        secure = ep.scheme == "https"
        self._pools: list[urllib3.PoolManager] = []
        self._client = self._make_client(ep.netloc, secure, _retry(cfg.retries, read=True))
        # Exclusive creates never retry after the request may have reached the server: a
        # retried conditional PUT whose first answer was lost would come back "412, exists"
        # although this very call created the object.
        self._create_client = self._make_client(ep.netloc, secure, _retry(cfg.retries, read=False))
        try:
            self._check_bucket()
        except BaseException:
            self.close()
            raise

    def _make_client(self, host: str, secure: bool, retry: Retry) -> Minio:
        cfg = self._cfg
        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=cfg.connect_timeout, read=cfg.read_timeout),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=cfg.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=retry,
        )
        self._pools.append(pool)
        try:
            return Minio(
                host,
                access_key=cfg.access_key.get_secret_value() if cfg.access_key else None,
                secret_key=cfg.secret_key.get_secret_value() if cfg.secret_key else None,
                secure=secure,
                region=cfg.region or None,
                http_client=pool,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid S3 endpoint {self.endpoint}: {exc}") from None

    # -- errors --------------------------------------------------------------------------
    def _missing_bucket(self) -> VolumeError:
        return VolumeError(
            f"bucket '{self.bucket}' does not exist at S3 endpoint {self.endpoint}; create the bucket, "
            "or let mlrm create it on first use: export MLRM_S3_CREATE_BUCKET=1 (or ?create_bucket=1 in the volume URL)"
        )

    def _translate(self, exc: Exception, action: str) -> VolumeError:
        if isinstance(exc, S3Error):
            if exc.code in _BAD_CREDENTIALS:
                return VolumeError(
                    f"S3 endpoint {self.endpoint} refused access to bucket '{self.bucket}' ({exc.code}); "
                    "check MLRM_S3_ACCESS_KEY / MLRM_S3_SECRET_KEY (and that this key may use the bucket)"
                )
            if exc.code == "NoSuchBucket":
                return self._missing_bucket()
            return VolumeError(f"S3 {action} in volume {self.url} failed: {exc.code}: {exc.message}")
        if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(exc.reason, urllib3.exceptions.SSLError):
            return VolumeError(
                f"TLS connection to S3 endpoint {self.endpoint} failed: {exc.reason}; if its certificate comes "
                "from a private CA, set MLRM_S3_CA_BUNDLE (or ?ca_bundle=) to the CA's PEM file"
            )
        if isinstance(exc, urllib3.exceptions.MaxRetryError):
            return VolumeError(
                f"S3 endpoint {self.endpoint} is unreachable after {self._attempts} "
                f"attempt{'s' if self._attempts > 1 else ''}: {exc.reason}"
            )
        if isinstance(exc, urllib3.exceptions.HTTPError):
            return VolumeError(f"S3 endpoint {self.endpoint} failed during {action}: {type(exc).__name__}: {exc}")
        if isinstance(exc, (ServerError, InvalidResponseError)):
            return VolumeError(f"S3 endpoint {self.endpoint} gave an unexpected answer to {action}: {exc}")
        return VolumeError(f"S3 {action} in volume {self.url} failed: {type(exc).__name__}: {exc}")

    def _raise(self, exc: Exception, action: str) -> NoReturn:
        raise self._translate(exc, action) from None

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (S3Error, ServerError, InvalidResponseError, urllib3.exceptions.HTTPError) as exc:
            self._raise(exc, action)

    def _check_bucket(self) -> None:
        with self._errors("opening the bucket"):
            if self._client.bucket_exists(self.bucket):
                return
            if not self._cfg.create_bucket:
                raise self._missing_bucket()
            try:
                self._client.make_bucket(self.bucket, location=self._cfg.region or None)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- the Volume interface --------------------------------------------------------------
    def open_read(self, key: str) -> IO[bytes]:
        name = self._name(key)
        try:
            response = self._client.get_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise NotFoundError(f"object '{key}' not found in volume {self.url}") from None
            self._raise(exc, f"read of '{key}'")
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError) as exc:
            self._raise(exc, f"read of '{key}'")
        return io.BufferedReader(_ObjectReader(response, f"'{key}' in volume {self.url}"), 1 << 20)

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        name = self._name(key)
        # The content spools in memory up to 8 MB, then on disk; nothing reaches S3 before
        # the block exits cleanly, so a writer that dies leaves no object behind.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY, prefix="mlrm-s3-") as spool:
            writer = _SpoolWriter(spool)
            yield writer
            writer.close()
            self._upload(key, name, spool)

    def _upload(self, key: str, name: str, spool: Any) -> None:
        size = spool.tell()
        spool.seek(0)
        # S3 PUT is atomic for readers: the object appears complete or not at all, and an
        # overwrite replaces the old object in one step. A large object goes up as a
        # multipart upload read part by part from the spool file (one part in memory at a
        # time, never the whole object); it becomes visible only when the upload completes,
        # and minio aborts it on failure.
        part_size = max(_PART_SIZE, math.ceil(size / _MAX_PARTS / (1 << 20)) << 20)
        with self._errors(f"write of '{key}'"):
            self._client.put_object(self.bucket, name, spool, length=size, part_size=part_size, num_parallel_uploads=1)

    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` only if ``key`` does not exist; True if this call created it.

        Exclusive through an S3 conditional write: the PUT carries ``If-None-Match: *``
        and the server answers 412 Precondition Failed when the object already exists, so
        the check and the write are one atomic step on the server (AWS S3, MinIO and
        SeaweedFS honour it). minio-py has no public parameter for request headers (its
        ``metadata=`` turns them into ``x-amz-meta-*``), so this uses its ``_put_object``.
        A server that ignores the header would make creates non-exclusive; one that
        refuses it (501) raises VolumeError. When the answer to the PUT is lost the call
        raises VolumeError rather than guess.
        """
        name = self._name(key)
        headers = {"If-None-Match": "*", "Content-Type": "application/octet-stream"}
        for attempt in range(self._attempts):
            try:
                self._create_client._put_object(self.bucket, name, bytes(data), headers)
                return True
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    return False
                if exc.code == "ConditionalRequestConflict" and attempt + 1 < self._attempts:
                    time.sleep(0.2 * (attempt + 1))  # a racing conditional write is in flight: ask again
                    continue
                if exc.code in ("NotImplemented", "MethodNotAllowed"):
                    raise VolumeError(
                        f"S3 endpoint {self.endpoint} does not support conditional writes (If-None-Match), "
                        "which mlrm needs for exclusive creates"
                    ) from None
                self._raise(exc, f"create of '{key}'")
            except ServerError as exc:
                if exc.status_code == 412:
                    return False
                self._raise(exc, f"create of '{key}'")
            except (InvalidResponseError, urllib3.exceptions.HTTPError) as exc:
                self._raise(exc, f"create of '{key}'")
        raise AssertionError("unreachable")  # pragma: no cover

    def stat(self, key: str) -> ObjectInfo | None:
        name = self._name(key)
        try:
            st = self._client.stat_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            self._raise(exc, f"stat of '{key}'")
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError) as exc:
            self._raise(exc, f"stat of '{key}'")
        if st.is_dir or name.endswith("/"):  # a folder marker, not an object
            return None
        modified = st.last_modified.timestamp() if st.last_modified else 0.0
        return ObjectInfo(key, st.size or 0, modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        found: list[ObjectInfo] = []
        with self._errors(f"listing of '{prefix}'"):
            for obj in self._client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True):
                name = obj.object_name or ""
                if obj.is_dir or name.endswith("/") or not name.startswith(self.prefix):
                    continue
                modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
                found.append(ObjectInfo(name[len(self.prefix) :], obj.size or 0, modified))
        yield from sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            self._client.remove_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return
            self._raise(exc, f"delete of '{key}'")
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError) as exc:
            self._raise(exc, f"delete of '{key}'")

    def delete_prefix(self, prefix: str) -> int:
        """One DeleteObjects request per 1000 keys instead of one request per key."""
        keys = [o.key for o in self.list(check_prefix(prefix))]
        if not keys:
            return 0
        with self._errors(f"delete of '{prefix}*'"):
            errors = list(self._client.remove_objects(self.bucket, (DeleteObject(self.prefix + k) for k in keys)))
        failed = [e for e in errors if e.code not in _NOT_FOUND]
        if failed:
            raise VolumeError(
                f"S3 delete of {len(failed)} object(s) under '{prefix}' in volume {self.url} failed: "
                f"{failed[0].name}: {failed[0].code}: {failed[0].message}"
            )
        return len(keys)

    def collect_temporary(self, older_than: float, now: float | None = None) -> int:
        """Abort multipart uploads a killed writer left unfinished (invisible, but they hold storage).

        Which process started an upload is unknown, so only uploads older than
        ``older_than`` (and at least an hour: a large upload may still be running) go.
        """
        now = time.time() if now is None else now
        removed, key_marker, upload_marker = 0, None, None
        with self._errors("listing of unfinished uploads"):
            while True:
                try:
                    page = self._client._list_multipart_uploads(
                        self.bucket, prefix=self.prefix or None, key_marker=key_marker, upload_id_marker=upload_marker
                    )
                except S3Error as exc:
                    if exc.code in ("NotImplemented", "MethodNotAllowed"):
                        return removed  # a server without multipart listings keeps nothing we can see
                    raise
                for upload in page.uploads:
                    started = upload.initiated_time.timestamp() if upload.initiated_time else now
                    if now - started >= max(older_than, 3600.0):
                        self._client._abort_multipart_upload(self.bucket, upload.object_name, upload.upload_id)
                        removed += 1
                # (minio 7.2 stores the next upload marker under a misspelt attribute name)
                marker = getattr(page, "next_upload_id_marker", None) or getattr(
                    page, "self._next_upload_id_marker", None
                )
                if not page.is_truncated or (page.next_key_marker, marker) == (key_marker, upload_marker):
                    return removed
                key_marker, upload_marker = page.next_key_marker, marker

    def close(self) -> None:
        for pool in self._pools:
            pool.clear()


class _ObjectReader(io.RawIOBase):
    """A GET response as a raw stream; closing it also returns the connection to the pool."""

    def __init__(self, response: Any, what: str) -> None:
        self._response = response
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._response.readinto(buffer)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise VolumeError(f"reading {self._what} failed: {type(exc).__name__}: {exc}") from None

    def readall(self) -> bytes:
        try:
            return self._response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise VolumeError(f"reading {self._what} failed: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        if not self.closed:
            try:
                self._response.close()
                self._response.release_conn()
            finally:
                super().close()


class _SpoolWriter(io.BufferedIOBase):
    """The writable side of :meth:`S3Volume.open_write`.

    Closing it (a wrapper such as ``io.TextIOWrapper`` may) only ends the writing; the
    spooled content stays for the upload.
    """

    def __init__(self, spool: Any) -> None:
        self._spool = spool

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed volume stream")
        return self._spool.write(data)

    def tell(self) -> int:
        return self._spool.tell()

    def flush(self) -> None:
        if self.closed:
            raise ValueError("flush of a closed volume stream")
