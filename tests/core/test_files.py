"""Where an output goes (core.files.output_path, write_atomic, check_outputs): a symbolic link
is followed and kept, a device or pipe is refused before any work, a directory is refused."""

from __future__ import annotations

import os

import pytest

from budgetopt.core import files
from budgetopt.core.errors import InputError


def test_a_symlinked_output_replaces_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "results" / "law.json"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "law.json"
    link.symlink_to(target)
    files.check_outputs({"output": link}, {})
    files.write_atomic(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["law.json"]  # no temporary left


def test_a_dangling_link_writes_where_it_points_when_that_directory_exists(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "new.json")
    files.write_atomic(link, "x")
    assert (tmp_path / "new.json").read_text() == "x" and link.is_symlink()


@pytest.mark.parametrize("make", ["fifo", "dir"])
def test_a_pipe_or_directory_is_refused_before_any_work(tmp_path, make):
    path = tmp_path / "out.json"
    if make == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(InputError) as e:
        files.check_outputs({"output": path}, {})
    assert e.value.field == "output"
    with pytest.raises(InputError):
        files.write_atomic(path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_character_device_is_refused():
    with pytest.raises(InputError, match="not a regular file"):
        files.output_path("/dev/null", "output")


def test_a_gzip_file_reads_as_its_text_under_the_same_size_cap(tmp_path):
    """A released runs.csv.gz is read through: the same text as the file unpacked; one that
    unpacks past the cap is refused by name, as a large plain file is."""
    import gzip

    from budgetopt.core.errors import ParameterError
    from budgetopt.core.files import read_text

    text = "params,tokens,loss\n" + "".join(f"{n},{2 * n},{3 + 1 / n}\n" for n in range(1, 500))
    (tmp_path / "runs.csv.gz").write_bytes(gzip.compress(text.encode()))
    assert read_text(tmp_path / "runs.csv.gz", "runs") == text
    (tmp_path / "big.gz").write_bytes(gzip.compress(b"a" * 5000))
    with pytest.raises(ParameterError, match="unpacks to more than"):
        read_text(tmp_path / "big.gz", "runs", max_bytes=4096)
