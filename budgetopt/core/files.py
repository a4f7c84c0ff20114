"""The one way budgetopt reads a user's file and writes a result.

Reading: a size cap, UTF-8 only (a UTF-8 byte-order mark is accepted, as spreadsheets write
one), binary and UTF-16 files recognised and named, every failure an InputError on the flag
or file field that named the file. Parsers (TOML, JSON) run here so their errors, including
pathological nesting, surface the same way.

Writing: a temporary file beside the target, flushed and fsync'ed, then renamed over it, so a
reader (or a process killed at any instant) sees the old file or the new one, never a part.
The temporary file is removed on any error; only a SIGKILL between create and rename can
leave one, named ``.<name>.*.tmp`` next to the target, and the next write ignores it.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import os
import re
import tempfile
import tomllib
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ParameterError
from .interrupts import EXIT_LOCK

#: Largest input file read, in bytes. Scenario, law and hardware files are kilobytes; a CSV
#: of a million runs is ~50 MB; merged sweep JSONs are a few MB.
MAX_INPUT_BYTES = 64 * 2**20


def read_text(path: str | Path, field: str, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The text of ``path`` (UTF-8). ``field`` names the flag or key that gave the path;
    ``what`` says what the file should be (``"a TOML scenario"``), for the messages."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ParameterError(field, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ParameterError(field, f"{path} is a directory, not {what}") from None
    except PermissionError:
        raise ParameterError(field, f"permission denied reading {path}") from None
    except OSError as e:
        raise ParameterError(field, f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise ParameterError(field, f"{path} is larger than {max_bytes // 2**20} MiB; that is not {what}")
    if data.startswith(b"\x1f\x8b"):  # gzip (e.g. a released runs.csv.gz): read through, under the same cap
        try:
            unzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            data = unzip.decompress(data, max_bytes + 1)
        except zlib.error as e:
            raise ParameterError(field, f"{path} is a damaged gzip file ({e})") from None
        if not unzip.eof and not unzip.unconsumed_tail:
            raise ParameterError(field, f"{path} is a damaged gzip file (it ends early)")
        if len(data) > max_bytes or unzip.unconsumed_tail:
            raise ParameterError(field, f"{path} unpacks to more than {max_bytes // 2**20} MiB; that is not {what}")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParameterError(field, f"{path} is UTF-16 text; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        raise ParameterError(field, f"{path} is a binary file, not {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParameterError(field, f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         "save it as UTF-8") from None


def parse_toml(text: str, field: str, path: str | Path) -> dict[str, Any]:
    """A TOML document; syntax errors (duplicate keys included) are InputErrors on ``field``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib names the position only; quote the line so "Cannot overwrite a value" shows the key
        m = re.search(r"at line (\d+)", str(e))
        lines = text.splitlines()
        quote = ""
        if m and 1 <= int(m.group(1)) <= len(lines):
            quote = f": {lines[int(m.group(1)) - 1].strip()[:80]!r}"
        raise ParameterError(field, f"{path} is not valid TOML: {e}{quote}") from None
    except RecursionError:
        raise ParameterError(field, f"{path} nests too deeply to be a budgetopt file") from None


