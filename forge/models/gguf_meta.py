"""GGUF metadata: reading a GGUF's KV section directly (read_kv: a base's header, a vocabulary), and writing metadata
into a GGUF copy: forge's provenance keys, a name, a chat template (forge/models/export.py for exports,
forge/models/bases.py for a base whose GGUF carries no template). Its own module so they all use it without an
import circle (export → base_model → bases)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path


def write_provenance(src: Path, dst: Path, keys: dict[str, str], name: str, chat_template: str | None) -> None:
    """Copy src to dst with forge.* keys, general.name (and optionally a chat template) set.

    Fast path: the KV section is re-spliced at the byte level and the tensor infos and data are copied in bulk
    (~0.3 s for a 100 MB file; the gguf package's reader alone takes ~3 s to parse a 49k-token vocabulary).
    Anything the fast path does not recognise goes through the gguf package's own metadata copier
    (gguf.scripts.gguf_new_metadata). The check stage then loads the result with llama.cpp and reads the keys
    back, so a bad splice can never be registered."""
    import gguf

    new = {"general.name": name, **keys}
    if chat_template is not None:
        new[gguf.Keys.Tokenizer.CHAT_TEMPLATE] = chat_template
    try:
        _splice_kv(src, dst, new)
        return
    except (ValueError, struct.error, OSError):
        pass
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {k: MetadataDetails(gguf.GGUFValueType.STRING, v) for k, v in new.items()},
                           [])


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType → bytes
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                   12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8",
          12: "<f8"}
_STRING, _ARRAY = 8, 9


def read_kv(path: Path, keys=None) -> dict:
    """A GGUF's KV section, read directly (the gguf package's reader parses every tensor and token into Python
    objects first: ~12 s for a 262k-token vocabulary, this ~1 s). keys None: every key, arrays as "<array of N>"
    (not read). keys given: those keys only, arrays included (strings as str lists, numbers as numpy arrays),
    stopping once all are found. Raises ValueError for a file that is not a GGUF v2/v3 or is cut short."""
    want = set(keys) if keys is not None else None
    out: dict = {}
    with open(path, "rb") as f:
        def read(n):
            b = f.read(n)
            if len(b) != n:
                raise ValueError(f"{path}: truncated GGUF header")
            return b

        def string():
            (n,) = struct.unpack("<Q", read(8))
            return read(n).decode("utf-8", "replace")

        if read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _, n_kv = struct.unpack("<IQQ", read(20))
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        for _ in range(n_kv):
            if want is not None and not want - out.keys():
                break
            key = string()
            (vtype,) = struct.unpack("<I", read(4))
            keep = want is None or key in want
            if vtype == _STRING:
                value = string()
            elif vtype == _ARRAY:
                itype, count = struct.unpack("<IQ", read(12))
                decode = keep and want is not None
                if itype == _STRING:
                    if decode:
                        value = [string() for _ in range(count)]
                    else:
                        for _ in range(count):
                            (n,) = struct.unpack("<Q", read(8))
                            f.seek(n, 1)
                elif itype in _NUMPY:
                    if decode:
                        import numpy as np

                        dtype = np.dtype(_NUMPY[itype])
                        value = np.frombuffer(read(dtype.itemsize * count), dtype=dtype)
                    else:
                        f.seek(_SCALAR_SIZES[itype] * count, 1)
                else:
                    raise ValueError(f"{path}: nested arrays in the GGUF header are not supported")
                if not decode:
                    value = f"<array of {count}>"
            elif vtype in _SCALAR_FORMATS:
                (value,) = struct.unpack(_SCALAR_FORMATS[vtype], read(_SCALAR_SIZES[vtype]))
            else:
                raise ValueError(f"{path}: unknown GGUF value type {vtype} for {key}")
            if keep:
                out[key] = value
    return out


def _splice_kv(src: Path, dst: Path, new: dict[str, str]) -> None:
    """Rewrite the KV section of a little-endian GGUF (v2/v3) with `new` string values, replacing keys that exist;
    tensor infos (their offsets are relative to the data section) and tensor data are copied unchanged."""
    with open(src, "rb") as f:
        head = f.read(1 << 20)
        if head[:4] != b"GGUF" or struct.unpack_from("<I", head, 4)[0] not in (2, 3):
            raise ValueError("not a little-endian GGUF v2/v3")
        n_tensors, n_kv = struct.unpack_from("<QQ", head, 8)
        buf = head
        pos = 24

        def need(n: int) -> None:
            nonlocal buf
            while pos + n > len(buf):
                more = f.read(max(1 << 20, n))
                if not more:
                    raise ValueError("truncated GGUF header")
                buf += more

        def skip_value(vtype: int) -> None:
            nonlocal pos
            if vtype in _SCALAR_SIZES:
                need(_SCALAR_SIZES[vtype])
                pos += _SCALAR_SIZES[vtype]
            elif vtype == _STRING:
                need(8)
                (n,) = struct.unpack_from("<Q", buf, pos)
                need(8 + n)
                pos += 8 + n
            elif vtype == _ARRAY:
                need(12)
                etype, count = struct.unpack_from("<IQ", buf, pos)
                pos += 12
                if etype in _SCALAR_SIZES:
                    need(_SCALAR_SIZES[etype] * count)
                    pos += _SCALAR_SIZES[etype] * count
                else:
                    for _ in range(count):
                        skip_value(etype)
            else:
                raise ValueError(f"unknown GGUF value type {vtype}")

        kept, alignment = [], 32
        for _ in range(n_kv):
            start = pos
            need(8)
            (klen,) = struct.unpack_from("<Q", buf, pos)
            need(8 + klen + 4)
            key = buf[pos + 8:pos + 8 + klen].decode("utf-8")
            (vtype,) = struct.unpack_from("<I", buf, pos + 8 + klen)
            pos += 8 + klen + 4
            value_at = pos
            skip_value(vtype)
            if key == "general.alignment" and vtype == 4:
                (alignment,) = struct.unpack_from("<I", buf, value_at)
            if key not in new:
                kept.append(buf[start:pos])
        ti_start = pos
        for _ in range(n_tensors):  # name, n_dims, dims, type, offset
            need(8)
            (nlen,) = struct.unpack_from("<Q", buf, pos)
            need(8 + nlen + 4)
            (n_dims,) = struct.unpack_from("<I", buf, pos + 8 + nlen)
            pos += 8 + nlen + 4
            need(8 * n_dims + 12)
            pos += 8 * n_dims + 12
        tensor_infos = buf[ti_start:pos]
        data_offset = pos + (-pos) % alignment

        def enc(s: str) -> bytes:
            b = s.encode("utf-8")
            return struct.pack("<Q", len(b)) + b

        added = [enc(k) + struct.pack("<I", _STRING) + enc(v) for k, v in new.items()]
        body = buf[:16] + struct.pack("<Q", len(kept) + len(added)) + b"".join(kept) + b"".join(added) + tensor_infos
        body += b"\0" * ((-len(body)) % alignment)
        with open(dst, "wb") as out:
            out.write(body)
            f.seek(data_offset)
            shutil.copyfileobj(f, out, 1 << 24)
