"""Fuzzing the checkpoint loaders: a real checkpoint's safetensors header and diga metadata are
damaged at random (flipped or cut bytes, values of the wrong type, missing keys, extreme numbers,
NaN); every loader either refuses the file with a DigaError or loads finite weights whose metadata
passes validation -- never another exception, never a crash."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diga.checkpoint import load_model, load_weights, validate_metadata
from diga.errors import DigaError

FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, -1, 1, 255, 256, 2**31])
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[bytes, dict, Path]:
    """The bytes of a real checkpoint, its parsed header, and a scratch path for the damaged copies."""
    folder = tmp_path_factory.mktemp("fuzz")
    data = make_checkpoint(folder / "real.safetensors", seed=5).read_bytes()
    n = int.from_bytes(data[:8], "little")
    return data, json.loads(data[8:8 + n]), folder / "damaged.safetensors"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Model construction on a shared 2-core machine: ~0.15 s per load with one thread, ~1 s without."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assemble(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + body


def body_of(data: bytes) -> bytes:
    return data[8 + int.from_bytes(data[:8], "little"):]


def assert_refused_or_sound(path: Path) -> None:
    """Each loader: a DigaError, or a load whose weights are finite and whose metadata validates."""
    from diga.export import Predictor

    for load in (load_weights, load_model, Predictor.load):
        try:
            result = load(path)
        except DigaError:
            continue
        if load is load_weights:
            state, meta = result
        elif load is load_model:
            state, meta = result[0].state_dict(), result[1]
        else:
            state, meta = result.engine.module.state_dict(), result.meta
        validate_metadata(meta, path)
        assert all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


@FUZZ
@given(st.data())
def test_damaged_header_bytes(original, data):
    raw, _, path = original
    n = 8 + int.from_bytes(raw[:8], "little")
    damaged = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        damaged[data.draw(st.integers(0, n - 1), label="at")] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.none() | st.integers(0, len(raw)), label="truncate at")
    path.write_bytes(bytes(damaged[:cut] if cut is not None else damaged))
    assert_refused_or_sound(path)


META_KEYS = ["format", "format_version", "architecture", "label_space", "num_classes", "classes", "palette",
             "mean", "std", "input_size", "train_size", "crop", "model_kwargs", "stage"]


@FUZZ
@given(st.data())
def test_damaged_metadata_values(original, data):
    raw, header, path = original
    meta = json.loads(header["__metadata__"]["diga"])
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        key = data.draw(st.sampled_from(META_KEYS), label="key")
        action = data.draw(st.sampled_from(["delete", "replace", "element", "nan"]), label="action")
        if action == "delete":
            meta.pop(key, None)
        elif action == "replace":
            meta[key] = data.draw(json_values, label="value")
        elif action == "element" and isinstance(meta.get(key), list) and meta[key]:
            i = data.draw(st.integers(0, len(meta[key]) - 1), label="index")
            meta[key][i] = data.draw(json_values, label="element")
        elif action == "nan":
            meta[key] = [float("nan")] * 3
    text = json.dumps(meta) if data.draw(st.booleans(), label="json") else data.draw(st.text(max_size=30))
    path.write_bytes(assemble({**header, "__metadata__": {"diga": text}}, body_of(raw)))
    assert_refused_or_sound(path)


@FUZZ
@given(st.data())
def test_damaged_tensor_entries(original, data):
    raw, header, path = original
    header = json.loads(json.dumps(header))
    names = sorted(k for k in header if k != "__metadata__")
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        name = data.draw(st.sampled_from(names), label="tensor")
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "value"]), label="field")
        if field == "drop":
            header.pop(name, None)
        elif field == "value":
            header[name] = data.draw(json_values, label="entry")
        elif isinstance(header.get(name), dict):
            header[name][field] = data.draw(
                st.sampled_from(["F32", "F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "X"])
                if field == "dtype" else st.lists(st.integers(-2, 2**40) | json_values, max_size=4),
                label="new value")
    path.write_bytes(assemble(header, body_of(raw)))
    assert_refused_or_sound(path)


@FUZZ
@given(st.data())
def test_damaged_weight_values(original, data):
    raw, header, path = original
    floats = sorted(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    body = bytearray(body_of(raw))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        entry = header[data.draw(st.sampled_from(floats), label="tensor")]
        start, end = entry["data_offsets"]
        at = start + 4 * data.draw(st.integers(0, (end - start) // 4 - 1), label="element")
        value = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 3e38]))
        body[at:at + 4] = struct.pack("<f", value)
    path.write_bytes(raw[:len(raw) - len(body)] + bytes(body))
    assert_refused_or_sound(path)
