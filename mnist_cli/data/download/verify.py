"""Is a file genuine? Its gz sha256, else its decoded (gunzipped) sha256, or with --no-verify its IDX structure.

The decoded digest lets re-compressed copies such as Debian's verify.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

from mnist_cli.data.download.failures import MirrorFailure
from mnist_cli.data.registry import FileSpec

GZIP_MAGIC = b"\x1f\x8b"
UNVERIFIED = "unverified"  # verified_by for files taken with --no-verify: IDX structure checked, digest not


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _decoded_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(spec: FileSpec, path: Path, gz_sha256: str) -> str:
    """How the file verified ("sha256" or "decoded_sha256"); raise MirrorFailure when it does not."""
    if gz_sha256 == spec.sha256:
        return "sha256"
    # Decoding also tells a truncated or corrupt gzip apart from a different file.
    try:
        decoded = _decoded_sha256(path)
    except EOFError:
        size = path.stat().st_size
        raise MirrorFailure(f"truncated: the gzip data ends early ({size} bytes)", integrity=True) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise MirrorFailure(f"sha256 mismatch, and the gzip data is corrupt ({exc})", integrity=True) from None
    if spec.decoded_sha256 and decoded == spec.decoded_sha256:
        return "decoded_sha256"
    if spec.decoded_sha256:
        raise MirrorFailure(
            f"sha256 mismatch (got {gz_sha256[:12]}..., decoded {decoded[:12]}...; "
            f"expected {spec.sha256[:12]}... or decoded {spec.decoded_sha256[:12]}...)",
            integrity=True,
        )
    raise MirrorFailure(
        f"sha256 mismatch (got {gz_sha256[:12]}..., expected {spec.sha256[:12]}...; "
        "only the original .gz verifies this file)",
        integrity=True,
    )


def check_structure(spec: FileSpec, path: Path) -> None:
    """Raise MirrorFailure unless `path` is a well-formed IDX file of the kind `spec` names."""
    from mnist_cli.core.errors import DataError, LocalIOError
    from mnist_cli.data import idx

    reader = idx.read_idx_images if "idx3" in spec.name else idx.read_idx_labels
    try:
        reader(path)
    except (DataError, LocalIOError) as exc:
        said = exc.message.replace(str(path), "the file")
        raise MirrorFailure(f"not a usable IDX file: {said}", integrity=True) from None


def check_head(head: bytes) -> None:
    """Refuse a transfer whose first bytes are not gzip's (an HTML error page, most often)."""
    if head.startswith(GZIP_MAGIC):
        return
    if head.lstrip()[:1] == b"<":
        raise MirrorFailure("served an HTML page, not the gzip file")
    raise MirrorFailure(f"served data that is not gzip (starts with {head[:8]!r})")
