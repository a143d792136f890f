"""The one type for errors a user can cause, and the one formatter for pydantic's validation errors.

A `ForgeError` is something the user can fix (a bad file, key, id, or a state such as "nothing to undo"): the CLI
prints its message as one line and exits 1 (`forge --debug` adds the traceback). Anything else (a KeyError, a
FileNotFoundError) is a bug in forge and keeps its traceback. Import-free apart from the standard library, so any
module can use it.
"""

from __future__ import annotations

import json
import re


class ForgeError(Exception):
    """Something the user can cause and fix; the message names the file/line/key and what to do."""


class BaseModelError(ForgeError):
    """The base model cannot be found or prepared; the message says what to install or configure. (Here rather than
    in forge/models/base_model.py because forge.bundled_gguf, which the data stage calls too, raises it.)"""


def _line_of(text: str, loc: list[str]) -> int | None:
    """The line of the JSON key at `loc` (nested keys, list indices skipped) in `text`, found by scanning for each
    quoted key after the previous one; None when a key is not there (e.g. a missing required field)."""
    pos, found = 0, False
    for part in loc:
        if part.isdigit():
            continue
        hit = re.compile(r'"' + re.escape(json.dumps(part)[1:-1]) + r'"\s*:').search(text, pos)
        if hit is None:
            break
        pos, found = hit.start(), True
    return text.count("\n", 0, pos) + 1 if found else None


def validation_key(e, drop: tuple = ("body",)) -> str:
    """The dotted key of the first error in a pydantic / FastAPI validation error ("" for the whole document)."""
    errors = e.errors()
    return ".".join(str(p) for p in errors[0].get("loc", ()) if p not in drop) if errors else ""


def format_validation_error(e, source: str | None = None, text: str | None = None, drop: tuple = ("body",),
                            hint: str | None = None) -> str:
    """One line for a pydantic ValidationError (or FastAPI's RequestValidationError): the source (a file, with the
    line of the key when `text`, the file's content, is given), the dotted key, and pydantic's message.

    `drop` leaves location parts out (FastAPI's "body"); `hint` follows an unknown-key message."""
    errors = e.errors()
    if not errors:
        return f"{source}: invalid" if source else "invalid"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in drop]
    key = ".".join(loc)
    where = source or ""
    if where and text is not None and loc:
        line = _line_of(text, loc)
        if line is not None:
            where = f"{where}:{line}"
    where = f"{where}: " if where else ""
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        out = f"{where}unknown key '{key}' (check the spelling" + (f"; {hint})" if hint else ")")
    elif key:
        value = first.get("input")
        shown = (f" (got {json.dumps(value)})" if isinstance(value, (str, int, float, bool)) and first.get("type")
                 != "missing" and len(json.dumps(value)) <= 60 else "")
        out = f"{where}key '{key}': {msg}{shown}"
    else:
        out = f"{where}{msg}"
    if len(errors) > 1:
        out += f" (and {len(errors) - 1} more)"
    return out


class DiskSpaceError(ForgeError):
    """Too little free disk for a step that writes model weights; raised before it writes anything."""


def need_free_space(folder, need_bytes: int, what: str) -> None:
    """Raise DiskSpaceError when the file system holding `folder` (or its nearest existing parent) has less than
    `need_bytes` free, so a step that writes a gigabyte of weights stops before it starts, with one line saying how
    much it needs, rather than failing half-way with the OS's "No space left on device"."""
    import shutil
    from pathlib import Path

    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise DiskSpaceError(f"not enough disk space in {folder}: {what} needs about {_gb(need_bytes)} free, "
                             f"{_gb(free)} is; free some and try again")


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"
