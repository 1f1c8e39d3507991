"""Tests for minivl.io: safetensors / npz round trips, validation, atomic writes, interop."""

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivl import io

# Every dtype the writer accepts, with the safetensors name it must be stored under.
DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
SHAPES = [(), (0,), (3, 0, 2), (5,), (2, 3), (2, 1, 4)]
FORMATS = ["safetensors", "npz"]


def random_array(dtype, shape, rng):
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if np.issubdtype(dtype, np.floating):
        x = np.asarray(rng.standard_normal(shape), dtype=dtype)
        if x.size:  # the special values must survive too, bit for bit
            x.flat[0] = np.nan
            x.flat[-1] = -np.inf
        return x
    info = np.iinfo(dtype)
    return np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True))


def assert_bit_equal(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def craft(path, header, data=b"", length=None):
    """Write a safetensors file by hand, independently of io.save."""
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(DTYPES))
def test_round_trip_every_dtype_and_shape(tmp_path, fmt, shape, name):
    x = random_array(DTYPES[name], shape, np.random.default_rng(0))
    path = tmp_path / f"w.{fmt}"
    io.save({"x": x}, path)
    y = io.load(path)["x"]
    assert_bit_equal(x, y)
    assert y.flags.writeable and y.dtype.isnative


def test_header_names_the_safetensors_dtype_and_is_aligned(tmp_path):
    arrays = {name: np.zeros((2, 3), dtype) for name, dtype in DTYPES.items()}
    path = tmp_path / "w.safetensors"
    io.save(arrays, path, metadata={"a": "b"})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    assert n % 8 == 0
    assert header.pop("__metadata__") == {"a": "b"}
    assert {k: v["dtype"] for k, v in header.items()} == {k: k for k in DTYPES}
    # The bytes after the header are exactly the arrays, little-endian, back to back.
    assert raw[8 + n :] == b"".join(
        a.astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays.values()
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_order_and_metadata_survive(tmp_path, fmt):
    names = ["z", "a", "m.weight", "b.0.bias"]
    arrays = {n: np.full((i + 1,), i, np.float32) for i, n in enumerate(names)}
    path = tmp_path / f"w.{fmt}"
    io.save(arrays, path, metadata={"model": "gpt", "step": "7"})
    assert list(io.load(path)) == names
    assert io.load_metadata(path) == {"model": "gpt", "step": "7"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_metadata_loads_as_empty(tmp_path, fmt):
    path = tmp_path / f"w.{fmt}"
    io.save({"x": np.ones(2)}, path)
    assert io.load_metadata(path) == {}


def test_big_endian_and_strided_inputs_are_stored_as_values(tmp_path):
    x = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]  # byte-swapped and not contiguous
    path = tmp_path / "w.safetensors"
    io.save({"x": x}, path)
    y = io.load(path)["x"]
    assert y.dtype == np.float32 and y.dtype.isnative
    np.testing.assert_array_equal(y, x)


names_json = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(
    lambda s: s != "__metadata__"
)
names_zip = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)
arrays = st.sampled_from(list(DTYPES.values())).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
)


@settings(deadline=None, max_examples=40)
@given(
    d=st.dictionaries(names_json, arrays, max_size=5), meta=st.dictionaries(st.text(), st.text())
)
def test_random_dicts_round_trip_safetensors(tmp_path_factory, d, meta):
    path = tmp_path_factory.mktemp("h") / "w.safetensors"
    io.save(d, path, metadata=meta)
    out = io.load(path)
    assert list(out) == list(d)
    for k in d:
        assert_bit_equal(d[k], out[k])
    assert io.load_metadata(path) == meta


@settings(deadline=None, max_examples=20)
@given(d=st.dictionaries(names_zip, arrays, max_size=5))
def test_random_dicts_round_trip_npz(tmp_path_factory, d):
    path = tmp_path_factory.mktemp("h") / "w.npz"
    io.save(d, path)
    out = io.load(path)
    assert list(out) == list(d)
    for k in d:
        assert_bit_equal(d[k], out[k])


