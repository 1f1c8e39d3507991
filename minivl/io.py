"""Checkpoints on disk: the safetensors format, written here in NumPy, and ``.npz``.

A safetensors file (https://github.com/huggingface/safetensors) is three parts:

    [ 8 bytes: N, little-endian u64 ][ N bytes: UTF-8 JSON header ][ raw data ]

The header maps each tensor name to ``{"dtype": "F32", "shape": [2, 3],
"data_offsets": [begin, end]}``, offsets counted in bytes from the start of the
raw data, plus an optional ``"__metadata__"`` map of strings to strings. The
tensors lie back to back in the data, little-endian, C order, with no gaps.
The format is this simple on purpose: nothing in it can run code, unlike a
pickle, and every byte of the file is accounted for by the header, so a damaged
file is detected before a single weight is handed out.

``save`` and ``load`` pick the format from the suffix (``.safetensors`` or
``.npz``). Both write atomically -- to a temporary file in the same folder,
flushed to disk, then renamed over the target -- so a crash mid-save leaves the
old checkpoint whole.

bfloat16 ("BF16") is the upper half of a float32; NumPy has no such dtype, so
BF16 tensors load as float32 (exactly: every bfloat16 is a float32), and
float32 tensors are stored as BF16 only when ``save(..., bf16=True)`` asks.

Why one file of ~360 lines: the writer and the reader of one format are kept
side by side, so every check the reader makes can be matched against what the
writer promises; most of the length is those checks (offsets, dtypes, header
size, duplicate keys), each with an error that names the file and the tensor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

# safetensors dtype name -> the little-endian NumPy dtype its bytes hold.
# BF16 is read as raw uint16 and widened to float32 (see _bf16_to_float32).
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAME_OF_DTYPE = {dt.newbyteorder("="): name for name, dt in DTYPES.items() if name != "BF16"}

METADATA_KEY = "__metadata__"
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit


# --------------------------------------------------------------------------- public API


def save(state_dict, path, metadata=None, *, bf16=False):
    """Write ``{name: array}`` to ``path`` (``.safetensors`` or ``.npz``), atomically.

    Values may be NumPy arrays, CuPy arrays (copied to the host), or anything
    with a ``.data`` array such as a ``minivl.Tensor`` or ``Parameter``.
    ``metadata`` is a ``{str: str}`` map stored in the header. ``bf16=True``
    stores every float32 tensor as bfloat16 (round to nearest even), halving
    the file; it is safetensors-only, as ``.npz`` has no bfloat16.
    """
    path = Path(path)
    fmt = _format_of(path)
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"save: tensor names must be non-empty strings, got {name!r}")
        if name == METADATA_KEY:
            raise ValueError(f"save: the name {METADATA_KEY!r} is reserved for metadata")
        arrays[name] = _to_numpy(value, name)
    metadata = _check_metadata(metadata)

    if fmt == "npz":
        if bf16:
            raise ValueError("save: bf16=True needs a .safetensors path; .npz has no bfloat16")
        clash = {"file", "allow_pickle"} & set(arrays)  # np.savez's own argument names
        if clash:
            raise ValueError(f"save: {sorted(clash)} cannot be .npz names; use .safetensors")
        if metadata:
            # A unicode array needs no pickle, so np.load(allow_pickle=False) reads it.
            arrays[METADATA_KEY] = np.array(json.dumps(metadata))
        _atomic_write(path, lambda f: np.savez(f, **arrays))
    else:
        _atomic_write(path, lambda f: _write_safetensors(f, arrays, metadata, bf16))


def load(path):
    """Read a checkpoint into ``{name: np.ndarray}``, in the order the file stores them.

    Every array is a fresh, writable, native-byte-order copy. A damaged or
    malformed file raises ``ValueError`` naming the file and what is wrong;
    nothing is returned from a file that does not check out completely.
    """
    path = Path(path)
    if _format_of(path) == "npz":
        arrays, _ = _read_npz(path)
        return arrays
    with open(path, "rb") as f:
        entries, _, data_start = _read_header(f, path)
        f.seek(data_start)
        buffer = f.read()
    out = {}
    for name, (dtype_name, shape, begin, _) in entries.items():
        dtype = DTYPES[dtype_name]
        raw = np.frombuffer(buffer, dtype=dtype, count=math.prod(shape), offset=begin)
        raw = raw.reshape(shape)
        if dtype_name == "BF16":
            out[name] = _bf16_to_float32(raw)
        else:
            out[name] = raw.astype(dtype.newbyteorder("="))  # a writable, native-order copy
    return out


def load_metadata(path):
    """The ``{str: str}`` metadata stored with a checkpoint (empty if none).

    For safetensors only the header is read, but it is fully validated first.
    """
    path = Path(path)
    if _format_of(path) == "npz":
        _, metadata = _read_npz(path)
        return metadata
    with open(path, "rb") as f:
        _, metadata, _ = _read_header(f, path)
    return metadata


# --------------------------------------------------------------------------- safetensors


def _write_safetensors(f, arrays, metadata, bf16):
    header, blobs, offset = {}, [], 0
    if metadata:
        header[METADATA_KEY] = metadata
    for name, arr in arrays.items():
        if bf16 and arr.dtype == np.float32:
            dtype_name, blob = "BF16", _float32_to_bf16(arr).astype("<u2").tobytes()
        else:
            dtype_name = _NAME_OF_DTYPE[arr.dtype.newbyteorder("=")]
            blob = arr.astype(DTYPES[dtype_name], copy=False).tobytes()  # little-endian, C order
        header[name] = {
            "dtype": dtype_name,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad with spaces so the data starts 8-byte aligned (JSON ignores trailing spaces).
    text += b" " * (-len(text) % 8)
    f.write(len(text).to_bytes(8, "little"))
    f.write(text)
    for blob in blobs:
        f.write(blob)


def _read_header(f, path):
    """Parse and check the header; return ``(entries, metadata, data_start)``.

    ``entries`` maps name -> (dtype name, shape, begin, end), ordered by offset,
    and is guaranteed to tile the data buffer exactly.
    """
    file_size = os.fstat(f.fileno()).st_size

    def bad(problem):
        return ValueError(f"{path}: not a valid safetensors file: {problem}")

    prefix = f.read(8)
    if len(prefix) < 8:
        raise bad(f"file is {file_size} bytes, too short for the 8-byte header length")
    n = int.from_bytes(prefix, "little")
    if n > file_size - 8:
        raise bad(f"header length {n} runs past the end of the {file_size}-byte file")
    if n > _MAX_HEADER_BYTES:
        raise bad(f"header length {n} exceeds the {_MAX_HEADER_BYTES}-byte limit")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, _DuplicateKey) as e:
        raise bad(f"header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {type(header).__name__}, not an object")

    metadata = header.pop(METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise bad(f"{METADATA_KEY!r} must map strings to strings, got {metadata!r}")

    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} needs exactly dtype, shape, data_offsets; got {info!r}")
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype_name not in DTYPES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype_name!r}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise bad(f"tensor {name!r} has invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
            raise bad(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        nbytes = math.prod(shape) * DTYPES[dtype_name].itemsize
        if end - begin != nbytes:
            raise bad(
                f"tensor {name!r}: shape {shape} x {dtype_name} is {nbytes} bytes,"
                f" but data_offsets {offsets} span {end - begin}"
            )
        entries[name] = (dtype_name, tuple(shape), begin, end)

    # The tensors must tile the data buffer: no overlap, no gap, nothing left over.
    buffer_size = file_size - 8 - n
    entries = dict(sorted(entries.items(), key=lambda item: item[1][2:]))
    expected = 0
    for name, (_, _, begin, end) in entries.items():
        if begin != expected:
            problem = "overlaps the previous tensor" if begin < expected else "leaves a gap"
            raise bad(f"tensor {name!r} starts at byte {begin}, expected {expected}: {problem}")
        expected = end
    if expected != buffer_size:
        problem = "file is truncated" if expected > buffer_size else "trailing bytes"
        raise bad(f"tensors cover {expected} data bytes, the file holds {buffer_size}: {problem}")
    return entries, metadata, 8 + n


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs):
    # json.loads would silently keep the last of two equal names.
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey(f"duplicate names in {keys}")
    return dict(pairs)


def _is_count(x):
    return type(x) is int and x >= 0  # not bool, not float


# --------------------------------------------------------------------------- bfloat16


def _float32_to_bf16(x):
    """Round float32 to the nearest bfloat16 (ties to even); return the uint16 bits."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit, then truncating, rounds to nearest even.
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    rounded = (bits + rounding) >> np.uint32(16)
    # NaNs are truncated, not rounded (rounding could carry into the sign), keeping
    # their payload; one whose payload sat only in the low half gets the quiet bit,
    # or it would read back as infinity.
    upper = bits >> np.uint32(16)
    nan = np.where(upper & np.uint32(0x7F), upper, upper | np.uint32(0x40))
    return np.where(np.isnan(x), nan, rounded).astype(np.uint16)


