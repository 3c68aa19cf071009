"""Locks that hold under races and across PID namespaces; cleanup only of protloc's own orphans
(``protloc.storage.lock``, used by every step folder and the image cache)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protloc.errors import StorageError
from protloc.folders import locked
from protloc.storage import lock

# A process that holds ``argv[1]``'s lock (or owns a temporary file there) until killed.
_HOLDER = """
import sys, time
from pathlib import Path
from protloc.storage import lock
kind, path = sys.argv[1], Path(sys.argv[2])
ctx = lock.hold(path) if kind == "hold" else lock.temporary(path)
with ctx:
    print("held", flush=True)
    time.sleep(120)
"""


def _start_holder(kind: str, path: Path, namespace: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-c", _HOLDER, kind, str(path)]
    if namespace:  # its own PID namespace: its pid means nothing here (a container's run)
        cmd = ["unshare", "--pid", "--fork", "--kill-child", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """SIGKILL the holder (the python under ``unshare`` too) and wait until it has exited."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in [proc.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    for pid in children:  # exited once gone or a zombie (its files, and locks, closed)
        stat = Path(f"/proc/{pid}/stat")
        while True:
            try:
                if stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                    break
            except FileNotFoundError:
                break
            time.sleep(0.01)


def _namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], check=False, capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("namespace", [False, True], ids=["same-namespace", "other-pid-namespace"])
def test_a_live_holder_is_never_taken_over_and_a_dead_ones_lock_is_free(namespace, tmp_path):
    if namespace and not _namespaces_work():
        pytest.skip("unshare --pid needs root or user namespaces on this machine")
    out = tmp_path / "out"
    out.mkdir()
    holder = _start_holder("hold", out / ".protloc.lock", namespace)
    try:
        with (
            pytest.raises(StorageError, match=r"being written by another protloc run \(pid "),
            locked(str(out)),
        ):
            pass
    finally:
        _stop(holder)  # SIGKILL: nothing released by the holder itself
    with locked(str(out)):  # the kernel dropped its lock
        assert (out / ".protloc.lock").is_file()
    assert not (out / ".protloc.lock").exists()


def _contend(path: str, inside: str, start: float, rounds: int, queue) -> None:
    while time.time() < start:
        time.sleep(0.001)
    overlaps = held = 0
    for _ in range(rounds):
        try:
            with lock.hold(Path(path)):
                held += 1
                try:  # a second holder at the same time finds this file
                    fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    overlaps += 1
                    continue
                time.sleep(0.0005)
                os.close(fd)
                os.unlink(inside)
        except lock.LockHeldError:
            pass
    queue.put((held, overlaps))


def test_eight_processes_racing_for_one_lock_never_hold_it_together(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.time() + 0.5
    args = (str(tmp_path / ".protloc.lock"), str(tmp_path / "inside"), start, 200, queue)
    procs = [ctx.Process(target=_contend, args=args) for _ in range(8)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert sum(o for _, o in results) == 0, results
    assert sum(h for h, _ in results) > 8  # they did take turns


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_only_protloc_temporary_files_of_dead_writers_are_removed(tmp_path):
    live = _start_holder("temporary", tmp_path / "live.u8")
    dead = _start_holder("temporary", tmp_path / "dead.u8")
    _stop(dead)  # killed mid-build: its temporary file stays
    try:
        [live_tmp] = [p for p in tmp_path.glob(f"{lock.TEMP_PREFIX}*") if "live" in p.name]
        [dead_tmp] = [p for p in tmp_path.glob(f"{lock.TEMP_PREFIX}*") if "dead" in p.name]
        others = tmp_path / "notes.tmp.999999"  # another program's file in a shared /dev/shm
        others.write_text("not protloc's")
        for p in (live_tmp, dead_tmp, others):
            _age(p, 2 * lock.ORPHAN_MIN_AGE_S)
        young = tmp_path / f"{lock.TEMP_PREFIX}1.2.young.u8"  # created, not yet locked
        young.write_text("")

        removed = lock.remove_orphans(tmp_path)

        assert [name for name, _ in removed] == [dead_tmp.name]
        assert not dead_tmp.exists()
        assert live_tmp.exists() and others.exists() and young.exists()
    finally:
        _stop(live)


def test_a_temporary_file_is_renamed_when_done_and_removed_on_error(tmp_path):
    target = tmp_path / "x.json"
    with lock.temporary(target) as tmp:
        tmp.write_text("1")
    assert target.read_text() == "1"
    with pytest.raises(RuntimeError), lock.temporary(target) as tmp:
        tmp.write_text("2")
        raise RuntimeError
    assert target.read_text() == "1"
    assert list(tmp_path.iterdir()) == [target]
