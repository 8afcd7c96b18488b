"""The volume contract. Every volume implementation must pass this suite.

``vol`` runs each test on the local folder and on S3 (a real SeaweedFS server, see conftest.py).
"""

from __future__ import annotations

import io
import threading

import pytest

from mlrm.errors import CorruptRecordError, InvalidKeyError, NotFoundError, VolumeError, error_from_dict
from mlrm.volume import open_volume
from mlrm.volume.base import check_key
from mlrm.volume.local import LocalVolume


@pytest.fixture(params=["local", "s3"])
def vol(request, tmp_path):
    if request.param == "s3":
        return request.getfixturevalue("s3_volume")
    return LocalVolume(tmp_path / "vol")


def test_put_get_stat_list_delete(vol):
    vol.put_bytes("a/b/c.txt", b"hello")
    vol.put_bytes("a/x.txt", b"x")
    vol.put_json("z.json", {"k": [1, 2]})
    assert vol.get_bytes("a/b/c.txt") == b"hello"
    assert vol.get_json("z.json") == {"k": [1, 2]}
    assert vol.stat("a/b/c.txt").size == 5
    assert vol.stat("missing") is None
    assert [o.key for o in vol.list("a/")] == ["a/b/c.txt", "a/x.txt"]
    assert [o.key for o in vol.list("a/b")] == ["a/b/c.txt"]
    assert [o.key for o in vol.list()] == ["a/b/c.txt", "a/x.txt", "z.json"]
    vol.delete("a/b/c.txt")
    vol.delete("a/b/c.txt")  # deleting twice is fine
    assert not vol.exists("a/b/c.txt")
    assert vol.delete_prefix("a/") == 1
    assert [o.key for o in vol.list()] == ["z.json"]


@pytest.mark.parametrize(
    "payload", [b"", b'{"version": ', b"\xff\xfe\x00garbage", b"[" * 100_000, b"not json"], ids=repr
)
def test_invalid_json_is_a_corrupt_record_naming_its_key(vol, payload):
    vol.put_bytes("records/r.json", payload)
    with pytest.raises(CorruptRecordError, match=r"'records/r.json' in volume .* is not valid JSON") as info:
        vol.get_json("records/r.json")
    assert info.value.key == "records/r.json" and "\n" not in str(info.value)


def test_missing_object_is_not_found(vol):
    with pytest.raises(NotFoundError, match="'nope' not found"):
        vol.get_bytes("nope")


def test_write_appears_only_when_complete(vol):
    with pytest.raises(RuntimeError), vol.open_write("partial.bin") as f:
        f.write(b"half")
        assert not vol.exists("partial.bin")
        raise RuntimeError("writer died")
    assert not vol.exists("partial.bin")
    assert list(vol.list()) == []


def test_create_is_exclusive(vol):
    assert vol.create("lock", b"1") is True
    assert vol.create("lock", b"2") is False
    assert vol.get_bytes("lock") == b"1"


def test_create_is_exclusive_under_concurrency(vol):
    """Racing creators: exactly one wins, and its content is what stays."""
    # Few racers: SeaweedFS makes a conditional PUT that meets a write in flight wait for it
    # (up to about 1 s), and the first write to a fresh bucket is slow (it allocates storage).
    vol.put_bytes("locks/warm-up", b"")
    racers = 4
    for round_ in range(1):
        key = f"locks/race-{round_}"
        start = threading.Barrier(racers)
        results: dict[int, bool] = {}

        def attempt(i: int, key: str = key, start: threading.Barrier = start, results: dict = results) -> None:
            start.wait()
            results[i] = vol.create(key, f"writer-{i}".encode())

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, won in results.items() if won]
        assert len(results) == racers
        assert len(winners) == 1
        assert vol.get_bytes(key) == f"writer-{winners[0]}".encode()


def test_overwrite_replaces_whole_object(vol):
    vol.put_bytes("o.txt", b"a much longer first version")
    vol.put_bytes("o.txt", b"short")
    assert vol.get_bytes("o.txt") == b"short"
    assert vol.stat("o.txt").size == 5


def test_read_stream_behaves_like_a_file(vol):
    vol.put_bytes("lines.txt", b"one\ntwo\nthree\n")
    with vol.open_read("lines.txt") as f:
        assert f.readline() == b"one\n"
        assert f.read(3) == b"two"
        assert f.read() == b"\nthree\n"
        assert f.read() == b""
    assert f.closed
    f = vol.open_read("lines.txt")
    assert f.read(2) == b"on"
    f.close()  # closing before the end is fine too
    with io.TextIOWrapper(vol.open_read("lines.txt"), encoding="utf-8") as text:
        assert list(text) == ["one\n", "two\n", "three\n"]


def test_write_through_a_text_wrapper(vol):
    """A wrapper that closes the byte stream at its end must not lose the content."""
    with vol.open_write("t.txt") as f, io.TextIOWrapper(f, encoding="utf-8") as text:
        text.write("héllo\n")
    assert vol.get_bytes("t.txt") == "héllo\n".encode()