def _bf16_to_float32(bits):
    """Widen bfloat16 bits (uint16) to float32: they are its upper 16 bits."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


# --------------------------------------------------------------------------- npz


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as e:  # zipfile, zlib, EOF, format and pickle errors all mean "damaged"
        raise ValueError(f"{path}: not a valid .npz checkpoint: {e!r}") from None
    metadata = {}
    if METADATA_KEY in arrays:
        raw = arrays.pop(METADATA_KEY)
        try:
            metadata = json.loads(str(raw))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: {METADATA_KEY!r} is not valid JSON ({e})") from None
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError(f"{path}: {METADATA_KEY!r} must map strings to strings")
    return arrays, metadata


# --------------------------------------------------------------------------- helpers


def _format_of(path):
    if path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix == ".npz":
        return "npz"
    raise ValueError(f"path {str(path)!r} must end in .safetensors or .npz, got {path.suffix!r}")


def _to_numpy(value, name):
    """A host NumPy array of a supported dtype from an array, CuPy array or Tensor."""
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
    elif hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        arr = value.get()  # CuPy -> host, without importing CuPy
    elif _is_array(getattr(value, "data", None)):
        return _to_numpy(value.data, name)  # Tensor / Parameter
    else:
        raise TypeError(f"save: {name!r} must be an array or Tensor, got {type(value).__name__}")
    if arr.dtype.newbyteorder("=") not in _NAME_OF_DTYPE:
        raise TypeError(
            f"save: {name!r} has dtype {arr.dtype}, which safetensors cannot hold;"
            f" supported: {', '.join(str(d) for d in _NAME_OF_DTYPE)}"
        )
    return arr


def _is_array(x):
    return isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__")


def _check_metadata(metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError(f"save: metadata must be a dict of str -> str, got {metadata!r}")
    return dict(metadata)


def _atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)  # atomic: readers see the old file or the new, never half
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(path):
    with contextlib.suppress(FileNotFoundError):
        return os.stat(path).st_mode & 0o777  # keep an existing file's permissions
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
