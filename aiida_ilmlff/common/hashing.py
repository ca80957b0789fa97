"""SHA-256 digests of files and bytes (the ``sha256`` attribute of data nodes, content fingerprints)."""

from __future__ import annotations

import hashlib
import os

__all__ = ('sha256_bytes', 'sha256_file')

#: Bytes read at a time by :func:`sha256_file` (4 MiB: the digest does not depend on it).
CHUNK = 1 << 22


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex SHA-256 digest (64 characters) of the file at ``path``, read in blocks of ``chunk`` bytes.

    :raises OSError: if the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes | str) -> str:
    """Hex SHA-256 digest (64 characters) of ``data`` (a ``str`` is encoded as UTF-8 first)."""
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()
