"""The volume contract. Every volume implementation must pass this suite."""

from __future__ import annotations

import pytest

from mlrm.errors import NotFoundError, VolumeError
from mlrm.volume import open_volume
from mlrm.volume.base import check_key
from mlrm.volume.local import LocalVolume


@pytest.fixture(params=["local"])
def vol(request, tmp_path):
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
    ["../etc/passwd", "a/../../b", "/abs/path", "a//b", "a/./b", "bad\x00name", "tab\tname", "back\\slash", "", "C:/x"],
)
def test_unsafe_names_are_rejected(vol, key):
    with pytest.raises(VolumeError):
        vol.put_bytes(key, b"x")
    with pytest.raises(VolumeError):
        check_key(key)


def test_open_volume_by_url(tmp_path):
    assert isinstance(open_volume(str(tmp_path / "v")), LocalVolume)
    assert open_volume(f"file://{tmp_path}/w").root == (tmp_path / "w").resolve()