def parse_json(text: str, field: str, path: str | Path) -> Any:
    """A JSON document; syntax errors are InputErrors on ``field``. JSON's NaN/Infinity
    extensions are refused: no budgetopt file holds them."""

    def no_constant(name):
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(text, parse_constant=no_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise ParameterError(field, f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ParameterError(field, f"{path} nests too deeply to be a budgetopt file") from None


def load_toml(path: str | Path, field: str, what: str = "a TOML file") -> dict[str, Any]:
    return parse_toml(read_text(path, field, what), field, path)


def load_json(path: str | Path, field: str, what: str = "a JSON file") -> Any:
    return parse_json(read_text(path, field, what), field, path)


def csv_table(path: Path, field: str = "runs", what: str = "a CSV of runs"
              ) -> tuple[list[list[str]], list[str], dict[str, int]]:
    """The rows of a CSV, its stripped header and each column's index (duplicates refused);
    errors name ``field`` (the argument that gave the file)."""
    text = read_text(path, field, what)
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:  # e.g. a cell over the csv module's field size limit
        raise ParameterError(field, f"{path} is not a readable CSV: {e}") from None
    if not rows:
        raise ParameterError(field, f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ParameterError(field, f"duplicate column {dup[0]!r} in the header of {path.name}")
    return rows, header, {h: i for i, h in enumerate(header)}


def require_columns(path: Path, header: list[str], col: dict[str, int], named: list[tuple[str, str]]) -> None:
    """Each (column, flag) of ``named`` must be in the header; the error names the flag."""
    for name, flag in named:
        if name not in col:
            hint = next((f" (the header looks separated by {sep!r}; budgetopt reads comma-separated CSV)"
                         for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]), "")
            raise ParameterError(flag, f"column {name!r} not in {path.name}; columns: {', '.join(header)}{hint}")


@functools.cache
def data_toml(name: str) -> dict[str, Any]:
    """A data file shipped in ``budgetopt/data`` (``"laws.toml"``, ``"scenarios/serving.toml"``),
    parsed once per process: the one reader of the package's own data. Read-only: callers copy
    what they change."""
    return tomllib.loads(resources.files("budgetopt").joinpath("data", *name.split("/")).read_text())


def data_names(folder: str) -> list[str]:
    """The TOML files of a data folder (``"scenarios"``), without their suffix, sorted."""
    return sorted(p.name[:-5] for p in resources.files("budgetopt").joinpath("data", folder).iterdir()
                  if p.name.endswith(".toml"))


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same existing file (so an output would overwrite an input)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_path(path: str | Path, field: str = "output") -> Path:
    """Where an output really goes: a symbolic link is followed (its target is replaced, the
    link kept), and an existing directory, device, pipe or socket is refused (an atomic
    replace would put a file in its place)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise ParameterError(field, f"{path} is a directory")
    if path.exists() and not path.is_file():
        raise ParameterError(field, f"{path} is not a regular file (a device, pipe or socket); write to a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ParameterError(field, f"directory {parent} does not exist")
    return path


def write_atomic(path: str | Path, data: str | bytes, field: str = "output") -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring). A new file gets the
    usual 0666 & ~umask mode (``mkstemp``'s 0600 is wrong for a result meant to be shared);
    an existing one keeps its mode."""
    path = output_path(path, field)
    parent = path.parent
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    with EXIT_LOCK:
        try:
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as e:
            raise ParameterError(field, f"cannot write to {parent}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise ParameterError(field, f"cannot write {path}: {e.strerror or e}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    try:  # make the rename itself durable
        dfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic


def remove_stale_temps(path: str | Path) -> int:
    """Delete the temporary files a killed ``write_atomic(path, ...)`` left behind; returns how
    many. Only for a path this process owns (a resumed checkpoint): a concurrent writer's
    temporary file would be removed too."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    n = 0
    for p in parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def to_bytes(save, *args, **kwargs) -> bytes:
    """Run a writer that takes a file object (``np.savez``, ``fig.savefig``) into bytes."""
    buf = io.BytesIO()
    save(buf, *args, **kwargs)
    return buf.getvalue()


def check_outputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | list | None]) -> None:
    """Before any work: every output (parameter name -> path) goes to an existing directory,
    is none of the inputs (name -> path or list of paths) and no other output, so a run can
    never overwrite what it reads nor end after hours on a typo."""
    given = {k: output_path(v, k) for k, v in outputs.items() if v is not None}
    for name, path in given.items():
        for in_name, src in inputs.items():
            for one in (src if isinstance(src, list) else [src]):
                if one is not None and same_file(path, one):
                    raise ParameterError(name,
                                         f"{path} is {'one of ' if isinstance(src, list) else ''}the {{{in_name}}} "
                                         "being read; write it elsewhere", names=True)
    paths = list(given.items())
    for i, (a, pa) in enumerate(paths):
        for b, pb in paths[i + 1:]:
            if pa.absolute() == pb.absolute():
                raise ParameterError(a, f"{{{a}}} and {{{b}}} must be different files", names=True)
