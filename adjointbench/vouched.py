"""Files the harness vouches for while code under test runs beside it.

An implementation's worker runs as the same user as the harness, so it can
write any file the harness writes: append a record of its own to
results.jsonl, or put an oracle cache entry in place whose "reference" is its
own wrong answer. Without an OS sandbox it cannot be stopped from writing;
it can be stopped from being believed. The harness notes each such file's
bytes and stat signature (inode, size, modification and change times: the
change time cannot be set back by a process, so any write or rename shows)
when it reads or writes it; a file whose signature moved since then is
read again, and if its bytes differ the harness does not believe them, puts
its own back and says so.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def signature(path: Path) -> tuple | None:
    """What changes whenever anyone writes, replaces or removes ``path`` (a
    link put in its place included)."""
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        return None
    return (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns, stat.S_ISREG(s.st_mode))


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` as ``path`` at once: a temporary file renamed over it (which
    also replaces a link or a file put in its place)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Vouched:
    """The files the harness read or wrote, each with the bytes it holds for it.

    >>> import tempfile; folder = Path(tempfile.mkdtemp()); p = folder / "r.jsonl"
    >>> p.write_bytes(b"mine\\n"); v = Vouched(); v.note(p, b"mine\\n")
    5
    >>> v.holds(p)
    True
    >>> _ = p.write_bytes(b"forged\\n"); v.holds(p)
    False
    >>> v.changed() == [p]
    True
    >>> v.restore(p); p.read_bytes() == b"mine\\n" and v.holds(p) and v.changed() == []
    True
    """

    def __init__(self):
        self._files: dict[Path, tuple[bytes | None, tuple | None]] = {}

    def note(self, path: Path, data: bytes | None) -> None:
        """``path`` holds ``data`` now, as the harness read or wrote it
        (None: a file the harness found and has not read yet, vouched for by
        its signature alone)."""
        self._files[path] = (data, signature(path))

    def holds(self, path: Path, thorough: bool = False) -> bool:
        """Whether ``path`` still holds what the harness noted: unchanged, or
        written again with the same bytes (its new signature is taken).
        File times tick coarsely (a few ms), so a rewrite of the same size
        just after the harness's own write can keep the signature:
        ``thorough`` compares the bytes whatever the signature says."""
        if path not in self._files:
            return False
        data, noted = self._files[path]
        now = signature(path)
        if now == noted and not (thorough and data is not None):
            return True
        if now is None or data is None or not now[-1]:  # a link or a device: never read
            return now is None and noted is None  # absent, as it was
        try:
            if path.read_bytes() != data:
                return False
        except OSError:  # a folder or a dangling link in its place
            return False
        self._files[path] = (data, now)
        return True

    def changed(self) -> list[Path]:
        """The files the harness read or wrote whose bytes another process
        changed since (compared byte by byte)."""
        return [p for p, (data, _) in list(self._files.items())
                if data is not None and not self.holds(p, thorough=True)]

    def held(self, path: Path) -> bytes | bytearray | None:
        """The bytes the harness noted for ``path``: the very object given to
        :meth:`note` (ResultsFile grows its bytearray in place)."""
        return self._files.get(path, (None, None))[0]

    def restore(self, path: Path) -> None:
        data = self._files[path][0]
        write_atomically(path, data)
        self.note(path, data)
