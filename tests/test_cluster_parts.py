"""The cluster's parts that need no cluster: files by content, reports' artifacts, the worker column."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest

from patchkit import store
from patchkit.cluster.blobs import Blob, install, pack
from patchkit.cluster.task import BootReport, pack_artifacts, unpack_artifacts
from patchkit.errors import ClusterError
from patchkit.store import ResultKey, Results, sha256_file


def sparse_file(path: Path) -> Path:
    """64 MiB with 4 KiB of data at two places; the rest holes."""
    with open(path, "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"\x01" * 4096)
        f.seek(40 << 20)
        f.write(b"\x02" * 4096)
    return path


def test_a_sparse_file_travels_as_its_data_and_arrives_sparse_and_read_only(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "disk.img")
    payload = pack(source)
    assert payload.size == 64 << 20
    assert payload.data_bytes < 1 << 20  # the holes are not sent (file systems may round extents up)
    dest = install(payload, tmp_path / "worker" / "disk.img", sha256_file(source), sha256_file)
    assert sha256_file(dest) == sha256_file(source)
    assert os.stat(dest).st_blocks * 512 < 1 << 20
    assert oct(dest.stat().st_mode & 0o777) == "0o444"


def test_content_that_does_not_match_its_key_is_not_installed(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "disk.img")
    dest = tmp_path / "worker" / "disk.img"
    with pytest.raises(ClusterError, match=r"disk\.img arrived with content key .*, not 0000000000000000…"):
        install(pack(source), dest, "0" * 64, sha256_file)
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("name", ["../disk.img", "a/b", ".hidden", "", "x" * 200])
def test_a_task_names_plain_files_only(name: str) -> None:
    with pytest.raises(ClusterError, match="only plain names are accepted"):
        Blob("0" * 64, name)


def report_for(run_dir: Path, artifacts: bytes) -> BootReport:
    return BootReport(worker="w1", address="tcp://127.0.0.1:1", run_dir=str(run_dir), artifacts=artifacts)


def test_artifacts_come_back_without_disk_images_and_name_the_worker(tmp_path: Path) -> None:
    run_dir = tmp_path / "worker" / "runs" / "20260101-000000-probe-abcdef"
    run_dir.mkdir(parents=True)
    for name in ("serial.log", "screen.txt", "end.png"):
        (run_dir / name).write_text(name)
    (run_dir / "result.json").write_text(json.dumps({"passed": True, "run_dir": str(run_dir)}))
    (run_dir / "probe.img").write_bytes(b"disk")
    (run_dir / "overlay.qcow2").write_bytes(b"disk")
    runs = tmp_path / "client" / "runs"
    local = unpack_artifacts(report_for(run_dir, pack_artifacts(run_dir)), runs)
    assert local == runs / run_dir.name
    assert sorted(p.name for p in local.iterdir()) == ["end.png", "result.json", "screen.txt", "serial.log"]
    record = json.loads((local / "result.json").read_text())
    assert record == {"passed": True, "run_dir": str(local), "worker": "w1", "worker_address": "tcp://127.0.0.1:1",
                      "worker_run_dir": str(run_dir)}
    again = unpack_artifacts(report_for(run_dir, pack_artifacts(run_dir)), runs)
    assert again == runs / f"{run_dir.name}-2"


def test_artifacts_holding_anything_but_plain_files_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member = tarfile.TarInfo("../escape")
        data = b"x"
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(ClusterError, match="only plain names are accepted"):
        unpack_artifacts(report_for(tmp_path / "run", buffer.getvalue()), tmp_path / "runs")
    assert not (tmp_path / "escape").exists()


def result(worker: str) -> store.TestResult:
    key = ResultKey("s", "rev", "rom", "probe", "img", "7.2", "tcg", "q35")
    return store.TestResult(key=key, passed=True, reason="ok", run_dir="/r", worker=worker)


def test_results_keep_the_worker_and_a_database_from_before_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
    db.execute("""CREATE TABLE results (series TEXT, revision TEXT, rom_sha256 TEXT, guest TEXT, image_sha256 TEXT,
                  qemu_version TEXT, accel TEXT, passed INTEGER, reason TEXT, run_dir TEXT, timings TEXT,
                  rom_size INTEGER, version INTEGER, created REAL, config TEXT NOT NULL DEFAULT 'pc')""")
    db.execute("INSERT INTO results VALUES ('s', 'rev', 'rom', 'probe', 'img', '7.2', 'tcg', 1, 'ok', '/r', '{}', "
               "0, 1, 1.0, 'q35')")
    db.commit()
    db.close()
    with Results(path) as results:
        [old] = results.for_series("s")
        assert old.worker == ""
        results.record(result("w2"))
        newest = results.latest_by_cell("s", "rev")[("q35", "probe")]
    assert newest.worker == "w2" and newest.key == old.key