def test_stat_and_list_see_objects_not_folders(vol):
    vol.put_bytes("d/e/f.bin", b"123")
    assert vol.stat("d") is None
    assert vol.stat("d/e") is None
    info = vol.stat("d/e/f.bin")
    assert (info.key, info.size) == ("d/e/f.bin", 3)
    assert info.modified > 0
    assert [(o.key, o.size) for o in vol.list()] == [("d/e/f.bin", 3)]
    assert list(vol.list("nothing/")) == []


def test_streams_large_objects(vol):
    chunk = b"x" * (1 << 20)
    with vol.open_write("big.bin") as f:
        for _ in range(8):
            f.write(chunk)
    assert vol.stat("big.bin").size == 8 << 20
    with vol.open_read("big.bin") as f:
        assert len(f.read(1 << 20)) == 1 << 20


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd", "a/../../b", "/abs/path", "a//b", "a/./b", "bad\x00name", "tab\tname", "back\\slash", "",
        "C:/x", "a/" + "k" * 256, "é" * 128,
    ],
)  # fmt: skip
def test_unsafe_names_are_rejected(vol, key):
    with pytest.raises(VolumeError) as written:
        vol.put_bytes(key, b"x")
    with pytest.raises(VolumeError) as checked:
        check_key(key)
    for err in (written.value, checked.value):  # the user's mistake, not an outage: never retried
        assert isinstance(err, InvalidKeyError) and not err.transient
        assert not error_from_dict(err.to_dict()).transient  # also once it has crossed the bus


def test_longest_names_work(vol):
    key = "k" * 255 + "/" + "é" * 127  # 255 and 254 bytes between two '/'
    vol.put_bytes(key, b"x")
    assert vol.get_bytes(key) == b"x" and vol.create(key + "x", b"y")


def test_local_names_taken_by_folders_and_objects(tmp_path):
    vol = LocalVolume(tmp_path / "vol")
    vol.put_bytes("a/b/c", b"x")
    with pytest.raises(InvalidKeyError, match=r"'a/b' in volume .*: the name is a folder of other objects"):
        vol.put_bytes("a/b", b"y")
    with pytest.raises(InvalidKeyError, match=r"'a/b/c/d' .*'a/b/c' is an object, so it cannot hold others"):
        vol.put_bytes("a/b/c/d", b"y")
    with pytest.raises(InvalidKeyError, match="'a/b/c/d'"):
        vol.create("a/b/c/d", b"y")
    with pytest.raises(NotFoundError, match=r"'a/b' not found .*a folder of other objects"):
        vol.get_bytes("a/b")
    assert [o.key for o in vol.list()] == ["a/b/c"]


def test_open_volume_by_url(tmp_path):
    assert isinstance(open_volume(str(tmp_path / "v")), LocalVolume)
    assert open_volume(f"file://{tmp_path}/w").root == (tmp_path / "w").resolve()


# -- the local folder never follows a symbolic link out of itself -------------------------------
_OPERATIONS = {
    "read": lambda v, k: v.get_bytes(k),
    "read_json": lambda v, k: v.get_json(k),
    "write": lambda v, k: v.put_bytes(k, b"pwned"),
    "open_write": lambda v, k: v.open_write(k).__enter__().write(b"pwned"),
    "create": lambda v, k: v.create(k, b"pwned"),
    "stat": lambda v, k: v.stat(k),
    "exists": lambda v, k: v.exists(k),
    "list": lambda v, k: list(v.list(k)),
    "list_parent": lambda v, k: list(v.list(k.rsplit("/", 1)[0] + "/")),
    "list_all": lambda v, k: list(v.list()),
    "delete": lambda v, k: v.delete(k),
    "delete_prefix": lambda v, k: v.delete_prefix(k.rsplit("/", 1)[0] + "/"),
}


@pytest.fixture
def linked(tmp_path):
    """A volume holding a link to an outside folder and a link to an outside file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    vol = LocalVolume(tmp_path / "vol")
    vol.put_bytes("inside/ok.txt", b"ok")
    (vol.root / "models").symlink_to(outside, target_is_directory=True)  # a link as a folder on the way
    (vol.root / "inside" / "secret.txt").symlink_to(outside / "secret.txt")  # a link as the object itself
    return vol, outside


@pytest.mark.parametrize("key", ["models/secret.txt", "inside/secret.txt"])
@pytest.mark.parametrize("operation", sorted(_OPERATIONS))
def test_local_volume_refuses_symbolic_links(linked, operation, key):
    vol, outside = linked
    with pytest.raises(VolumeError, match=r"symbolic link.*does not follow links") as info:
        _OPERATIONS[operation](vol, key)
    assert "'models'" in str(info.value) or "'inside/secret.txt'" in str(info.value)
    assert not info.value.transient  # refused, not an outage: retrying cannot help
    assert (outside / "secret.txt").read_bytes() == b"secret"  # nothing outside was read, written or removed
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert vol.get_bytes("inside/ok.txt") == b"ok"  # the rest of the volume still works


def test_local_volume_works_beside_links(linked):
    vol, _ = linked
    vol.put_bytes("runs/r/a.txt", b"a")
    assert [o.key for o in vol.list("inside/ok")] == ["inside/ok.txt"]
    assert [o.key for o in vol.list("runs/")] == ["runs/r/a.txt"]
    vol.delete("runs/r/a.txt")
    assert not (vol.root / "runs").exists()  # empty folders are still pruned
