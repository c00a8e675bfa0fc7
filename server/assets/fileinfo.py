"""What the asset routes know about files: size, mtime and content hash, and values computed from them.

A ``FileMemo`` remembers each value until the file's size or mtime changes, so an edited file is seen
on the next request without hashing every file on every request. There is one per app (kept by
``Assets``), never one per process: each app, and so each test, starts empty.
"""

import hashlib
from pathlib import Path


class FileInfo:
    """A file as it was when last looked at: size, mtime and sha256 (``digest``)."""

    __slots__ = ("path", "size", "mtime", "digest")

    def __init__(self, path, size, mtime, digest):
        self.path, self.size, self.mtime, self.digest = path, size, mtime, digest

    @property
    def version(self):
        """The ``?v=`` of the file's URL: changes when its content does."""
        return self.digest[:12]

    def __repr__(self):
        return f"FileInfo({str(self.path)!r}, size={self.size}, digest={self.digest[:12]!r})"


def content_version(data):
    """The ``?v=`` of bytes the server makes (the Python bundle), like ``FileInfo.version``."""
    return hashlib.sha256(data).hexdigest()[:12]


def _hash_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileMemo:
    """Values computed from files, each remembered until its file's size or mtime changes."""

    def __init__(self):
        self._values = {}  # (kind, path) -> ((mtime_ns, size), value)

    def get(self, kind, path, compute):
        """``compute(path)``, or the value remembered for this kind and unchanged file; None if it does not exist."""
        path = Path(path)
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (kind, str(path))
        stamp = (stat.st_mtime_ns, stat.st_size)
        hit = self._values.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = compute(path)
        self._values[key] = (stamp, value)
        return value

    def info(self, path):
        """The file's ``FileInfo``; None if it is not a file."""
        path = Path(path)
        if not path.is_file():
            return None

        def compute(p):
            stat = p.stat()
            return FileInfo(p, stat.st_size, stat.st_mtime, _hash_file(p))
        return self.get("info", path, compute)

    def versioned_url(self, root, relative):
        """``/<relative>?v=<content hash>`` for a file below ``root``: cached for a year, changes with the file."""
        info = self.info(Path(root) / relative)
        return f"/{relative}?v={info.version}" if info else f"/{relative}"