def test_tensor_like_and_cupy_like_values(tmp_path):
    class HasData:  # the duck type of minivl.Tensor / Parameter
        def __init__(self, data):
            self.data = data

    class FakeCupy:  # what matters of a CuPy array: on the device, .get() copies to the host
        __cuda_array_interface__ = {}

        def __init__(self, host):
            self.host = host

        def get(self):
            return self.host

    x = np.arange(4.0)
    path = tmp_path / "w.safetensors"
    io.save({"t": HasData(x), "c": FakeCupy(2 * x), "tc": HasData(FakeCupy(3 * x))}, path)
    out = io.load(path)
    np.testing.assert_array_equal(out["t"], x)
    np.testing.assert_array_equal(out["c"], 2 * x)
    np.testing.assert_array_equal(out["tc"], 3 * x)


def test_minivl_tensor_saves_its_data(tmp_path):
    from minivl.tensor import Tensor

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    io.save({"w": Tensor(x, requires_grad=True)}, tmp_path / "w.safetensors")
    assert_bit_equal(io.load(tmp_path / "w.safetensors")["w"], x)


# --------------------------------------------------------------------------- bfloat16


def test_bf16_is_exact_for_bfloat16_values(tmp_path):
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**16, size=1000, dtype=np.uint32) << 16  # low half zero
    x = bits.view(np.float32)
    path = tmp_path / "w.safetensors"
    io.save({"x": x}, path, bf16=True)
    assert path.stat().st_size < 8 + 200 + 2 * x.size  # two bytes per value
    assert_bit_equal(io.load(path)["x"], x)


@settings(deadline=None)
@given(x=hnp.arrays(np.float32, 64, elements=st.floats(width=32, allow_nan=False)))
def test_bf16_rounds_to_the_nearest_bfloat16(x):
    r = io._bf16_to_float32(io._float32_to_bf16(x))
    # The two bfloat16 numbers bracketing x: truncation, and one step away from zero.
    down = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    up = ((x.view(np.uint32) & np.uint32(0xFFFF0000)) + np.uint32(0x10000)).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(r.astype(np.float64) - x)
        best = np.minimum(np.abs(down.astype(np.float64) - x), np.abs(up.astype(np.float64) - x))
    assert np.all((r == down) | (r == up) | np.isinf(r))
    assert np.all((err <= best) | np.isinf(r))


def test_bf16_ties_go_to_even_and_specials_survive():
    step = 2.0**-7  # bfloat16 spacing just above 1
    x = np.array([1 + step / 2, 1 + 3 * step / 2, np.inf, -np.inf, np.nan, -0.0], np.float32)
    nan_low_payload = np.array([0x7F800001], np.uint32).view(np.float32)
    r = io._bf16_to_float32(io._float32_to_bf16(np.concatenate([x, nan_low_payload])))
    np.testing.assert_array_equal(r[:4], [1.0, 1 + 2 * step, np.inf, -np.inf])
    assert np.isnan(r[4]) and np.isnan(r[6])
    assert r[5] == 0 and np.signbit(r[5])


def test_bf16_only_touches_float32(tmp_path):
    d = {"f32": np.ones(3, np.float32), "f64": np.ones(3) / 3, "i": np.arange(3)}
    path = tmp_path / "w.safetensors"
    io.save(d, path, bf16=True)
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + n])
    assert [header[k]["dtype"] for k in d] == ["BF16", "F64", "I64"]
    out = io.load(path)
    assert_bit_equal(out["f64"], d["f64"])
    assert_bit_equal(out["i"], d["i"])


# --------------------------------------------------------------------------- bad input to save


@pytest.mark.parametrize(
    "kwargs, err",
    [
        ({"state_dict": {"x": np.ones(2, np.complex64)}}, TypeError),
        ({"state_dict": {"x": np.array(["a"], dtype=object)}}, TypeError),
        ({"state_dict": {"x": [1.0, 2.0]}}, TypeError),
        ({"state_dict": {3: np.ones(2)}}, TypeError),
        ({"state_dict": {"__metadata__": np.ones(2)}}, ValueError),
        ({"state_dict": {"x": np.ones(2)}, "metadata": {"step": 3}}, TypeError),
        ({"state_dict": {"x": np.ones(2)}, "path": "w.pt"}, ValueError),
        ({"state_dict": {"x": np.ones(2)}, "path": "w.npz", "bf16": True}, ValueError),
        ({"state_dict": {"file": np.ones(2)}, "path": "w.npz"}, ValueError),
    ],
)
def test_save_rejects_bad_input_and_writes_nothing(tmp_path, kwargs, err):
    kwargs = dict(kwargs)
    kwargs["path"] = tmp_path / kwargs.get("path", "w.safetensors")
    with pytest.raises(err):
        io.save(**kwargs)
    assert list(tmp_path.iterdir()) == []


