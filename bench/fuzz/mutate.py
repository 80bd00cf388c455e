"""Seeded mutations of the files unigraph reads: raw bytes, JSON, safetensors headers, zip members.

Every mutator takes a ``random.Random`` and bytes, and returns new bytes;
``mutate_file`` picks one by what the bytes are (a safetensors file, JSON, a
zip), so one call is one input. The same generator state gives the same
input: a run is reproduced by its seed, and each failing input is saved too.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile

#: Values that break readers: huge and negative sizes, wrong types, empty containers, deep nesting.
INTERESTING = [
    0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**64, -(2**63), 10**30, 1.5, -0.0, 1e308,
    "", "x", "F32", "BF16", "F8_E4M3", "float32", "int64", "bool", "not-a-dtype", "batch", "2*batch+1", "-",
    None, True, False, [], {}, [0], [-1], [2**40, 2**40], [1, 2, 3], {"a": 1}, [[[[[]]]]],
]
SAFETENSORS_DTYPES = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
                      "F8_E4M3", "F8_E5M2", "F4", "C64", "STRING", "", "f32"]


# ---- raw bytes ---------------------------------------------------------------------------------------


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)] if data else data


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 3))):
        out[rng.randrange(len(out))] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x22, 0x7B, 0x5D, 0x2C, rng.randrange(256)))
    return bytes(out)


def set_integer(rng: random.Random, data: bytes) -> bytes:
    """An 8- or 4-byte little-endian integer (a length, an offset) overwritten with an extreme value."""
    width = rng.choice((4, 8))
    if len(data) < width:
        return data
    i = rng.randrange(len(data) - width + 1)
    value = rng.choice((0, 1, 2**(8 * width) - 1, 2**(8 * width - 1), len(data), len(data) + 1, rng.randrange(2**32)))
    return data[:i] + value.to_bytes(width, "little") + data[i + width :]


def splice(rng: random.Random, data: bytes) -> bytes:
    """A range deleted, duplicated, or random bytes inserted."""
    if not data:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.choice((1, 2, 8, 64, 1024)))
    kind = rng.randrange(3)
    if kind == 0:
        return data[:i] + data[j:]
    if kind == 1:
        return data[:j] + data[i:j] + data[j:]
    return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))) + data[i:]


BYTE_MUTATORS = (truncate, flip_bits, set_bytes, set_integer, splice)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    return rng.choice(BYTE_MUTATORS)(rng, data)


# ---- JSON --------------------------------------------------------------------------------------------


def _paths(value, path=()):
    """Every place in a JSON document: (path, value) pairs, the root included."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _replace(doc, path, new):
    if not path:
        return new
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return doc


def _new_value(rng: random.Random, old, strings: list[str]):
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(INTERESTING)
    if roll < 0.6 and strings:
        return rng.choice(strings)  # a name from elsewhere in the document: a reference to the wrong thing
    if isinstance(old, int) and not isinstance(old, bool):
        return old + rng.choice((-2, -1, 1, 2, 10**9, -(10**9)))
    if isinstance(old, str):
        return old[: rng.randrange(len(old) + 1)] + rng.choice(("", "x", "/", "0", "\x00", "é"))
    if isinstance(old, list):
        return old[::-1] if rng.random() < 0.5 else old + old[:1]
    return [old]


def mutate_json_value(rng: random.Random, doc):
    """One edit of a parsed JSON document: a value replaced, a key dropped or renamed, a list element dropped."""
    places = list(_paths(doc))
    strings = [v for _, v in places if isinstance(v, str)] + [p[-1] for p, _ in places if p and isinstance(p[-1], str)]
    path, old = rng.choice(places)
    if isinstance(old, dict) and old and rng.random() < 0.5:
        key = rng.choice(list(old))
        if rng.random() < 0.6:
            del old[key]
        else:
            old[rng.choice(strings) if strings else key + "_"] = old.pop(key)
        return doc
    if isinstance(old, list) and old and rng.random() < 0.4:
        del old[rng.randrange(len(old))]
        return doc
    return _replace(doc, path, _new_value(rng, old, strings))


def mutate_json_text(rng: random.Random, text: str, *, nested=()) -> str:
    """A JSON text edited once (structure-aware, or as bytes with some chance); ``nested``: keys whose
    values are JSON texts themselves (a bundle's metadata), edited inside with some chance."""
    if rng.random() < 0.15:
        return mutate_bytes(rng, text.encode()).decode("utf-8", "replace")
    doc = json.loads(text)
    inner = [k for k in nested if isinstance(doc, dict) and isinstance(doc.get(k), str)]
    if inner and rng.random() < 0.7:
        key = rng.choice(inner)
        try:
            doc[key] = mutate_json_text(rng, doc[key])
        except ValueError:  # not JSON after all: edited as a plain value
            doc = mutate_json_value(rng, doc)
    else:
        doc = mutate_json_value(rng, doc)
    return json.dumps(doc)


# ---- safetensors ---------------------------------------------------------------------------------------


def split_safetensors(data: bytes) -> tuple[dict, bytes] | None:
    """(header, tensor bytes) of a well-formed safetensors file; None for anything else."""
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        return None
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return None
    return (header, data[8 + n :]) if isinstance(header, dict) else None


