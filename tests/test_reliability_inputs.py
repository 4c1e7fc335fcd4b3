"""Bad input at the command line, each with its documented exit code, one error line and no traceback.

Data files (through `mnist train`), unreadable files, pictures for `mnist predict`, and broken targets
for `mnist evaluate` and `mnist predict`. Nonsense `mnist train` options are in test_train_cli.py.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_dataset
from PIL import Image
from test_reliability import clean_env, finished_run, invoke, mnist_command, one_error_line  # noqa: F401 - a fixture

from mnist_cli.core.config import CONFIG_FILE
from mnist_cli.data import TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from mnist_cli.core.errors import DATA, INPUT, LOCAL_IO, MODEL

# Data files ------------------------------------------------------------------------------


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def _truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def _bad_crc(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[-8] ^= 0xFF  # the gzip trailer's CRC32 of the data
    path.write_bytes(bytes(content))


def _wrong_magic(path: Path) -> None:
    path.write_bytes(gzip.compress(_idx(2049, (50, 28, 28), bytes(50 * 784))))


def _wrong_dimensions(path: Path) -> None:
    path.write_bytes(gzip.compress(_idx(2051, (50, 32, 32), bytes(50 * 32 * 32))))


def _shorter_than_header_says(path: Path) -> None:
    path.write_bytes(gzip.compress(_idx(2051, (50, 28, 28), bytes(49 * 784))))


def _fewer_labels(path: Path) -> None:
    path.with_name(TRAIN_LABELS).write_bytes(gzip.compress(_idx(2049, (40,), bytes(40))))


def _empty(path: Path) -> None:
    path.with_name(TEST_LABELS).write_bytes(b"")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "oops").write_text("a folder where the file should be")


def _text(path: Path) -> None:
    path.write_text("<html>404 Not Found</html>")


DATA_FAULTS: list[tuple[str, Callable[[Path], None], int, str]] = [
    ("truncated-gzip", _truncate, DATA, "is not a complete gzip file"),
    ("gzip-bad-crc", _bad_crc, DATA, "is not a complete gzip file (CRC check failed"),
    ("wrong-idx-magic", _wrong_magic, DATA, "has IDX magic number 2049, expected 2051"),
    ("wrong-dimensions", _wrong_dimensions, DATA, "holds 32x32 images, expected 28x28"),
    ("shorter-than-its-header", _shorter_than_header_says, DATA, "but its header promises"),
    ("image-label-count-mismatch", _fewer_labels, DATA, "has 50 images but train-labels-idx1-ubyte.gz has 40 labels"),
    ("empty-file", _empty, DATA, "is too short to be an IDX file (0 bytes)"),
    ("not-idx-at-all", _text, DATA, "has IDX magic number"),
    ("directory-instead-of-file", _directory, LOCAL_IO, "a directory is in the way while reading"),
]


@pytest.mark.parametrize(("how", "damage", "code", "says"), DATA_FAULTS, ids=[case[0] for case in DATA_FAULTS])
def test_a_bad_data_file_is_one_clear_error_with_its_exit_code(
    tmp_path: Path, how: str, damage: Callable[[Path], None], code: int, says: str
) -> None:
    folder = write_tiny_dataset(tmp_path / "data" / "mnist", n_train=50, n_test=20)
    damage(folder / TRAIN_IMAGES)
    # A dead mirror: a file that looks missing must not reach the network.
    env = {"MNIST_MIRROR": f"{tmp_path / 'no-mirror'}"}
    (tmp_path / "no-mirror").mkdir()
    result = invoke("train", "--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"), "--epochs", "1", env=env)
    assert result.exit_code == code, result.output
    line = one_error_line(result.stderr)
    assert says in line and str(folder) in line
    assert result.stdout == ""
    assert not (tmp_path / "run" / CONFIG_FILE).exists()


def test_an_unreadable_data_file_exits_6(tmp_path: Path) -> None:
    # Root reads any file, so the command runs as `nobody` where it can (setpriv), else as the user it is.
    base = Path(tempfile.mkdtemp(prefix="mnist-perm-"))
    try:
        base.chmod(0o755)
        folder = write_tiny_dataset(base / "mnist", n_train=20, n_test=10)
        for path in (base, folder):
            path.chmod(0o755)
        for path in folder.iterdir():
            path.chmod(0o644)
        (folder / TRAIN_IMAGES).chmod(0o000)
        command = [*mnist_command(), "show", "--data-dir", str(base), "--split", "train"]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot make a file unreadable")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = clean_env(HOME=str(base), PYTHONDONTWRITEBYTECODE="1")
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=str(base))
        assert done.returncode == LOCAL_IO, done.stderr
        line = one_error_line(done.stderr)
        assert "permission denied" in line and TRAIN_IMAGES in line
    finally:
        shutil.rmtree(base, ignore_errors=True)


# Pictures for `mnist predict` ------------------------------------------------------------


def _digit(size: int = 200) -> np.ndarray:
    """A dark "1" on light paper, as a person would draw it."""
    page = np.full((size, size), 235, np.uint8)
    page[size // 5 : 4 * size // 5, size // 2 - size // 20 : size // 2 + size // 20] = 20
    return page


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header that claims a huge picture; the pixel data is a few bytes (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def _picture(kind: str, folder: Path) -> Path:
    path = folder / {
        "not-an-image": "notes.png",
        "zero-bytes": "empty.png",
        "bomb-over-the-cap": "bomb.png",
        "bomb-over-pillows-limit": "huge.png",
        "truncated-png": "cut.png",
        "animated-gif": "animated.gif",
        "16-bit-png": "deep.png",
        "cmyk-jpeg": "print.jpg",
    }[kind]
    if kind == "not-an-image":
        path.write_text("this is a shopping list, not a picture")
    elif kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "bomb-over-the-cap":
        path.write_bytes(_png_claiming(8_000, 6_000))  # 48 megapixels: over MAX_PIXELS, under Pillow's guard
    elif kind == "bomb-over-pillows-limit":
        path.write_bytes(_png_claiming(50_000, 50_000))  # 2.5 gigapixels
    elif kind == "truncated-png":
        buffer = io.BytesIO()
        Image.fromarray(_digit()).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[:200])
    elif kind == "animated-gif":
        first, second = Image.fromarray(_digit()), Image.new("L", (200, 200), 235)
        first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    elif kind == "16-bit-png":
        Image.fromarray(_digit().astype(np.uint16) * 257).save(path)
    elif kind == "cmyk-jpeg":
        Image.fromarray(_digit()).convert("CMYK").save(path, quality=95)
    return path


BAD_PICTURES = [
    ("not-an-image", "is not a PNG, JPEG, BMP, GIF, TIFF or WebP image"),
    ("zero-bytes", "is empty (0 bytes)"),
    ("bomb-over-the-cap", "has more than 40 megapixels (8000x6000 pixels)"),
    ("bomb-over-pillows-limit", "megapixels"),
    ("truncated-png", "is corrupt or truncated"),
]


@pytest.mark.parametrize(("kind", "says"), BAD_PICTURES, ids=[kind for kind, _ in BAD_PICTURES])
def test_a_bad_picture_fails_alone_with_exit_10_while_the_others_are_read(
    finished_run: tuple[Path, Path], tmp_path: Path, kind: str, says: str
) -> None:
    run, _ = finished_run
    good = tmp_path / "good.png"
    Image.fromarray(_digit()).save(good)
    bad = _picture(kind, tmp_path)
    result = invoke("predict", "--checkpoint", str(run), str(good), str(bad), "--json")
    assert result.exit_code == INPUT
    assert "Traceback" not in result.stderr
    first, second = json.loads(result.stdout)
    assert first["path"] == str(good) and len(first["probabilities"]) == 10
    assert second["path"] == str(bad) and says in second["error"] and second["hint"]
    # On the terminal: the error's line, then its advice on a hint line of its own.
    lines = result.stderr.splitlines()
    at = next(index for index, line in enumerate(lines) if line.startswith("error:"))
    assert says in lines[at] and lines[at + 1] == f"hint: {second['hint']}", result.stderr


@pytest.mark.parametrize("kind", ["animated-gif", "16-bit-png", "cmyk-jpeg"])
def test_unusual_but_valid_pictures_are_read_like_the_plain_8_bit_picture(
    finished_run: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    from mnist_cli.inference.preprocessing import preprocess

    run, _ = finished_run
    plain, unusual = tmp_path / "plain.png", _picture(kind, tmp_path)
    Image.fromarray(_digit()).save(plain)
    result = invoke("predict", "--checkpoint", str(run), str(plain), str(unusual), "--json")
    assert result.exit_code == 0, result.output
    assert all(len(item["probabilities"]) == 10 for item in json.loads(result.stdout))
    # What the network sees is the same digit: the GIF's first frame (its second is blank paper),
    # the 16-bit greys scaled rather than clipped, the CMYK ink converted.
    seen, reference = preprocess(unusual).astype(float), preprocess(plain).astype(float)
    if kind == "animated-gif":
        # Palette pictures are smoothed as if dithered, so the reference is the first frame as a still GIF.
        still = tmp_path / "still.gif"
        Image.fromarray(_digit()).save(still)
        assert np.array_equal(seen, preprocess(still))
    else:
        assert np.corrcoef(seen.ravel(), reference.ravel())[0, 1] > 0.95


# Broken targets for `mnist evaluate` and `mnist predict` --------------------------------


def _break_target(run: Path, how: str) -> Path:
    checkpoints = sorted((run / "best").glob("ckpt-*.index"))
    prefix = checkpoints[-1].with_suffix("")
    if how == "missing":
        return run.parent / "no-such-run"
    if how == "partial-checkpoint":  # killed before the .index was written
        for sub in ("best", "checkpoints"):
            for index in (run / sub).glob("*.index"):
                index.unlink()
    elif how == "corrupt-checkpoint":
        data = next(run.glob(f"best/{prefix.name}.data-*"))
        data.write_bytes(data.read_bytes()[:100])
    elif how == "malformed-config":
        (run / CONFIG_FILE).write_text('{"model": "mlp", "hidden": [16,')
    elif how == "unknown-model":
        config = json.loads((run / CONFIG_FILE).read_text())
        (run / CONFIG_FILE).write_text(json.dumps({**config, "model": "resnet152"}))
    return run


BROKEN_TARGETS = [
    ("missing", "does not exist"),
    ("partial-checkpoint", "index is missing"),
    ("corrupt-checkpoint", "cannot be read"),
    ("malformed-config", "is not valid JSON"),
    ("unknown-model", "--model must be one of mlp, cnn, got 'resnet152'"),
]


@pytest.mark.parametrize(("how", "says"), BROKEN_TARGETS, ids=[how for how, _ in BROKEN_TARGETS])
def test_a_broken_target_is_exit_7_for_evaluate_and_predict(
    finished_run: tuple[Path, Path], tmp_path: Path, how: str, says: str
) -> None:
    source, data_dir = finished_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    target = _break_target(run, how)
    picture = tmp_path / "digit.png"
    Image.fromarray(_digit()).save(picture)
    for args in (["evaluate", str(target), "--data-dir", str(data_dir)], ["predict", "--checkpoint", str(target), str(picture)]):
        result = invoke(*args)
        assert result.exit_code == MODEL, (args, result.output)
        assert says in one_error_line(result.stderr) and result.stdout == ""
