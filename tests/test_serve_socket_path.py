"""Where ``flowdec serve`` puts its socket, and what it never touches on the way.

A planted symbolic link, a directory that is not the backend's, or a file that happens to sit at
the socket path must be refused or left alone; only a stale socket of this user is replaced.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flowdec.serve import Backend, BackendBusy, DelayEngines, socket_path


def backend(path: Path) -> Backend:
    return Backend(DelayEngines(0), path, idle_exit=0)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def test_creates_a_private_directory_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new" / "b.sock"
    b = backend(path)
    b.bind()
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert answers(path)
    b.close()
    assert os.listdir(path.parent) == [], "socket or lock file left behind"


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o755)
    (victim / "backend.sock").write_text("precious")
    link = tmp_path / "flowdec-1000"  # as planted in /tmp by someone else
    link.symlink_to(victim)
    b = backend(link / "backend.sock")
    with pytest.raises(PermissionError, match="symbolic link"):
        b.bind()
    b.close()
    assert mode(victim) == 0o755
    assert (victim / "backend.sock").read_text() == "precious"
    assert os.listdir(victim) == ["backend.sock"]


@pytest.mark.parametrize("dir_mode", [0o755, 0o1777])  # 0o1777: like /tmp
def test_a_directory_it_did_not_create_is_never_chmodded(tmp_path: Path, dir_mode: int) -> None:
    # FLOWDEC_SOCKET=/tmp/x.sock as root used to chmod /tmp itself to 0700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(dir_mode)
    b = backend(shared / "x.sock")
    b.bind()
    assert answers(shared / "x.sock") and mode(shared) == dir_mode
    b.close()
    assert mode(shared) == dir_mode
    assert os.listdir(shared) == []


def test_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    b = backend(d / "x.sock")
    with pytest.raises(PermissionError, match="writable by others"):
        b.bind()
    b.close()
    assert mode(d) == 0o777


def test_a_file_at_the_socket_path_is_never_deleted(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    res = subprocess.run([sys.executable, "-m", "flowdec", "serve", "--socket", "notes.txt",
                          "--engine", "delay:0", "--idle-exit", "1"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "not a socket" in res.stderr
    assert notes.read_text() == "mine"
    link = tmp_path / "link.sock"
    link.symlink_to(notes)
    b = backend(link)
    with pytest.raises(FileExistsError):
        b.bind()
    b.close()
    assert link.is_symlink() and notes.read_text() == "mine"


def test_only_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "b.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # closed without unlinking: a backend that died
    b = backend(path)
    b.bind()
    assert answers(path)
    b.close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:  # someone else's server
        live.bind(str(path))
        live.listen(1)
        b = backend(path)
        with pytest.raises(FileExistsError, match="listens"):
            b.bind()
        b.close()
        assert answers(path)


def test_one_backend_per_socket_and_the_lock_file_goes(tmp_path: Path) -> None:
    path = tmp_path / "b.sock"
    a = backend(path)
    a.bind()
    b = backend(path)
    with pytest.raises(BackendBusy):
        b.bind()
    b.close()
    assert answers(path)
    a.close()
    assert os.listdir(tmp_path) == []
    c = backend(path)
    c.bind()
    c.close()


def test_xdg_runtime_dir_is_preferred_when_usable(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWDEC_SOCKET", raising=False)
    fallback = Path(f"/tmp/flowdec-{os.getuid()}/backend.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert socket_path() == tmp_path / "flowdec" / "backend.sock"
    for unusable in (str(tmp_path / "missing"), "relative/dir", ""):
        monkeypatch.setenv("XDG_RUNTIME_DIR", unusable)
        assert socket_path() == fallback
    monkeypatch.setenv("FLOWDEC_SOCKET", str(tmp_path / "x.sock"))
    assert socket_path() == tmp_path / "x.sock"