def join_safetensors(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def mutate_safetensors(rng: random.Random, data: bytes, *, nested=()) -> bytes:
    """A safetensors file with its header edited: a tensor's dtype, shape or offsets, the metadata
    (``nested``: metadata values that are JSON texts), the length field; or its tensor bytes cut."""
    parts = split_safetensors(data)
    if parts is None:
        return mutate_bytes(rng, data)
    header, body = parts
    tensors = [k for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    roll = rng.random()
    if roll < 0.35 and tensors:
        entry = header[rng.choice(tensors)]
        field = rng.choice(("dtype", "shape", "data_offsets"))
        if field == "dtype":
            entry[field] = rng.choice(SAFETENSORS_DTYPES + INTERESTING[:10])
        elif field == "shape" and rng.random() < 0.6:
            shape = entry.get("shape")
            shape = list(shape) if isinstance(shape, list) and shape else [1]
            i = rng.randrange(len(shape))
            shape[i] = rng.choice((0, -1, 2**31, 2**40, 2**62, 10**20, 3, "4", 1.0))
            entry[field] = shape
        elif field == "data_offsets" and rng.random() < 0.6:
            offsets = entry.get("data_offsets")
            begin, end = offsets if isinstance(offsets, list) and len(offsets) == 2 else (0, 8)
            begin, end = (v if isinstance(v, int) else 0 for v in (begin, end))
            entry[field] = rng.choice(([begin, end + 1], [begin, 2**63], [2**62, 2**62 + end - begin], [end, begin],
                                       [begin - 1, end - 1], [-8, end], [begin, len(body) + 10**12], [begin]))
        else:
            entry[field] = rng.choice(INTERESTING)
    elif roll < 0.65 and isinstance(header.get("__metadata__"), dict) and header["__metadata__"]:
        metadata = header["__metadata__"]
        key = rng.choice(list(metadata))
        value = metadata[key]
        if key in nested and isinstance(value, str):
            try:
                metadata[key] = mutate_json_text(rng, value, nested=nested)
            except ValueError:
                metadata[key] = rng.choice(INTERESTING)
        elif isinstance(value, str) and rng.random() < 0.7:
            metadata[key] = rng.choice(("", "0", "1", "2", "3", "99", "-1", "x", "{}", "[]", "null", "1e400"))
        else:
            metadata[key] = rng.choice(INTERESTING)
    elif roll < 0.8:
        header = mutate_json_value(rng, header)
        if not isinstance(header, dict):
            return join_safetensors({}, body)[:8] + json.dumps(header).encode() + body
    elif roll < 0.9:
        raw = json.dumps(header).encode()
        length = rng.choice((len(raw) + 1, len(raw) - 1, 0, 2**32, 2**63, len(raw) + len(body) + 1, 100 * 2**20))
        return struct.pack("<Q", length) + raw + body
    else:
        body = body[: rng.randrange(len(body) + 1)] if rng.random() < 0.6 else body + bytes(rng.randrange(1, 64))
    return join_safetensors(header, body)


# ---- zip archives ----------------------------------------------------------------------------------------


def mutate_zip(rng: random.Random, data: bytes, member_mutator=None) -> bytes:
    """A zip archive with one member edited (JSON members structure-aware), dropped or renamed;
    or the archive's own bytes mutated."""
    if rng.random() < 0.2:
        return mutate_bytes(rng, data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info, archive.read(info)) for info in archive.infolist()]
    except Exception:  # noqa: BLE001  (an earlier mutation broke the archive in any of zipfile's ways)
        return mutate_bytes(rng, data)
    if not members:
        return data
    i = rng.randrange(len(members))
    info, content = members[i]
    roll = rng.random()
    if roll < 0.08:
        del members[i]
    elif roll < 0.14:
        other = rng.choice(members)[0].filename
        members[i] = (_renamed(info, other + rng.choice(("", "x", "/"))), content)
    else:
        members[i] = (info, (member_mutator or mutate_member)(rng, info.filename, content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for member, content in members:
            archive.writestr(member, content)
    return out.getvalue()


def _renamed(info: zipfile.ZipInfo, name: str) -> zipfile.ZipInfo:
    new = zipfile.ZipInfo(name, info.date_time)
    new.compress_type = info.compress_type
    return new


def mutate_member(rng: random.Random, name: str, content: bytes) -> bytes:
    """One zip member's bytes, mutated by what it holds."""
    if name.endswith(".json"):
        try:
            return mutate_json_text(rng, content.decode("utf-8")).encode()
        except ValueError:
            pass
    if split_safetensors(content) is not None:
        return mutate_safetensors(rng, content)
    return mutate_bytes(rng, content)


def mutate_file(rng: random.Random, name: str, data: bytes, *, nested=()) -> bytes:
    """One mutation of a file, chosen by what it holds: 1 to 3 stacked with some chance."""
    out = data
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if data[:2] == b"PK":
            out = mutate_zip(rng, out)
        elif split_safetensors(out) is not None and rng.random() < 0.85:
            out = mutate_safetensors(rng, out, nested=nested)
        elif name.endswith(".json") and rng.random() < 0.85:
            try:
                out = mutate_json_text(rng, out.decode("utf-8")).encode()
            except ValueError:
                out = mutate_bytes(rng, out)
        else:
            out = mutate_bytes(rng, out)
    return out