def test_object_whose_data_is_not_an_array_is_refused_not_looped_on(tmp_path):
    class SelfData:  # like a torch.Tensor, whose .data is again a tensor
        @property
        def data(self):
            return self

    with pytest.raises(TypeError, match="'w'"):
        io.save({"w": SelfData()}, tmp_path / "w.safetensors")


# --------------------------------------------------------------------------- damaged files


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    io.save(
        {"a": np.arange(10, dtype=np.float32), "b": np.arange(6, dtype=np.int64).reshape(2, 3)},
        path,
        metadata={"k": "v"},
    )
    return path


def test_every_truncation_is_refused(good_file, tmp_path):
    raw = good_file.read_bytes()
    bad = tmp_path / "cut.safetensors"
    for cut in range(len(raw)):
        bad.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="cut.safetensors"):
            io.load(bad)


def test_trailing_bytes_are_refused(good_file):
    good_file.write_bytes(good_file.read_bytes() + b"\0" * 8)
    with pytest.raises(ValueError, match="trailing"):
        io.load(good_file)


def test_every_flipped_header_byte_is_refused(good_file):
    raw = good_file.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    for i in range(8 + n):
        damaged = bytearray(raw)
        damaged[i] ^= 0xFF
        good_file.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="good.safetensors"):
            io.load(good_file)
        with pytest.raises(ValueError):
            io.load_metadata(good_file)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_hand_crafted_file_loads(tmp_path):
    # The helper itself makes valid files, so the refusals below are for the stated reason.
    header = {"a": entry("F32", [2], 0, 8), "b": entry("U8", [3], 8, 11)}
    path = craft(tmp_path / "ok.safetensors", header, struct.pack("<2f", 1.5, -2) + b"\x01\x02\x03")
    out = io.load(path)
    np.testing.assert_array_equal(out["a"], [1.5, -2])
    np.testing.assert_array_equal(out["b"], [1, 2, 3])


def test_order_follows_the_offsets_not_the_header(tmp_path):
    header = {"second": entry("U8", [1], 1, 2), "first": entry("U8", [1], 0, 1)}
    out = io.load(craft(tmp_path / "w.safetensors", header, b"\x07\x09"))
    assert list(out) == ["first", "second"] and out["first"][0] == 7


