"""The volume contract. Every volume implementation must pass this suite.

``vol`` runs each test on the local folder and on S3 (a real SeaweedFS server, see conftest.py).
"""

from __future__ import annotations

import io
import threading

import pytest

from mlrm.errors import KeyRefusedError, NotFoundError, VolumeError
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
    with pytest.raises(KeyRefusedError) as err:
        vol.put_bytes(key, b"x")
    assert not err.value.transient  # a wrong name: retrying cannot help
    with pytest.raises(VolumeError):
        check_key(key)


def test_longest_names_work(vol):
    key = "k" * 255 + "/" + "é" * 127  # 255 and 254 bytes between two '/'
    vol.put_bytes(key, b"x")
    assert vol.get_bytes(key) == b"x" and vol.create(key + "x", b"y")


def test_local_names_taken_by_folders_and_objects(tmp_path):
    vol = LocalVolume(tmp_path / "vol")
    vol.put_bytes("a/b/c", b"x")
    with pytest.raises(KeyRefusedError, match=r"'a/b' in volume .*: the name is a folder of other objects"):
        vol.put_bytes("a/b", b"y")
    with pytest.raises(KeyRefusedError, match=r"'a/b/c/d' .*'a/b/c' is an object, so it cannot hold others"):
        vol.put_bytes("a/b/c/d", b"y")
    with pytest.raises(KeyRefusedError, match="'a/b/c/d'"):
        vol.create("a/b/c/d", b"y")
    with pytest.raises(NotFoundError, match=r"'a/b' not found .*a folder of other objects"):
        vol.get_bytes("a/b")
    assert [o.key for o in vol.list()] == ["a/b/c"]


def test_open_volume_by_url(tmp_path):
    assert isinstance(open_volume(str(tmp_path / "v")), LocalVolume)
    assert open_volume(f"file://{tmp_path}/w").root == (tmp_path / "w").resolve()