@pytest.mark.parametrize(
    "header, data, message",
    [
        ({"a": entry("F32", [2], 0, 8), "b": entry("F32", [1], 4, 8)}, bytes(12), "overlaps"),
        ({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, bytes(12), "gap"),
        ({"a": entry("F32", [1], 4, 8)}, bytes(8), "gap"),
        ({"a": entry("F32", [4], 0, 16)}, bytes(8), "truncated"),
        ({"a": entry("F32", [3], 0, 8)}, bytes(8), "12 bytes"),
        ({"a": entry("F32", [2], 8, 0)}, bytes(8), "span -8"),
        ({"a": entry("Q4", [2], 0, 8)}, bytes(8), "unknown dtype"),
        ({"a": entry("F32", [-2], 0, 8)}, bytes(8), "invalid shape"),
        ({"a": entry("F32", [2.0], 0, 8)}, bytes(8), "invalid shape"),
        ({"a": entry("F32", [True, 2], 0, 8)}, bytes(8), "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, bytes(8), "data_offsets"),
        ({"a": {"dtype": "F32", "shape": [2]}}, bytes(8), "exactly"),
        ({"a": [1, 2]}, b"", "exactly"),
        ({"__metadata__": {"k": 1}}, b"", "strings"),
        ([1, 2, 3], b"", "not an object"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, header, data, message):
    path = craft(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError, match=message):
        io.load(path)


@pytest.mark.parametrize(
    "text, length, message",
    [
        (b'{"a": ', None, "JSON"),
        (b'{"a": {}, "a": {}}', None, "duplicate"),
        (b"\xff\xfe{}", None, "UTF-8"),
        (b"{}", 10**6, "runs past"),
        (b"{}", 2**64 - 1, "runs past"),
    ],
)
def test_broken_header_text_is_refused(tmp_path, text, length, message):
    path = craft(tmp_path / "bad.safetensors", text, length=length)
    with pytest.raises(ValueError, match=message):
        io.load(path)


def test_file_shorter_than_the_length_field_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x01\x00")
    with pytest.raises(ValueError, match="too short"):
        io.load(path)


def test_truncated_npz_is_a_value_error(tmp_path):
    path = tmp_path / "w.npz"
    io.save({"a": np.arange(50.0), "b": np.ones(3, np.int8)}, path, metadata={"k": "v"})
    raw = path.read_bytes()
    for cut in range(0, len(raw), 13):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="w.npz"):
            io.load(path)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, a=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="w.npz"):
        io.load(path)


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch, fmt, failing):
    path = tmp_path / f"w.{fmt}"
    old = {"w": np.arange(100, dtype=np.float32)}
    io.save(old, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if failing == "write":  # die half way through the bytes
        real = io._write_safetensors if fmt == "safetensors" else np.savez

        def half_then_boom(f, *args, **kwargs):
            real(f, *args, **kwargs)
            f.seek(f.tell() // 2)
            f.truncate()
            boom()

        target = (io, "_write_safetensors") if fmt == "safetensors" else (np, "savez")
        monkeypatch.setattr(*target, half_then_boom)
    else:
        monkeypatch.setattr(os, failing, boom)

    with pytest.raises(OSError, match="disk full"):
        io.save({"w": np.zeros(1000, np.float32)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert_bit_equal(io.load(path)["w"], old["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_save_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "w.safetensors"
    io.save({"w": np.ones(3)}, path)
    os.chmod(path, 0o640)
    io.save({"w": np.zeros(3)}, path)
    assert (path.stat().st_mode & 0o777) == 0o640
    np.testing.assert_array_equal(io.load(path)["w"], np.zeros(3))


# --------------------------------------------------------------------------- the safetensors library


@pytest.mark.oracle
def test_library_reads_our_files(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(2)
    d = {
        f"{name}.{i}": random_array(dt, s, rng)
        for name, dt in DTYPES.items()
        for i, s in enumerate(SHAPES)
    }
    path = tmp_path / "ours.safetensors"
    io.save(d, path, metadata={"format": "np"})
    theirs = st_numpy.load_file(str(path))
    assert set(theirs) == set(d)
    for k in d:
        assert_bit_equal(d[k], theirs[k])


@pytest.mark.oracle
def test_we_read_library_files(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(3)
    d = {
        f"{name}.{i}": random_array(dt, s, rng)
        for name, dt in DTYPES.items()
        for i, s in enumerate(SHAPES)
    }
    path = tmp_path / "theirs.safetensors"
    st_numpy.save_file(d, str(path), metadata={"format": "np", "by": "library"})
    ours = io.load(path)
    assert set(ours) == set(d)
    for k in d:
        assert_bit_equal(d[k], ours[k])
    assert io.load_metadata(path) == {"format": "np", "by": "library"}


@pytest.mark.oracle
def test_bf16_matches_torch_both_ways(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((7, 5)) * 10.0 ** rng.integers(-30, 30, (7, 5))).astype(np.float32)

    ours = tmp_path / "ours.safetensors"
    io.save({"x": x}, ours, bf16=True)
    t = st_torch.load_file(str(ours))["x"]
    assert t.dtype == torch.bfloat16
    # Same rounding as torch's float32 -> bfloat16 cast.
    expected = torch.from_numpy(x).to(torch.bfloat16)
    assert torch.equal(t.view(torch.int16), expected.view(torch.int16))

    theirs = tmp_path / "theirs.safetensors"
    st_torch.save_file({"x": expected}, str(theirs))
    assert_bit_equal(io.load(theirs)["x"], expected.float().numpy())
