"""syft_job: the job runner of a SyftBox datasite, in one file, standard library only.

A data scientist drops a job (a ``run.sh``, a ``config.yaml`` and code) into the data
owner's SyftBox folder. The owner reviews it and approves it by creating an empty file
named ``approved`` in the job folder. The runner executes approved jobs, records their
output, and shares the results with the submitter when the owner says so::

    <syftbox>/<owner>/app_data/job/<submitter>/<job name>/
        config.yaml  run.sh  ...code...     written by the submitter     (inbox)
        approved                            written by the owner         (approved)
        .syft_job_claim                     the runner running it        (running)
        stdout.txt  stderr.txt  returncode.txt  outputs/  done
                                            written by the runner        (done)

Quick start (a SyftBox folder ``~/SyftBox``; each side normally runs on its own
machine, and SyftBox syncs the folder between them)::

    import syft_job

    # The data owner: a runner for owner@example.com's datasite.
    runner = syft_job.create_runner("~/SyftBox", "owner@example.com")
    runner.add_submitter("ds@example.com")      # ds@example.com may submit jobs

    # The data scientist: submit a job.
    ds = syft_job.SyftJobConfig.from_syftbox_folder("~/SyftBox", "ds@example.com")
    syft_job.JobClient(ds).submit_bash_job(
        "owner@example.com", "echo hello > outputs/hello.txt", job_name="hello")

    # The owner: review, approve, run, share.
    runner.check_for_new_jobs()                 # prints the new job and its script
    runner.approve_job("hello")                 # the review: approve it (and its files)
    runner.process_approved_jobs()              # runs it: stdout.txt, outputs/, done
    runner.share_job_results("hello", share_outputs=True, share_logs=True)
    runner.run()                                # or poll forever; Ctrl+C stops

From the shell: ``python -m syft_job --help``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

__version__ = "0.2.0"

__all__ = [
    "SyftJobError",
    "ConfigError",
    "YAMLError",
    "JobError",
    "JobNotFoundError",
    "load_yaml",
    "dump_yaml",
    "SyftJobConfig",
    "SyftJobRunner",
    "create_runner",
    "JobClient",
    "main",
]

logger = logging.getLogger("syft_job")


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------


class SyftJobError(Exception):
    """Base class of every error this module raises on purpose."""


class ConfigError(SyftJobError):
    """A setting is wrong: a missing folder, a bad email, a bad environment variable."""


class YAMLError(SyftJobError):
    """A YAML text is outside the subset this module reads; names the file and line."""


class JobError(SyftJobError):
    """A job cannot be created, found or shared as asked."""


class JobNotFoundError(JobError):
    """No job matches the name that was asked for."""


# ---------------------------------------------------------------------------
# Files: every write goes through here (no symlinks followed, atomic renames)
# ---------------------------------------------------------------------------

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_PATH = getattr(os, "O_PATH", 0)  # Linux: a handle on a folder, to ask where it really is


def _check_parent(path: Path) -> None:
    """Refuse to write where a folder on the way to ``path`` is a symlink: a submitter
    could turn ``outputs/`` or a job folder into a link to anywhere. (Paths here are
    built on the resolved SyftBox folder, so any difference is a symlink.)"""
    parent = os.path.dirname(os.path.abspath(path))
    if _real_location(parent) != parent:
        raise JobError(f"{path}: a folder on the way is a symlink; refusing to write through it")


def _real_location(folder: str) -> str:
    """Where ``folder`` really is, symlinks resolved. On Linux the kernel says, in
    three system calls; ``realpath`` makes one ``lstat`` per path component."""
    if _O_PATH and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(folder, _O_PATH | os.O_DIRECTORY)
        except OSError:
            return os.path.realpath(folder)
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    return os.path.realpath(folder)


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename. A symlink at ``path``
    is replaced, never followed, and a crash or a power cut leaves either the old or
    the new file."""
    _check_parent(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # os.open applied the umask
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_fresh(path: Path) -> int:
    """Open a new, empty ``path`` for writing; returns the file descriptor. Whatever
    stood there (a stale file, a planted symlink) is removed first, so the runner never
    writes through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        _remove_path(path)
        return os.open(path, flags, 0o644)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write part of it); a full disk raises."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing); a symlink there is replaced."""
    _check_parent(path)
    if os.path.islink(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _remove_path(path: Path) -> None:
    """Remove a file, a symlink (not its target) or a whole folder; missing is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _real_folder(path: Path) -> bool:
    """True for a folder that is not a symlink."""
    return path.is_dir() and not path.is_symlink()


def _open_regular(path: str | Path) -> int:
    """Open a regular file for reading, never through a symlink and never blocking on
    a planted FIFO or device. :raises JobError: naming the file and what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if os.path.islink(path):
            raise JobError(f"{path}: is a symlink; not read") from None
        raise JobError(f"{path}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobError(f"{path}: is not a regular file; not read")
    return fd


def _read_file(path: str | Path, max_bytes: int, truncate: bool = False) -> bytes:
    """The bytes of a regular file, reading at most ``max_bytes`` (never the whole of
    a huge file). :param truncate: return the first ``max_bytes`` of a larger file
    instead of raising. :raises JobError: a symlink, not a file, or too large."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        if not truncate and os.fstat(fd).st_size > max_bytes:
            raise JobError(f"{path}: is larger than {_size(max_bytes)}; not read")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        if not truncate:
            raise JobError(f"{path}: is larger than {_size(max_bytes)}; not read")
        data = data[:max_bytes]
    return data


def _size(n: int) -> str:
    """A byte count for people: ``512 bytes``, ``64 kB``, ``1 MB``."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.3g} kB"
    return f"{n / (1024 * 1024):.3g} MB"


# ---------------------------------------------------------------------------
# YAML: the subset that SyftBox jobs and permissions use, read as PyYAML reads it
# ---------------------------------------------------------------------------
#
# The reader accepts block mappings and sequences nested by indentation, plain,
# single- and double-quoted scalars (folded over lines as PyYAML folds them), flow
# collections, comments and one leading "---". Scalars resolve by the YAML 1.1 rules
# of PyYAML's SafeLoader. Everything else (anchors, aliases, tags, block scalars,
# several documents, tabs as indentation) raises YAMLError with the file and line.

_MAX_YAML_DEPTH = 100
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"
_FLOW_INDICATORS = ",[]{}"

_ESCAPE_REPLACEMENTS = {
    "0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "\t": "\t", "n": "\n",
    "v": "\x0b", "f": "\x0c", "r": "\r", "e": "\x1b", " ": " ", '"': '"',
    "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_ESCAPE_CODES = {"x": 2, "u": 4, "U": 8}

# What PyYAML accepts in a stream: printable characters. NEL, LS and PS are line
# breaks to PyYAML; we refuse them rather than split lines differently.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_BOOL_VALUES = {
    "yes": True, "Yes": True, "YES": True, "true": True, "True": True, "TRUE": True,
    "on": True, "On": True, "ON": True,
    "no": False, "No": False, "NO": False, "false": False, "False": False,
    "FALSE": False, "off": False, "Off": False, "OFF": False,
}
_NULL_VALUES = {"", "~", "null", "Null", "NULL"}
_INT_RE = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""", re.X)
_FLOAT_RE = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_TIMESTAMP_RE = re.compile(r"""^(?P<year>[0-9][0-9][0-9][0-9])
    -(?P<month>[0-9][0-9]?)
    -(?P<day>[0-9][0-9]?)
    (?:(?:[Tt]|[ \t]+)
    (?P<hour>[0-9][0-9]?)
    :(?P<minute>[0-9][0-9])
    :(?P<second>[0-9][0-9])
    (?:\.(?P<fraction>[0-9]*))?
    (?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)
    (?::(?P<tz_minute>[0-9][0-9]))?))?)?$""", re.X)
_DATE_ONLY_RE = re.compile(r"^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$")


def _resolve_plain(text: str) -> Any:
    """The value of an unquoted scalar, by the YAML 1.1 rules of PyYAML's SafeLoader.

    :param text: the scalar as it stands in the file, already folded.
    """
    if text in _NULL_VALUES:
        return None
    if text in _BOOL_VALUES:
        return _BOOL_VALUES[text]
    if _INT_RE.match(text):
        return _construct_int(text)
    if _FLOAT_RE.match(text):
        return _construct_float(text)
    match = _TIMESTAMP_RE.match(text)
    if match and (match.group("hour") is not None or _DATE_ONLY_RE.match(text)):
        return _construct_timestamp(match)
    if text in ("=", "<<"):
        raise ValueError(f"the plain scalar {text!r} is a YAML value/merge key, not supported")
    return text


def _construct_int(text: str) -> int:
    value = text.replace("_", "")
    sign = -1 if value[0] == "-" else 1
    if value[0] in "+-":
        value = value[1:]
    if value == "0":
        return 0
    if value.startswith("0b"):
        return sign * int(value[2:], 2)
    if value.startswith("0x"):
        return sign * int(value[2:], 16)
    if value[0] == "0":
        return sign * int(value, 8)
    if ":" in value:
        digits = [int(part) for part in value.split(":")]
        total = 0
        for digit in digits:
            total = total * 60 + digit
        return sign * total
    return sign * int(value)


def _construct_float(text: str) -> float:
    value = text.replace("_", "").lower()
    sign = -1.0 if value[0] == "-" else 1.0
    if value[0] in "+-":
        value = value[1:]
    if value == ".inf":
        return sign * float("inf")
    if value == ".nan":
        return float("nan")
    if ":" in value:
        digits = [float(part) for part in value.split(":")]
        total = 0.0
        for digit in digits:
            total = total * 60 + digit
        return sign * total
    return sign * float(value)


def _construct_timestamp(match: re.Match) -> Any:
    year, month, day = (int(match.group(k)) for k in ("year", "month", "day"))
    if match.group("hour") is None:
        return datetime.date(year, month, day)
    hour, minute, second = (int(match.group(k)) for k in ("hour", "minute", "second"))
    fraction = 0
    if match.group("fraction"):
        digits = match.group("fraction")[:6]
        fraction = int(digits.ljust(6, "0"))
    tzinfo = None
    if match.group("tz_sign"):
        delta = datetime.timedelta(hours=int(match.group("tz_hour")),
                                   minutes=int(match.group("tz_minute") or 0))
        if match.group("tz_sign") == "-":
            delta = -delta
        tzinfo = datetime.timezone(delta)
    elif match.group("tz"):
        tzinfo = datetime.timezone.utc
    return datetime.datetime(year, month, day, hour, minute, second, fraction, tzinfo=tzinfo)


class _YamlReader:
    """Reads one YAML document of the supported subset; see the section comment."""

    def __init__(self, text: str, source: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        self.lines = self.text.split("\n")
        self.pos = 0  # index of the next line the block parser looks at
        self.depth = 0  # how many collections the parser is inside

    # -- errors and positions ------------------------------------------------

    def error(self, line_index: int, message: str) -> YAMLError:
        return YAMLError(f"{self.source}, line {line_index + 1}: {message}")

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset) - 1

    def char(self, offset: int) -> str:
        return self.text[offset] if offset < len(self.text) else "\0"

    # -- document ------------------------------------------------------------

    def read(self) -> Any:
        bad = _NOT_PRINTABLE.search(self.text)
        if bad:
            raise self.error(self.line_of(bad.start()),
                             f"character {bad.group()!r} is not allowed in YAML here")
        index = self.next_content_line()
        if index is not None:
            line = self.lines[index]
            if line.startswith("%"):
                raise self.error(index, "YAML directives (%...) are not supported")
            if self.is_document_marker(index) and line.startswith("..."):
                raise self.error(index, "a document end marker ('...') is not supported")
            if self.is_document_marker(index) and line.startswith("---"):
                if line[3:].strip(" ") and not line[3:].strip(" ").startswith("#"):
                    raise self.error(index, "content on the '---' line is not supported")
                self.pos = index + 1
        value = self.parse_node(-1)
        index = self.next_content_line()
        if index is not None:
            if self.is_document_marker(index) and self.lines[index].startswith("..."):
                raise self.error(index, "a document end marker ('...') is not supported")
            if self.is_document_marker(index):
                raise self.error(index, "several YAML documents in one file are not supported")
            raise self.error(index, f"unexpected text {self.lines[index].strip()!r} (check the indentation)")
        return value

    def is_document_marker(self, index: int) -> bool:
        """A ``---`` or ``...`` line (the start or end of a YAML document)."""
        line = self.lines[index]
        return line[:3] in ("---", "...") and line[3:4] in ("", " ", "\t")

    def next_content_line(self) -> int | None:
        """Skip blank and comment lines; the index of the next content line, or None."""
        while self.pos < len(self.lines):
            stripped = self.lines[self.pos].strip(" ")
            if stripped.startswith("\t"):
                raise self.error(self.pos, "a tab is used for indentation; use spaces")
            if stripped and not stripped.startswith("#"):
                return self.pos
            self.pos += 1
        return None

    def ends_block(self, index: int | None, indent: int) -> bool:
        """Whether a block at ``indent`` ends before line ``index``."""
        return index is None or self.indent_of(index) != indent or self.is_document_marker(index)

    def indent_of(self, index: int) -> int:
        line = self.lines[index]
        return len(line) - len(line.lstrip(" "))

    # -- block structure -----------------------------------------------------

    def parse_node(self, parent_indent: int, sequence_at_parent: bool = False) -> Any:
        """The block node after a ``key:`` (or at the top): None when nothing follows."""
        index = self.next_content_line()
        if index is None:
            return None
        indent = self.indent_of(index)
        is_item = self.is_sequence_item(index, indent)
        if indent > parent_indent or (sequence_at_parent and indent == parent_indent and is_item):
            return self.parse_block(index, indent)
        return None

    def is_sequence_item(self, index: int, indent: int) -> bool:
        rest = self.lines[index][indent:]
        return rest == "-" or rest.startswith("- ")

    def parse_block(self, index: int, indent: int) -> Any:
        with self.nested(index):
            if self.is_sequence_item(index, indent):
                return self.parse_sequence(indent)
            if self.split_key(index, indent) is not None:
                return self.parse_mapping(indent)
            return self.parse_inline(self.line_starts[index] + indent, indent - 1)

    @contextlib.contextmanager
    def nested(self, index: int) -> Iterator[None]:
        """One level deeper; a hostile file cannot exhaust the stack."""
        if self.depth >= _MAX_YAML_DEPTH:
            raise self.error(index, f"nested deeper than {_MAX_YAML_DEPTH} levels")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def parse_sequence(self, indent: int) -> list:
        items = []
        while True:
            index = self.next_content_line()
            if self.ends_block(index, indent) or not self.is_sequence_item(index, indent):
                break
            line = self.lines[index]
            rest = line[indent + 1:]
            if not rest.strip(" ") or rest.strip(" ").startswith("#"):
                self.pos = index + 1
                items.append(self.parse_node(indent))
            else:
                # "- value": blank out the dash and read the value as a block node
                # starting at its own column, so "- a: 1\n  b: 2" is one mapping.
                column = indent + 1 + (len(rest) - len(rest.lstrip(" ")))
                self.lines[index] = " " * column + line[column:]
                items.append(self.parse_block(index, column))
            self.check_no_deeper(indent)
        return items

    def check_no_deeper(self, indent: int) -> None:
        index = self.next_content_line()
        if index is not None and self.indent_of(index) > indent:
            raise self.error(index, "unexpected indentation")

    def parse_mapping(self, indent: int) -> dict:
        mapping: dict = {}
        while True:
            index = self.next_content_line()
            if self.ends_block(index, indent):
                break
            if self.is_sequence_item(index, indent):
                raise self.error(index, "a '- ' list item where a 'key: value' line was expected")
            split = self.split_key(index, indent)
            if split is None:
                raise self.error(index, f"expected 'key: value', found {self.lines[index].strip()!r}")
            key, value_offset = split
            try:
                hash(key)
            except TypeError:
                raise self.error(index, "a mapping key must be a scalar") from None
            line_end = self.line_starts[index] + len(self.lines[index])
            after = self.text[value_offset:line_end]
            value = after.lstrip(" ")
            if not value or value.startswith("#"):
                self.pos = index + 1
                mapping[key] = self.parse_node(indent, sequence_at_parent=True)
            else:
                mapping[key] = self.parse_inline(value_offset + len(after) - len(value), indent)
            self.check_no_deeper(indent)
        return mapping

    def split_key(self, index: int, indent: int) -> tuple[Any, int] | None:
        """For a ``key: value`` line, the key and the offset just after the ':'."""
        start = self.line_starts[index] + indent
        line_end = self.line_starts[index] + len(self.lines[index])
        first = self.char(start)
        if first in "'\"":
            try:
                key, end = self.scan_quoted(start)
            except YAMLError:
                return None
            if self.line_of(end) != index:
                return None
            rest = self.text[end:line_end]
            stripped = rest.lstrip(" ")
            if stripped.startswith(":") and (len(stripped) == 1 or stripped[1] == " "):
                return key, end + (len(rest) - len(stripped)) + 1
            return None
        if first == "?" and self.char(start + 1) in " \n\0":
            raise self.error(index, "complex mapping keys ('? ') are not supported")
        if first in "&*!":
            raise self.error(index, "anchors, aliases and tags (&, *, !) are not supported")
        content = self.text[start:line_end]
        match = re.search(r":(?= |$)", content)
        if not match:
            return None
        comment = re.search(r"(^|[ \t])#", content)
        if comment and comment.start() < match.start():
            return None
        key_text = content[:match.start()].rstrip(" ")
        if not key_text or key_text[0] in "[{":
            if key_text and key_text[0] in "[{":
                raise self.error(index, "flow collections as mapping keys are not supported")
            return None
        if "\t" in key_text:
            raise self.error(index, "a tab inside a plain key is not supported")
        self.check_plain_start(start, flow=False)
        try:
            key = _resolve_plain(key_text)
        except ValueError as exc:
            raise self.error(index, str(exc)) from None
        return key, start + match.end()

    # -- scalars and flow collections ----------------------------------------

    def parse_inline(self, offset: int, parent_indent: int) -> Any:
        """A value that starts at ``offset`` on a line; sets ``pos`` past its end."""
        index = self.line_of(offset)
        first = self.char(offset)
        if first in "'\"":
            value, end = self.scan_quoted(offset)
        elif first in "[{":
            value, end = self.scan_flow(offset)
        elif first in "&*!":
            raise self.error(index, "anchors, aliases and tags (&, *, !) are not supported")
        elif first in "|>":
            raise self.error(index, "block scalars (| and >) are not supported; use a quoted string")
        elif first == "-" and self.char(offset + 1) in " \n\0":
            raise self.error(index, "a '- ' list item is not allowed here")
        else:
            text, end = self.scan_plain(offset, parent_indent + 1, flow=False)
            try:
                value = _resolve_plain(text)
            except ValueError as exc:
                raise self.error(index, str(exc)) from None
        self.finish_line(end)
        return value

    def finish_line(self, end: int) -> None:
        """After a value: only spaces and a comment may follow on its last line."""
        index = self.line_of(end)
        line_end = self.line_starts[index] + len(self.lines[index])
        rest = self.text[end:line_end]
        if rest.strip(" ") and not rest.lstrip(" ").startswith("#"):
            if rest.lstrip(" ").startswith(":"):
                raise self.error(index, "a ': ' inside a plain value is ambiguous; quote the value")
            raise self.error(index, f"unexpected text after the value: {rest.strip()!r}")
        if rest and rest.lstrip(" ").startswith("#") and not rest.startswith(" "):
            raise self.error(index, "a comment must be separated from the value by a space")
        self.pos = index + 1

    def scan_plain(self, offset: int, min_indent: int, flow: bool) -> tuple[str, int]:
        """An unquoted scalar, folded over lines like PyYAML's scanner does."""
        self.check_plain_start(offset, flow)
        chunks: list[str] = []
        spaces: list[str] = []
        pos = offset
        end = offset
        while True:
            if self.char(pos) == "#":
                break
            length = 0
            while True:
                ch = self.char(pos + length)
                if ch in "\0 \t\n":
                    break
                if ch == ":" and self.char(pos + length + 1) in "\0 \t\n" + (_FLOW_INDICATORS if flow else ""):
                    break
                if flow and ch in ",?[]{}":
                    break
                length += 1
            if length == 0:
                break
            chunks.extend(spaces)
            chunks.append(self.text[pos:pos + length])
            pos += length
            end = pos
            if self.char(pos) == "\t":
                raise self.error(self.line_of(pos), "a tab inside a plain value; quote the value")
            spaces, pos = self.scan_plain_spaces(pos)
            column = pos - self.line_starts[self.line_of(pos)]
            if not spaces or self.char(pos) == "#" or (not flow and column < min_indent):
                break
            if self.char(pos) == "\t":
                raise self.error(self.line_of(pos), "a tab is used for indentation; use spaces")
        return "".join(chunks), end

    def check_plain_start(self, offset: int, flow: bool) -> None:
        first = self.char(offset)
        follower = self.char(offset + 1)
        if first in _INDICATORS and not (first in "-?:" and follower not in " \n\0" + (_FLOW_INDICATORS if flow else "")):
            raise self.error(self.line_of(offset), f"a plain value cannot start with {first!r}; quote it")

    def scan_plain_spaces(self, pos: int) -> tuple[list[str], int]:
        length = 0
        while self.char(pos + length) == " ":
            length += 1
        whitespace = self.text[pos:pos + length]
        pos += length
        if self.char(pos) != "\n":
            return ([whitespace] if whitespace else []), pos
        pos += 1
        if self.text[pos:pos + 3] in ("---", "...") and self.char(pos + 3) in "\0 \t\n":
            return [], pos
        breaks = []
        while self.char(pos) in " \n":
            if self.char(pos) == " ":
                pos += 1
            else:
                breaks.append("\n")
                pos += 1
                if self.text[pos:pos + 3] in ("---", "...") and self.char(pos + 3) in "\0 \t\n":
                    return [], pos
        return (breaks or [" "]), pos

    def scan_quoted(self, offset: int) -> tuple[str, int]:
        """A quoted scalar starting at ``offset``: its value and the offset after it."""
        quote = self.text[offset]
        double = quote == '"'
        pos = offset + 1
        chunks: list[str] = []
        while True:
            pos = self.scan_quoted_non_spaces(pos, double, chunks)
            if self.char(pos) == quote:
                return "".join(chunks), pos + 1
            pos = self.scan_quoted_spaces(pos, offset, chunks)

    def scan_quoted_non_spaces(self, pos: int, double: bool, chunks: list[str]) -> int:
        while True:
            length = 0
            while self.char(pos + length) not in "'\"\\\0 \t\n":
                length += 1
            if length:
                chunks.append(self.text[pos:pos + length])
                pos += length
            ch = self.char(pos)
            if not double and ch == "'" and self.char(pos + 1) == "'":
                chunks.append("'")
                pos += 2
            elif (double and ch == "'") or (not double and ch in '"\\'):
                chunks.append(ch)
                pos += 1
            elif double and ch == "\\":
                pos += 1
                ch = self.char(pos)
                if ch in _ESCAPE_REPLACEMENTS:
                    chunks.append(_ESCAPE_REPLACEMENTS[ch])
                    pos += 1
                elif ch in _ESCAPE_CODES:
                    length = _ESCAPE_CODES[ch]
                    digits = self.text[pos + 1:pos + 1 + length]
                    if len(digits) != length or not all(c in "0123456789abcdefABCDEF" for c in digits):
                        raise self.error(self.line_of(pos), f"bad escape \\{ch}{digits}: expected {length} hex digits")
                    chunks.append(chr(int(digits, 16)))
                    pos += 1 + length
                elif ch == "\n":
                    pos = self.scan_quoted_breaks(pos + 1, chunks)
                else:
                    raise self.error(self.line_of(pos), f"unknown escape \\{ch} in a double-quoted string")
            else:
                return pos

    def scan_quoted_spaces(self, pos: int, start: int, chunks: list[str]) -> int:
        length = 0
        while self.char(pos + length) in " \t":
            length += 1
        whitespace = self.text[pos:pos + length]
        pos += length
        ch = self.char(pos)
        if ch == "\0":
            raise self.error(self.line_of(start), "a quoted string is not closed")
        if ch == "\n":
            breaks: list[str] = []
            pos = self.scan_quoted_breaks(pos + 1, breaks)
            if not breaks:
                chunks.append(" ")
            chunks.extend(breaks)
        else:
            chunks.append(whitespace)
        return pos

    def scan_quoted_breaks(self, pos: int, chunks: list[str]) -> int:
        while True:
            if self.text[pos:pos + 3] in ("---", "...") and self.char(pos + 3) in "\0 \t\n":
                raise self.error(self.line_of(pos), "a document separator inside a quoted string")
            while self.char(pos) in " \t":
                pos += 1
            if self.char(pos) == "\n":
                chunks.append("\n")
                pos += 1
            else:
                return pos

    def scan_flow(self, offset: int) -> tuple[Any, int]:
        """A flow collection ``[...]`` or ``{...}`` (nesting and several lines allowed)."""
        with self.nested(self.line_of(offset)):
            return self.scan_flow_items(offset)

    def scan_flow_items(self, offset: int) -> tuple[Any, int]:
        opening = self.text[offset]
        closing = "]" if opening == "[" else "}"
        result: Any = [] if opening == "[" else {}
        pos = self.skip_flow_space(offset + 1)
        while self.char(pos) != closing:
            if self.char(pos) == "\0":
                raise self.error(self.line_of(offset), f"'{opening}' is not closed")
            key, pos = self.scan_flow_item(pos)
            pos = self.skip_flow_space(pos)
            if opening == "{":
                value = None
                if self.char(pos) == ":":
                    pos = self.skip_flow_space(pos + 1)
                    if self.char(pos) not in ",}":
                        value, pos = self.scan_flow_item(pos)
                        pos = self.skip_flow_space(pos)
                try:
                    result[key] = value
                except TypeError:
                    raise self.error(self.line_of(pos), "a mapping key must be a scalar") from None
            else:
                if self.char(pos) == ":":
                    raise self.error(self.line_of(pos), "mappings inside a flow list are not supported")
                result.append(key)
            if self.char(pos) == ",":
                pos = self.skip_flow_space(pos + 1)
            elif self.char(pos) == "\0":
                raise self.error(self.line_of(offset), f"'{opening}' is not closed")
            elif self.char(pos) != closing:
                raise self.error(self.line_of(pos), f"expected ',' or '{closing}' in a flow collection")
        return result, pos + 1

    def scan_flow_item(self, pos: int) -> tuple[Any, int]:
        ch = self.char(pos)
        if ch in "'\"":
            return self.scan_quoted(pos)
        if ch in "[{":
            return self.scan_flow(pos)
        if ch in "&*!":
            raise self.error(self.line_of(pos), "anchors, aliases and tags (&, *, !) are not supported")
        text, end = self.scan_plain(pos, 0, flow=True)
        if not text:
            raise self.error(self.line_of(pos), f"unexpected {ch!r} in a flow collection")
        try:
            return _resolve_plain(text), end
        except ValueError as exc:
            raise self.error(self.line_of(pos), str(exc)) from None

    def skip_flow_space(self, pos: int) -> int:
        while True:
            ch = self.char(pos)
            if ch in " \n":
                pos += 1
            elif ch == "#" and self.text[pos - 1] in " \n":
                while self.char(pos) not in "\n\0":
                    pos += 1
            else:
                return pos


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Read a YAML document of the subset SyftBox uses, giving what PyYAML gives.

    :param text: the document.
    :param source: the file name to put in error messages.
    :raises YAMLError: for anything outside the subset, naming ``source`` and the line.
    """
    return _YamlReader(text, source).read()


@functools.lru_cache(maxsize=1 << 14)  # permission files repeat the same emails and names
def _is_plain_safe(text: str) -> bool:
    """Whether ``text`` can be written unquoted and read back (by us and by PyYAML)
    as this very string."""
    if not text or text != text.strip(" ") or not all(" " <= c <= "~" for c in text):
        return False
    if text[0] in _INDICATORS and not (text[0] == "-" and len(text) > 1 and text[1] != " "):
        return False
    if ": " in text or " #" in text or text.endswith(":") or text[:3] in ("---", "..."):
        return False
    try:
        value = _resolve_plain(text)
    except ValueError:
        return False
    return isinstance(value, str) and value == text


def _quote_double(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        elif ch in "\0\x07\x08\t\n\x0b\x0c\r\x1b":
            out.append("\\" + "0abtnvfre"["\0\x07\x08\t\n\x0b\x0c\r\x1b".index(ch)])
        elif code < 0x100:
            out.append(f"\\x{code:02X}")
        elif code < 0x10000:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def _dump_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        return text
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        if _is_plain_safe(value):
            return value
        if all(" " <= c <= "~" for c in value):
            return "'" + value.replace("'", "''") + "'"
        return _quote_double(value)
    raise TypeError(f"cannot write a {type(value).__name__} as YAML: {value!r}")


def _dump_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        try:
            keys = sorted(value)
        except TypeError:
            keys = list(value)
        for key in keys:
            item = value[key]
            head = pad + _dump_scalar(key) + ":"
            if isinstance(item, dict) and item:
                lines.append(head)
                lines.extend(_dump_lines(item, indent + 2))
            elif isinstance(item, (list, tuple)) and item:
                lines.append(head)
                lines.extend(_dump_lines(item, indent))
            else:
                lines.append(head + " " + _dump_inline(item))
    else:
        for item in value:
            if isinstance(item, (dict, list, tuple)) and item:
                nested = _dump_lines(item, indent + 2)
                nested[0] = pad + "- " + nested[0][indent + 2:]
                lines.extend(nested)
            else:
                lines.append(pad + "- " + _dump_inline(item))
    return lines


def _dump_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _dump_scalar(value)


def dump_yaml(value: Any) -> str:
    """Write ``value`` (dicts, lists, strings, numbers, booleans, None, dates) as block
    YAML in the style of PyYAML's ``yaml.dump(value, default_flow_style=False)``:
    keys sorted, strings quoted whenever PyYAML would read them as something else.

    :param value: the data to write.
    :raises TypeError: for a value of another type.
    """
    if isinstance(value, (dict, list, tuple)) and value:
        return "\n".join(_dump_lines(value, 0)) + "\n"
    return _dump_inline(value) + "\n"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

# The on-disk layout, shared with every other SyftBox tool.
CONFIG_FILE = "config.yaml"
RUN_SCRIPT = "run.sh"
APPROVED_MARKER = "approved"
DONE_MARKER = "done"
PERMISSION_FILE = "syft.pub.yaml"
STDOUT_FILE = "stdout.txt"
STDERR_FILE = "stderr.txt"
RETURNCODE_FILE = "returncode.txt"
OUTPUTS_DIR = "outputs"
CLAIM_FILE = ".syft_job_claim"  # the runner that is running the job (see "Claims")
_STATUSES = ("inbox", "approved", "running", "done")
_MAX_CONFIG_BYTES = 1024 * 1024  # a submitter's config.yaml is read whole: keep it bounded

TIMEOUT_ENV_VAR = "SYFT_DEFAULT_JOB_TIMEOUT_SECONDS"
_DEFAULT_TIMEOUT_SECONDS = 300.0
_EMAIL_RE = re.compile(r"^[^@\s/\\\x00]+@[^@\s/\\\x00]+\.[^@\s/\\\x00]+$")


def _check_folder_name(name: str, what: str) -> str:
    """Refuse a name that cannot safely be one folder under another.

    :param name: the job name or email that becomes a folder name.
    :param what: what the name is, for the message ("job name", "email").
    """
    if not isinstance(name, str):
        raise JobError(f"the {what} must be a string, not {type(name).__name__}")
    problem = None
    if name in (".", ".."):
        problem = "is not a folder name"
    elif "/" in name or "\0" in name:
        problem = "contains '/' or a NUL character"
    elif not name.strip():
        problem = "is empty or only spaces"
    elif len(name.encode("utf-8", "surrogateescape")) > 255:
        problem = "is longer than 255 bytes"
    if problem:
        raise JobError(f"the {what} {name!r} {problem}")
    return name


def _check_email(email: str) -> str:
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise ConfigError(f"{email!r} does not look like an email address (name@domain.tld)")
    try:
        return _check_folder_name(email, "email")
    except JobError as exc:
        raise ConfigError(str(exc)) from None


def _positive_seconds(value: Any, what: str) -> float:
    """``value`` as a positive number of seconds, or a ConfigError naming ``what``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{what} must be a positive number of seconds, got {value!r}")
    return seconds


def _resolve_timeout(timeout: float | None) -> float:
    """The timeout argument, else $SYFT_DEFAULT_JOB_TIMEOUT_SECONDS, else 300 s."""
    if timeout is not None:
        return _positive_seconds(timeout, "timeout")
    from_env = os.environ.get(TIMEOUT_ENV_VAR, "").strip()
    if from_env:
        return _positive_seconds(from_env, TIMEOUT_ENV_VAR)
    return _DEFAULT_TIMEOUT_SECONDS


@dataclasses.dataclass(frozen=True)
class SyftJobConfig:
    """Where a datasite lives: its SyftBox folder and the email of the user.

    :param syftbox_folder: the SyftBox folder (holds one folder per datasite).
    :param email: the user: the owner for a runner, the submitter for a JobClient.
    """

    syftbox_folder: Path
    email: str

    @classmethod
    def from_syftbox_folder(cls, syftbox_folder_path: str | os.PathLike, email: str) -> SyftJobConfig:
        """Check and build a config.

        :param syftbox_folder_path: the SyftBox folder; ``~`` is expanded.
        :param email: the user's email.
        :raises ConfigError: the folder is missing or not a folder, or the email is bad.
        """
        email = _check_email(email)
        folder = Path(syftbox_folder_path).expanduser()
        if not folder.exists():
            raise ConfigError(f"SyftBox folder not found: {folder}")
        if not folder.is_dir():
            raise ConfigError(f"SyftBox folder is not a folder: {folder}")
        return cls(folder.resolve(), email)

    def get_user_dir(self, email: str) -> Path:
        """The datasite folder of ``email``."""
        return self.syftbox_folder / _check_email(email)

    def get_job_dir(self, email: str) -> Path:
        """The job directory of the datasite of ``email``: ``<user dir>/app_data/job``."""
        return self.get_user_dir(email) / "app_data" / "job"


# ---------------------------------------------------------------------------
# Submission: creating jobs the way SyftBox clients do
# ---------------------------------------------------------------------------

CLIENT_SOURCE_ENV_VAR = "SYFT_CLIENT_INSTALL_SOURCE"
_DEFAULT_BASE_PACKAGES = ("syft-client",)
_PYTHON_VERSION = "3.12"
# Names the runner writes into a job folder: submitted code must not take them.
_RESERVED_NAMES = {CONFIG_FILE, RUN_SCRIPT, APPROVED_MARKER, DONE_MARKER, PERMISSION_FILE,
                   STDOUT_FILE, STDERR_FILE, RETURNCODE_FILE, OUTPUTS_DIR, CLAIM_FILE}
_COPY_IGNORE = shutil.ignore_patterns(".venv", "__pycache__", ".git")


def _double_quoted(word: str) -> str:
    """``"word"`` as the docs write packages, or shell-safe quoting when that is unsafe."""
    if re.search(r'["$`\\\n!]', word):
        return shlex.quote(word)
    return f'"{word}"'


def _python_run_script(entry: str, project_dir: str | None, has_pyproject: bool,
                       packages: Sequence[str], python_version: str = _PYTHON_VERSION) -> str:
    """The run.sh of a Python job, in the exact form of the SyftBox docs.

    :param entry: the script to run, relative to the job folder.
    :param project_dir: the submitted folder's name, or None for a single file.
    :param has_pyproject: the folder has a pyproject.toml: use ``uv sync``.
    :param packages: installed with ``uv pip install``, in this order.
    """
    lines = ["#!/bin/bash", "set -euo pipefail", "export UV_SYSTEM_PYTHON=false"]
    if project_dir is not None and has_pyproject:
        project = shlex.quote(project_dir)
        lines.append(f"cd {project} && uv sync --python {python_version} && cd ..")
        lines.append(f"source {project}/.venv/bin/activate")
    else:
        lines.append(f"uv venv --python {python_version}")
        lines.append("source .venv/bin/activate")
    if packages:
        lines.append("uv pip install " + " ".join(_double_quoted(p) for p in packages))
    if project_dir is not None:
        lines.append(f"export PYTHONPATH={shlex.quote(project_dir)}:${{PYTHONPATH:-}}")
    lines.append(f"python {shlex.quote(entry)}")
    return "\n".join(lines) + "\n"


def _folder_entrypoint(folder: Path, entrypoint: str | None) -> str:
    """The script to run in a submitted folder: ``entrypoint``, else main.py, else the
    only .py file at its root."""
    if entrypoint:
        target = (folder / entrypoint).resolve()
        if not target.is_file() or folder.resolve() not in target.parents:
            raise JobError(f"entrypoint {entrypoint!r} is not a file inside {folder}")
        return target.relative_to(folder.resolve()).as_posix()
    if (folder / "main.py").is_file():
        return "main.py"
    scripts = sorted(p.name for p in folder.glob("*.py") if p.is_file())
    if len(scripts) == 1:
        return scripts[0]
    found = ", ".join(scripts) if scripts else "none"
    raise JobError(f"cannot tell which script to run in {folder}: no main.py and "
                   f"{len(scripts)} .py files at its root ({found}); pass entrypoint=...")


class JobClient:
    """Submits jobs into data owners' datasites, as the SyftBox clients do.

    :param config: the data scientist's configuration (its email is the submitter).
    """

    def __init__(self, config: SyftJobConfig) -> None:
        self.config = config

    def submit_bash_job(self, user: str, script: str, job_name: str = "") -> Path:
        """Submit a shell script as a job for ``user`` to review.

        :param user: the data owner.
        :param script: the text of run.sh (a ``#!/bin/bash`` line is added if missing).
        :param job_name: the job's name; empty gives ``Job - <8 hex chars>``.
        :returns: the new job folder.
        """
        if not script.startswith("#!"):
            script = "#!/bin/bash\n" + script
        if not script.endswith("\n"):
            script += "\n"
        return self._create_job(user, job_name, script, {}, lambda folder: None)

    def submit_python_job(
        self,
        user: str,
        code_path: str | os.PathLike,
        job_name: str = "",
        dependencies: Sequence[str] | None = None,
        entrypoint: str | None = None,
        base_packages: Sequence[str] | None = None,
    ) -> Path:
        """Submit a Python script, or a folder of code, as a job for ``user`` to review.

        :param user: the data owner.
        :param code_path: a ``.py`` file, or a folder (with pyproject.toml: ``uv sync``).
        :param job_name: the job's name; empty gives ``Job - <8 hex chars>``.
        :param dependencies: packages to install, e.g. ``["numpy", "pandas==2.2.0"]``.
        :param entrypoint: the script to run in a folder; default main.py, else the only .py.
        :param base_packages: installed before ``dependencies``; default
            $SYFT_CLIENT_INSTALL_SOURCE, else ``syft-client``.
        :returns: the new job folder.
        """
        source = Path(code_path).expanduser().absolute()
        dependencies = [str(d) for d in (dependencies or [])]
        if base_packages is None:
            from_env = os.environ.get(CLIENT_SOURCE_ENV_VAR, "").strip()
            base_packages = [from_env] if from_env else list(_DEFAULT_BASE_PACKAGES)
        packages = list(dict.fromkeys(list(base_packages) + dependencies))
        if source.is_dir():
            project_dir = _check_folder_name(source.name, "code folder name")
            entry = _folder_entrypoint(source, entrypoint)
            has_pyproject = (source / "pyproject.toml").is_file()
            script = _python_run_script(f"{project_dir}/{entry}", project_dir, has_pyproject, packages)

            def copy(folder: Path) -> None:
                shutil.copytree(source, folder / project_dir, symlinks=True, ignore=_COPY_IGNORE)
        elif source.is_file():
            if source.suffix != ".py":
                raise JobError(f"{source} is not a .py file: submit a Python script, or a folder of code")
            project_dir = None
            entry = _check_folder_name(source.name, "code file name")
            script = _python_run_script(entry, None, False, packages)

            def copy(folder: Path) -> None:
                shutil.copy2(source, folder / entry)
        else:
            raise JobError(f"code not found: {source}")
        if (project_dir or entry) in _RESERVED_NAMES:
            raise JobError(f"the code is named {project_dir or entry!r}, a name the runner uses; rename it")
        extra = {
            "type": "python",
            "code_path": str(source),
            "entry_point": entry,
            "dependencies": dependencies,
            "is_folder_submission": project_dir is not None,
        }
        return self._create_job(user, job_name, script, extra, copy)

    def _create_job(self, user: str, job_name: str, script: str, extra: dict,
                    copy_code: Callable[[Path], None]) -> Path:
        """Make the job folder; config.yaml comes last, so a runner never sees half a job."""
        name = _check_folder_name(job_name or f"Job - {uuid.uuid4().hex[:8]}", "job name")
        datasite = self.config.get_user_dir(user)
        if not datasite.is_dir():
            raise JobError(f"no datasite for {user} in {self.config.syftbox_folder} "
                           f"(is the SyftBox folder synced?)")
        inbox = self.config.get_job_dir(user) / self.config.email
        inbox.mkdir(parents=True, exist_ok=True)
        folder = inbox / name
        try:
            folder.mkdir()
        except FileExistsError:
            raise JobError(f"a job named {name!r} already exists at {folder}") from None
        try:
            copy_code(folder)
            _atomic_write(folder / RUN_SCRIPT, script.encode("utf-8"), mode=0o755)
            config = {
                "name": name,
                "submitted_by": self.config.email,
                "submitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                **extra,
            }
            _atomic_write(folder / CONFIG_FILE, dump_yaml(config).encode("utf-8"))
        except BaseException:
            _remove_path(folder)
            raise
        return folder


# ---------------------------------------------------------------------------
# Discovery: what jobs exist, and in which state
# ---------------------------------------------------------------------------


# Control characters, bidi overrides and undecodable bytes in a name could forge or
# hide console lines ("\n✅ Job approved", "\x1b[2K"); they are shown escaped.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                          "\u2060-\u206f\ufeff\ud800-\udfff]")


def _printable(text: str) -> str:
    """``text`` safe to print: control, bidi and undecodable characters escaped."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


@dataclasses.dataclass(frozen=True)
class _Job:
    """One job folder, ``<job dir>/<submitter>/<name>``, and its state on disk."""

    folder: str  # a str, not a Path: a poll makes one per job, and most are never used
    submitter: str
    name: str
    status: str  # "inbox", "approved", "running" or "done"

    @functools.cached_property
    def path(self) -> Path:
        return Path(self.folder)

    def file(self, name: str) -> str:
        """The path of ``name`` in the job folder, as a str (cheaper than a Path: running
        a job looks up a dozen of them)."""
        return f"{self.folder}/{name}"

    @property
    def key(self) -> str:
        return f"{self.submitter}/{self.name}"

    @property
    def label(self) -> str:
        """The key, safe to print."""
        return _printable(self.key)

    @property
    def where(self) -> str:
        """The folder, safe to print."""
        return _printable(self.folder)

    def read_config(self) -> dict:
        """The job's config.yaml as a mapping.

        :raises SyftJobError: a symlink, too large, not UTF-8, not YAML, not a mapping.
        """
        path = self.file(CONFIG_FILE)
        data = _read_file(path, _MAX_CONFIG_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YAMLError(f"{path}: is not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r});"
                            " not a job config") from None
        value = load_yaml(text, path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise YAMLError(f"{path}: expected a mapping of settings, found a {type(value).__name__}")
        return value


def _job_status(folder: str | Path) -> str:
    if os.path.lexists(os.path.join(folder, DONE_MARKER)):
        return "done"
    if os.path.lexists(os.path.join(folder, APPROVED_MARKER)):
        return "running" if os.path.lexists(os.path.join(folder, CLAIM_FILE)) else "approved"
    return "inbox"


_FULL_SCAN_SECONDS = 60.0
_SETTLED_NS = 1_000_000_000  # a folder changed this recently may change again unseen


class _JobScanner:
    """Finds the jobs of a job directory, poll after poll, without looking again at
    what cannot have changed: a submitter folder whose modification time is the same
    holds the same job folders, and a finished job stays finished. A poll over 10,000
    finished jobs so lists a folder instead of making 20,000 ``stat`` calls. Every
    _FULL_SCAN_SECONDS everything is looked at again, so that a ``done`` deleted by
    hand (to run a job again) is noticed.

    A folder is trusted by its modification time only once that time is
    _SETTLED_NS old: file systems stamp times coarsely, and two changes within one
    tick would leave the same time.
    """

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        # submitter folder -> (its mtime, [(name, path) of each folder in it, sorted])
        self.listings: dict[str, tuple[int, list[tuple[str, str]]]] = {}
        self.finished: dict[str, _Job] = {}  # job folder -> its job, once done
        self.full_scan_at = 0.0

    def scan(self) -> list[_Job]:
        """Every job, sorted by submitter then name. Symlinked folders are not followed:
        a submitter cannot make the runner look outside its folder."""
        if time.monotonic() >= self.full_scan_at:
            self.listings.clear()
            self.finished.clear()
            self.full_scan_at = time.monotonic() + _FULL_SCAN_SECONDS
        jobs = []
        for submitter in _sorted_subfolders(self.job_dir):
            for name, folder in self.job_folders(submitter):
                job = self.finished.get(folder)
                if job is None:
                    if not os.path.isfile(os.path.join(folder, CONFIG_FILE)):
                        continue
                    job = _Job(folder, submitter.name, name, _job_status(folder))
                    if job.status == "done":
                        self.finished[folder] = job
                jobs.append(job)
        return jobs

    def job_folders(self, submitter: os.DirEntry) -> list[tuple[str, str]]:
        """``(name, path)`` of each folder in a submitter folder, sorted by name."""
        try:
            mtime = submitter.stat(follow_symlinks=False).st_mtime_ns
        except OSError:
            return []
        listed = self.listings.get(submitter.path)
        if listed is not None and listed[0] == mtime:
            return listed[1]
        folders = [(entry.name, entry.path) for entry in _sorted_subfolders(submitter.path)]
        if time.time_ns() - mtime > _SETTLED_NS:
            self.listings[submitter.path] = (mtime, folders)
        return folders


def _scan_jobs(job_dir: Path) -> list[_Job]:
    """Every job under ``job_dir`` as it is now (one full scan)."""
    return _JobScanner(job_dir).scan()


def _sorted_subfolders(path: str | Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            folders = [e for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return sorted(folders, key=lambda e: e.name)


# ---------------------------------------------------------------------------
# Claims and approvals: who runs a job, and is it still what the owner approved
# ---------------------------------------------------------------------------
#
# A runner that starts a job first creates CLAIM_FILE in its folder with O_EXCL: of
# two runners, only one can. The claim holds the host, the runner's pid and process
# start time, the attempt number and, once the job is started, its process group. A
# claim left by a runner that died (SIGKILL, power cut) is taken over: the job's
# leftover processes are stopped and the job runs again, at most _MAX_ATTEMPTS times.
#
# Approving through this module writes into ``approved`` the sha256 of every file
# the submitter sent; a job whose files changed since is not run.

_MAX_ATTEMPTS = 3
_MAX_CLAIM_BYTES = 64 * 1024
_MAX_APPROVAL_BYTES = 16 * 1024 * 1024
_CLAIM_WRITE_SECONDS = 10.0  # an unreadable claim younger than this is being written
# Names in a job folder that are not part of the submission: the runner's and the
# owner's files, and caches that running a job creates (``uv venv`` makes .venv).
_NOT_SUBMITTED = {APPROVED_MARKER, DONE_MARKER, PERMISSION_FILE, STDOUT_FILE, STDERR_FILE,
                  RETURNCODE_FILE, OUTPUTS_DIR}
_CACHE_FOLDERS = {".venv", "__pycache__"}


@dataclasses.dataclass
class _Claim:
    """This runner's hold on one job (its CLAIM_FILE)."""

    path: str
    attempt: int


_held_claims: set[str] = set()  # claim files this process holds (runners in threads share a pid)


def _proc_stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...);
    None without /proc or when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc), to tell a process from
    a later one that got the same pid; None without /proc or when it is gone."""
    fields = _proc_stat(pid)
    return fields[19].decode() if fields else None


@functools.lru_cache(maxsize=4)
def _own_start(pid: int) -> str | None:
    """This process's start time, read once (a forked child asks with its own pid)."""
    return _process_start(pid)


def _read_claim(path: str) -> dict | None:
    """A claim's fields (JSON lines, later lines adding to the first); None when
    missing, empty or not ours to understand."""
    try:
        data = _read_file(path, _MAX_CLAIM_BYTES)
    except JobError:
        return None
    fields: dict = {}
    for line in data.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        fields.update(value)
    return fields if isinstance(fields.get("pid"), int) else None


def _claim_is_stale(path: str, fields: dict | None) -> bool:
    """Whether the runner that wrote a claim is gone. A claim from another host is
    never judged stale: this host cannot see that runner."""
    if fields is None:
        try:
            age = time.time() - os.lstat(path).st_mtime
        except FileNotFoundError:
            return False
        return age > _CLAIM_WRITE_SECONDS
    if fields.get("host") != socket.gethostname():
        return False
    pid = fields["pid"]
    if pid == os.getpid():
        return path not in _held_claims  # else a leftover of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    recorded = fields.get("pid_start")
    return recorded is not None and _process_start(pid) not in (None, recorded)


def _live_status(job: _Job) -> str:
    """The job's status, with "interrupted" for a running job whose runner is gone."""
    claim = job.file(CLAIM_FILE)
    if job.status == "running" and _claim_is_stale(claim, _read_claim(claim)):
        return "interrupted"
    return job.status


def _take_claim(job: _Job) -> tuple[_Claim | None, dict | None]:
    """Claim a job for this runner: ``(claim, None)``, or ``(None, the claim of the
    runner that has it, if readable)``. A stale claim is taken over after stopping
    what its job left running."""
    path = job.file(CLAIM_FILE)
    attempt = 1
    if os.path.lexists(path):
        fields = _read_claim(path)
        if not _claim_is_stale(path, fields):
            return None, fields
        # Rename first: of several runners taking it over, one wins the rename.
        stale = f"{path}.{uuid.uuid4().hex[:12]}.stale"
        try:
            os.rename(path, stale)
        except FileNotFoundError:
            return None, None
        try:
            if _read_claim(stale) != fields:  # replaced meanwhile by a live runner
                with contextlib.suppress(OSError):
                    os.link(stale, path)
                return None, None
            if fields:
                previous = fields.get("attempt")
                attempt = previous + 1 if isinstance(previous, int) and previous > 0 else 1
                _stop_leftovers(job, fields)
        finally:
            os.unlink(stale)
    fields = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _own_start(os.getpid()),
              "claimed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "attempt": attempt}
    _check_parent(path)
    _held_claims.add(path)  # before the file exists: a thread of this process may look
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    except FileExistsError:
        _held_claims.discard(path)
        return None, None
    except BaseException:
        _held_claims.discard(path)
        raise
    claim = _Claim(path, attempt)
    try:
        _write_all(fd, (json.dumps(fields) + "\n").encode())
    except BaseException:
        _release(claim)  # a full disk: no half-written claim is left behind
        raise
    finally:
        os.close(fd)
    return claim, None


def _note_process_group(claim: _Claim, pgid: int) -> None:
    """Add the started job's process group to the claim, for whoever takes it over
    after a crash. Best effort: on a full disk the job runs all the same."""
    line = json.dumps({"pgid": pgid, "leader_start": _process_start(pgid)}) + "\n"
    with contextlib.suppress(OSError):
        fd = os.open(claim.path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
        try:
            _write_all(fd, line.encode())
        finally:
            os.close(fd)


def _stop_leftovers(job: _Job, fields: dict) -> None:
    """Stop the processes an interrupted attempt left running (its process group).
    The claim file is the submitter's to write too: a group is stopped only if one of
    its processes runs a job, so a planted claim cannot name the owner's shell."""
    pgid = fields.get("pgid")
    if not isinstance(pgid, int) or pgid <= 1 or not _group_alive(pgid):
        return
    leader_start = fields.get("leader_start")
    if leader_start is not None and _process_start(pgid) not in (None, leader_start):
        return  # the group's number now belongs to an unrelated process
    members = _group_members(pgid)
    if not members or not any(_runs_a_job(pid) for pid in members):
        print(f"⚠️ Processes of the interrupted run of {job.label} may still run (process group {pgid});"
              " they could not be told apart from others, so they were left alone")
        return
    print(f"🧹 Stopping processes left running by the interrupted run of {job.label} (process group {pgid})")
    _stop_group(pgid)


def _release(claim: _Claim) -> None:
    """Give a claim up, unless it became ``done`` (then the path may be another's)."""
    if claim.path in _held_claims:
        _held_claims.discard(claim.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(claim.path)


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with os.fdopen(_open_regular(path), "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _submission(folder: Path) -> dict[str, str]:
    """What the submitter sent: ``{relative path: sha256}`` of every file in the job
    folder, except _NOT_SUBMITTED at the top and _CACHE_FOLDERS anywhere. A symlink is
    recorded by its target, never followed."""
    files: dict[str, str] = {}

    def visit(path: str, prefix: str) -> None:
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = prefix + entry.name
                if not prefix and (entry.name in _NOT_SUBMITTED or entry.name.startswith(CLAIM_FILE)):
                    continue
                if entry.is_symlink():
                    files[name] = "symlink to " + os.readlink(entry.path)
                elif entry.is_dir():
                    if entry.name not in _CACHE_FOLDERS:
                        visit(entry.path, name + "/")
                elif entry.is_file():
                    files[name] = _file_digest(entry.path)
                else:
                    files[name] = "not a regular file"

    visit(str(folder), "")
    return files


def _approval_record(job: _Job, owner: str) -> bytes:
    """What ``approved`` holds when the owner approves through this module."""
    record = {"approved_by": owner,
              "approved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "files": _submission(job.path)}
    return (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()


def _approved_files(job: _Job) -> dict[str, str] | None:
    """The submission recorded at approval, or None for a marker without one (an
    empty file, as other SyftBox tools write)."""
    try:
        data = _read_file(job.file(APPROVED_MARKER), _MAX_APPROVAL_BYTES)
        record = json.loads(data) if data.strip() else None
    except (JobError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict) and all(isinstance(v, str) for v in files.values()):
        return files
    return None


def _approval_problem(job: _Job, strict: bool) -> str | None:
    """Why a job must not run as approved, or None when it may."""
    approved = _approved_files(job)
    if approved is None:
        return "it was approved without a digest of its files, and this runner is strict" if strict else None
    now = _submission(job.path)
    if now == approved:
        return None
    changes = [f"{what}: {', '.join(_printable(n) for n in sorted(names))}" for what, names in (
        ("changed", {n for n in now.keys() & approved.keys() if now[n] != approved[n]}),
        ("added", now.keys() - approved.keys()),
        ("removed", approved.keys() - now.keys())) if names]
    return f"its files changed after it was approved ({'; '.join(changes)})"


# ---------------------------------------------------------------------------
# Execution: one job, one process group, output pumped as bytes
# ---------------------------------------------------------------------------

TIMEOUT_LINE = b"--- PROCESS TIMED OUT ---\n"
_LOG_CUT_LINE = "--- LOG CUT: it reached the limit of {limit} bytes (max_log_bytes); the job was stopped ---\n"
_KILL_GRACE_SECONDS = 2.0      # between SIGTERM and SIGKILL
_PARTIAL_LINE_SECONDS = 0.25   # a line without newline is shown after this long
_MAX_CONSOLE_LINE = 64 * 1024  # a longer line is shown in pieces (memory stays flat)
_PIPE_DRAIN_SECONDS = 0.5      # how long to read pipes still held after the job's group is gone
_READ_SIZE = 64 * 1024
# What a job inherits from the runner's environment; everything else (tokens, keys,
# cloud credentials) stays with the runner unless the owner passes it by name.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "TZ", "USER")
_INHERITED_PREFIXES = ("LC_", "UV_")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Signs in the end of stderr.txt that a job ran out of memory under max_memory_mb.
_OUT_OF_MEMORY = (b"MemoryError", b"Cannot allocate memory", b"out of memory", b"bad_alloc",
                  b"memory exhausted")


@dataclasses.dataclass(frozen=True)
class _JobLimits:
    """What the owner allows a job: environment variables passed by name, and limits
    on memory (address space), CPU time and the size of each log. None: no limit."""

    env_passthrough: tuple[str, ...] = ()
    max_memory_mb: float | None = None
    max_cpu_seconds: float | None = None
    max_log_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in self.env_passthrough:
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise ConfigError(f"env_passthrough: {name!r} is not an environment variable name")
        for what in ("max_memory_mb", "max_cpu_seconds", "max_log_bytes"):
            value = getattr(self, what)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < float("inf")):
                raise ConfigError(f"{what} must be a positive number or None, got {value!r}")

    def set_in_child(self) -> None:
        """Runs in the job's process between fork and exec (``preexec_fn``)."""
        import resource
        if self.max_memory_mb is not None:
            size = int(self.max_memory_mb * 1024 * 1024)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if self.max_cpu_seconds is not None:
            seconds = max(1, math.ceil(self.max_cpu_seconds))
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))  # SIGXCPU, then SIGKILL

    @property
    def in_child(self) -> bool:
        return self.max_memory_mb is not None or self.max_cpu_seconds is not None


@dataclasses.dataclass
class _JobResult:
    """How one execution ended."""

    job: _Job
    returncode: int
    timed_out: bool = False
    error: str | None = None  # a runner-side reason the job could not run
    over_limit: str | None = None  # the owner's limit the job went over, said for people

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and not self.error


class _Console:
    """Prints the job's output as prefixed lines; never mixes two streams in a line.

    Lines are cut at ``\n``, ``\r\n`` and ``\r`` (so progress bars show one line per
    step), in blocks: a chunk of a million lines is decoded and prefixed in a few C
    calls, not line by line. A line that has no end yet is shown anyway once it is
    older than ``_PARTIAL_LINE_SECONDS`` (see ``flush_stale``).
    """

    def __init__(self, prefix: str) -> None:
        self.prefixes = {"stdout": prefix, "stderr": prefix + "STDERR: "}
        self.partial: dict[str, list[bytes]] = {"stdout": [], "stderr": []}  # a line not ended yet
        self.partial_size = {"stdout": 0, "stderr": 0}
        self.since = {"stdout": 0.0, "stderr": 0.0}  # when the partial line began
        self.ended_in_cr = {"stdout": False, "stderr": False}  # a "\r\n" may be cut in two

    def feed(self, stream: str, data: bytes) -> None:
        if self.ended_in_cr[stream] and data.startswith(b"\n"):
            data = data[1:]
        self.ended_in_cr[stream] = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = data.rfind(b"\n")
        if end >= 0:
            lines, data = data[:end], data[end + 1:]
            if self.partial[stream]:
                lines = self.take_partial(stream) + lines
            self.write(stream, lines)
        if data:
            if not self.partial[stream]:
                self.since[stream] = time.monotonic()
            self.partial[stream].append(data)
            self.partial_size[stream] += len(data)
            if self.partial_size[stream] >= _MAX_CONSOLE_LINE:
                self.write(stream, self.take_partial(stream))

    def flush_stale(self, max_age: float = _PARTIAL_LINE_SECONDS) -> None:
        now = time.monotonic()
        for stream in self.partial:
            if self.partial[stream] and now - self.since[stream] >= max_age:
                self.write(stream, self.take_partial(stream))

    def take_partial(self, stream: str) -> bytes:
        line = b"".join(self.partial[stream])
        self.partial[stream] = []
        self.partial_size[stream] = 0
        return line

    def write(self, stream: str, lines: bytes) -> None:
        """Print ``lines`` (separated by ``\n``, without a final one), each prefixed."""
        prefix = self.prefixes[stream]
        text = lines.decode("utf-8", "replace")
        sys.stdout.write(prefix + text.replace("\n", "\n" + prefix) + "\n")
        sys.stdout.flush()


class _Output:
    """One of the job's pipes, copied as bytes to its log file and, when streaming, to
    the console.

    :param max_bytes: cut the log there (``max_log_bytes``); None: no limit.
    """

    def __init__(self, pipe: BinaryIO, log_fd: int, stream: str, console: _Console | None,
                 max_bytes: int | None) -> None:
        self.pipe_fd = pipe.fileno()
        self.log_fd = log_fd
        self.stream = stream
        self.console = console
        self.limit = max_bytes
        self.room = max_bytes  # bytes the log may still take
        self.cut = False       # the log reached its limit: the job must be stopped
        self.tail = b"\n"     # the end of the log, to end it cleanly and look for errors
        self.failure: OSError | None = None  # the log cannot be written (a full disk?)

    @property
    def log_name(self) -> str:
        return STDOUT_FILE if self.stream == "stdout" else STDERR_FILE

    def read(self) -> bool:
        """Copy what the pipe holds now; False once it is closed."""
        chunk = os.read(self.pipe_fd, _READ_SIZE)
        if not chunk:
            return False
        if self.cut or self.failure is not None:
            return True  # drained, so the job does not block before it is stopped
        if self.room is not None:
            self.cut = len(chunk) > self.room
            chunk = chunk[:self.room]
            self.room -= len(chunk)
        try:
            self.write(chunk)
            if self.cut:
                self.write_line(_LOG_CUT_LINE.format(limit=self.limit))
        except OSError as exc:
            self.failure = exc
        return True

    def write(self, data: bytes) -> None:
        _write_all(self.log_fd, data)
        self.tail = data[-4096:] if len(data) >= 4096 else (self.tail + data)[-4096:]
        if self.console is not None:
            self.console.feed(self.stream, data)

    def write_line(self, line: str) -> None:
        """Add a line of the runner's own, on a line of its own."""
        self.write((b"" if self.tail.endswith(b"\n") else b"\n") + line.encode())


def _job_environment(config: SyftJobConfig, passthrough: Sequence[str] = ()) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name in _INHERITED_ENV or name.startswith(_INHERITED_PREFIXES) or name in passthrough}
    env.setdefault("PATH", os.defpath)
    env.update({
        "SYFTBOX_FOLDER": str(config.syftbox_folder),
        "SYFTBOX_EMAIL": config.email,
        "SYFT_IS_IN_JOB": "true",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # macOS: a group of zombies only
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: where PID 1
    does not reap orphans (some containers) they linger and would hold up the stop."""
    if not _signal_group(pgid, 0):
        return False
    members = _group_members(pgid)
    return members is None or bool(members)  # no /proc (macOS): the signal check is all


def _group_members(pgid: int) -> list[int] | None:
    """The running (not zombie) processes of a group, from /proc; None without /proc."""
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    members = []
    for pid in pids:
        fields = _proc_stat(pid)
        if fields and int(fields[2]) == pgid and fields[0] != b"Z":  # a zombie does not run
            members.append(int(pid))
    return members


def _runs_a_job(pid: int) -> bool:
    """Whether a process was started by a runner: its environment says so."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0SYFT_IS_IN_JOB=true\0" in b"\0" + f.read()
    except OSError:
        return False


def _stop_group(pgid: int, proc: subprocess.Popen | None = None, grace: float = _KILL_GRACE_SECONDS) -> None:
    """TERM a job's whole process group, then KILL what is left after ``grace``.

    :param proc: the group's leader, when this runner started it: it is reaped too.
    """
    if not _signal_group(pgid, signal.SIGTERM):
        if proc is not None:
            proc.wait()
        return
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline:
            if (proc is None or proc.poll() is not None) and not _group_alive(pgid):
                break
            time.sleep(0.02)
    finally:
        _signal_group(pgid, signal.SIGKILL)
        if proc is not None:
            proc.wait()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_stops_jobs() -> Iterator[None]:
    """Make SIGTERM act like Ctrl+C, so a running job's process group is stopped
    rather than left running when the runner is killed. Only where SIGTERM still has
    its default action: a handler the program set itself is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _InterruptLatch:
    """While a job runs, Ctrl+C and SIGTERM are noted here instead of raised wherever
    the main thread happens to be (inside ``Popen``, say, before the job could be
    stopped). The wait loop checks ``pending`` and stops the job cleanly. Only signals
    that would raise KeyboardInterrupt anyway are latched; other handlers stay."""

    _RAISING = (signal.default_int_handler, _raise_keyboard_interrupt)

    def __init__(self) -> None:
        self.pending = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _InterruptLatch:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) in self._RAISING:
                    self.previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.pending and kind is None:
            raise KeyboardInterrupt


def _execute(job: _Job, env: dict[str, str], timeout: float, console: _Console | None,
             limits: _JobLimits = _JobLimits(), on_start: Callable[[int], None] | None = None) -> _JobResult:
    """Run ``bash run.sh`` in the job folder and write its logs; one code path for
    both modes (``console`` is None when not streaming). KeyboardInterrupt stops the
    job's process group and propagates, leaving the job unfinished.

    :param env: the job's whole environment (see ``_job_environment``).
    :param on_start: called with the job's process group id once it runs.
    :returns: how it ended; unless ``error`` is set, returncode.txt is written.
    """
    started = time.monotonic()
    outputs_dir = job.file(OUTPUTS_DIR)  # the claim checked that the job folder is no symlink
    _remove_path(outputs_dir)
    os.mkdir(outputs_dir)
    _remove_path(job.file(DONE_MARKER))
    with contextlib.ExitStack() as stack:
        interrupts = stack.enter_context(_InterruptLatch())
        selector = stack.enter_context(selectors.DefaultSelector())
        proc = subprocess.Popen(
            [_find_bash(env["PATH"]), RUN_SCRIPT], cwd=job.path, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=limits.set_in_child if limits.in_child else None,
        )
        stack.callback(proc.stdout.close)
        stack.callback(proc.stderr.close)
        outputs: dict[str, _Output] = {}
        timed_out = False
        try:  # from here on, whatever happens, the job's process group is stopped
            if on_start is not None:
                on_start(proc.pid)
            # The logs and returncode.txt are made while the job starts (its output
            # waits in the pipes): on a slow disk, making a file costs as much as
            # starting bash.
            for stream, name, pipe in (("stdout", STDOUT_FILE, proc.stdout), ("stderr", STDERR_FILE, proc.stderr)):
                log_fd = _create_fresh(job.file(name))
                stack.callback(os.close, log_fd)
                outputs[stream] = _Output(pipe, log_fd, stream, console, limits.max_log_bytes)
                selector.register(outputs[stream].pipe_fd, selectors.EVENT_READ, outputs[stream])
            returncode_fd = _create_fresh(job.file(RETURNCODE_FILE))
            stack.callback(os.close, returncode_fd)
            exit_fd = _exit_fd(proc.pid)
            if exit_fd is not None:
                stack.callback(os.close, exit_fd)
                selector.register(exit_fd, selectors.EVENT_READ, None)
            deadline = started + timeout
            while proc.poll() is None:
                if interrupts.pending:
                    raise KeyboardInterrupt
                if any(o.failure is not None or o.cut for o in outputs.values()):
                    break  # a log is full, or cannot be written (disk full?)
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                _copy_ready(selector, min(left, 0.1), proc)
                if console is not None:
                    console.flush_stale()
            # Whether it ended or was stopped, nothing the job started outlives it.
            _stop_group(proc.pid, proc)
        except BaseException:
            _stop_group(proc.pid, proc, grace=0.5)
            raise
        finally:
            drain_deadline = time.monotonic() + _PIPE_DRAIN_SECONDS
            while any(key.data is not None for key in selector.get_map().values()):
                left = drain_deadline - time.monotonic()
                if left <= 0:
                    break  # a process that left the session still holds a pipe
                _copy_ready(selector, left, proc)
            if console is not None:
                console.flush_stale(0)
        for output in outputs.values():
            if output.failure is not None:
                return _JobResult(job, -1, error=f"job {job.label} was stopped: cannot write its "
                                                 f"{output.log_name}: {output.failure.strerror or output.failure}")
        result = _JobResult(job, proc.returncode, timed_out=timed_out)
        if timed_out:
            result.returncode = -1
            for output in outputs.values():
                output.console = None
                with contextlib.suppress(OSError):  # a full disk: the log just ends
                    output.write_line(TIMEOUT_LINE.decode())
        else:
            result.over_limit = _limit_reached(outputs, proc.returncode, limits)
            if outputs["stdout"].cut or outputs["stderr"].cut:
                result.returncode = -1
            if result.over_limit and not outputs["stderr"].cut:
                outputs["stderr"].console = None
                outputs["stderr"].write_line(f"syft_job: {result.over_limit}\n")
        _record_returncode(job, result.returncode, returncode_fd)
    return result


@functools.lru_cache(maxsize=None)
def _find_bash(search_path: str) -> str:
    """Where bash is on ``search_path`` (a PATH value), looked up once: starting plain
    "bash" makes the child try each PATH entry in turn, for every job."""
    return shutil.which("bash", path=search_path) or "bash"


def _exit_fd(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux pidfd), so
    the wait for a job is a ``select``, not a sleep loop; None where there is none."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:  # a kernel older than 5.3
        return None


def _copy_ready(selector: selectors.BaseSelector, seconds: float, proc: subprocess.Popen) -> None:
    """Copy what the job's pipes hold, waiting at most ``seconds`` for something to
    happen: output, a closed pipe or, with an exit descriptor, the job's end."""
    if not selector.get_map():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(seconds)  # pipes closed, no exit descriptor: the job is ending
        return
    for key, _ in selector.select(seconds):
        if key.data is None or not key.data.read():
            selector.unregister(key.fd)  # the job exited, or a pipe closed


def _limit_reached(outputs: dict[str, _Output], returncode: int, limits: _JobLimits) -> str | None:
    """Which of the owner's limits the job went over, said for people; None if none."""
    for output in outputs.values():
        if output.cut:
            return (f"its {output.log_name} reached the limit of {limits.max_log_bytes} bytes (max_log_bytes),"
                    " so it was stopped")
    if limits.max_cpu_seconds is not None and returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return f"it used up its CPU time limit of {limits.max_cpu_seconds:g} seconds (max_cpu_seconds)"
    if (limits.max_memory_mb is not None and returncode != 0
            and any(sign in outputs["stderr"].tail for sign in _OUT_OF_MEMORY)):
        return f"it ran out of memory under its limit of {limits.max_memory_mb:g} MB (max_memory_mb)"
    return None


def _finish(job: _Job, returncode: int, claim: _Claim) -> None:
    """Record the return code, then mark the job done."""
    _record_returncode(job, returncode)
    _mark_done(job, claim)


def _record_returncode(job: _Job, returncode: int, fd: int | None = None) -> None:
    """Write returncode.txt. It counts only once ``done`` exists, so it needs no temp
    file; like the logs it is not fsynced (a power cut may lose the last results, a
    runner crash cannot).

    :param fd: the file made, empty, while the job ran (to keep file creation off the
        path from one job to the next); used if it is still the one at that path.
    """
    path = job.file(RETURNCODE_FILE)
    if fd is not None and not _same_file(fd, path):
        fd = None  # the job replaced it
    own = fd is None
    if own:
        fd = _create_fresh(path)
    try:
        _write_all(fd, f"{returncode}\n".encode())
    finally:
        if own:
            os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def _mark_done(job: _Job, claim: _Claim) -> None:
    """Rename this runner's claim to ``done``: one atomic step after which the job
    never runs again, and ``done`` keeps the claim's record of who ran it."""
    try:
        os.replace(claim.path, job.file(DONE_MARKER))
    except FileNotFoundError:  # the claim was deleted by hand meanwhile
        os.close(_create_fresh(job.file(DONE_MARKER)))
    _held_claims.discard(claim.path)


def _fail_job(job: _Job, reason: str, claim: _Claim) -> None:
    """Finish a job that could not run: the reason goes into its stderr.txt (if the
    disk still takes it)."""
    with contextlib.suppress(OSError):
        _append_bytes(job.file(STDERR_FILE), f"syft_job: {reason}\n".encode())
    _finish(job, -1, claim)


# ---------------------------------------------------------------------------
# Sharing: syft.pub.yaml rules that keep results private until the owner shares
# ---------------------------------------------------------------------------
#
# For a path, SyftBox uses only the nearest syft.pub.yaml above it, and in it the
# most specific matching pattern. The usual submitter folder grants the submitter
# write on "**". We add more specific rules to that same file:
#
#   */stdout.txt, */stderr.txt,
#   */returncode.txt, */outputs/**      nobody           (private until shared)
#   */approved, */done                  read: submitter  (only where it could write:
#                                                         it sees status, cannot set it)
#   <job>/stdout.txt ... when shared    read: submitter  (two literal segments win)
#   <job>/outputs/**     when shared    read: submitter
#
# A job folder with its own syft.pub.yaml gets the same rules without the "*/".

_LOG_FILES = (STDOUT_FILE, STDERR_FILE, RETURNCODE_FILE)
_PRIVATE_NAMES = _LOG_FILES + (f"{OUTPUTS_DIR}/**",)
_STATUS_NAMES = (APPROVED_MARKER, DONE_MARKER)
_LEVELS = ("read", "write", "admin")  # each includes the ones before it
_GLOB_SPECIAL = re.compile(r"([*?\[\]{}\\])")


def _glob_escape(name: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", name)


def _rule(pattern: str, read: Sequence[str] = (), write: Sequence[str] = ()) -> dict:
    return {"pattern": pattern, "access": {"admin": [], "read": list(read), "write": list(write)}}


def _access(rule: Any, level: str) -> list:
    access = rule.get("access") if isinstance(rule, dict) else None
    users = access.get(level) if isinstance(access, dict) else None
    return users if isinstance(users, list) else []


# The syft.pub.yaml files this process last read or wrote, by path: (identity, data,
# header). A submitter's file grows with every shared job; reading it again for each
# job would cost more and more as jobs pile up. An entry is taken out while its file is
# edited, and put back only once the edit is written.
_permission_files: dict[str, tuple[tuple[int, int, int], dict, str]] = {}
_MAX_PERMISSION_BYTES = 16 * 1024 * 1024


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever a file is replaced or written: inode, size, mtime."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _load_permissions(path: Path) -> tuple[dict, str]:
    """A syft.pub.yaml as ``(data, leading comment lines)``; an empty one if missing."""
    if not os.path.lexists(path):
        return {"terminal": False, "rules": []}, ""
    if path.is_symlink():
        raise JobError(f"{path}: is a symlink; refusing to edit permissions through it")
    known = _permission_files.pop(str(path), None)
    if known is not None and known[0] == _file_identity(path):
        return known[1], known[2]
    try:
        text = _read_file(path, _MAX_PERMISSION_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise YAMLError(f"{path}: is not UTF-8 text") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict) or not isinstance(data.get("rules") or [], list):
        raise YAMLError(f"{path}: not a SyftBox permission file (expected a 'rules:' list)")
    data.setdefault("terminal", False)
    data["rules"] = data.get("rules") or []
    comments = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        comments.append(line)
    header = "\n".join(comments).strip("\n")
    return data, header + "\n" if header else ""


def _may_write(data: dict, user: str) -> bool:
    """Whether any rule of a permission file lets ``user`` write somewhere."""
    domain = "*@" + user.partition("@")[2]  # a folder not named like an email: no domain
    return any(u in (user, "*", domain)
               for rule in data["rules"] for level in ("write", "admin") for u in _access(rule, level))


def _edit_permissions(path: Path, submitter: str, prefix: str,
                      shared: Sequence[str] = (), write_everywhere: bool = False) -> bool:
    """Bring one syft.pub.yaml up to date: the protections for ``submitter``'s jobs, and
    read access for it on ``shared`` patterns. Existing rules are kept: a rule that
    already has a pattern we want is left alone, except that a shared pattern gets
    ``submitter`` added to its readers. Returns whether the file changed.

    :param path: the file (created if missing, changed atomically).
    :param prefix: put before every pattern: ``"*/"`` in a submitter folder, ``""`` in a
        job folder.
    :param shared: patterns the submitter may now read.
    :param write_everywhere: also grant the submitter write on ``**`` (a new submitter).
    """
    with _folder_lock(path.parent):
        return _edit_locked_permissions(path, submitter, prefix, shared, write_everywhere)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on a folder while a file in it is read and rewritten: of
    two runners editing one syft.pub.yaml, neither loses the other's rules. Locking
    the folder itself leaves no lock file for SyftBox to sync."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    try:
        with contextlib.suppress(OSError):  # a file system without locks: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _edit_locked_permissions(path: Path, submitter: str, prefix: str,
                             shared: Sequence[str], write_everywhere: bool) -> bool:
    data, header = _load_permissions(path)
    rules = data["rules"]
    by_pattern = {r.get("pattern"): r for r in rules if isinstance(r, dict)}
    wanted: list[tuple[str, list[str], list[str]]] = []  # (pattern, read, write)
    if write_everywhere:
        wanted.append(("**", [], [submitter]))
    wanted += [(prefix + name, [], []) for name in _PRIVATE_NAMES]
    if write_everywhere or _may_write(data, submitter):
        wanted += [(prefix + name, [submitter], []) for name in _STATUS_NAMES]
    wanted += [(pattern, [submitter], []) for pattern in shared]
    added = []
    changed = not os.path.lexists(path)
    for pattern, read, write in wanted:
        rule = by_pattern.get(pattern)
        if rule is None:
            rule = by_pattern[pattern] = _rule(pattern, read, write)
            added.append(rule)
            continue
        for level, users in (("read", read), ("write", write)):
            at_least = _LEVELS[_LEVELS.index(level):]
            if users and not any(submitter in _access(rule, higher) for higher in at_least):
                if not isinstance(rule.get("access"), dict):
                    rule["access"] = {}
                rule["access"][level] = _access(rule, level) + [submitter]
                changed = True
    if added:
        # Specific rules go first, as people write them by hand; order does not
        # change their meaning (the most specific pattern wins).
        data["rules"] = [r for r in added if r["pattern"] != "**"] + rules + [r for r in added if r["pattern"] == "**"]
        changed = True
    if changed:
        _atomic_write(path, (header + dump_yaml(data)).encode("utf-8"))
    identity = _file_identity(path)
    if identity is not None:
        _permission_files[str(path)] = (identity, data, header)
    return changed


def _governing_file(job: _Job) -> tuple[Path, str]:
    """The syft.pub.yaml that decides access to a job's files, and the pattern prefix
    that addresses the job in it."""
    own = job.path / PERMISSION_FILE
    if os.path.lexists(own):
        return own, ""
    return job.path.parent / PERMISSION_FILE, _glob_escape(job.name) + "/"


def _protect_folder(folder: Path, submitter: str, prefix: str) -> bool:
    """Add the protections to ``folder``'s syft.pub.yaml, if it has one (with no file
    there, the file above decides, and the owner's own files are not ours to edit).

    :param prefix: ``"*/"`` for a submitter folder, ``""`` for a job folder.
    """
    path = folder / PERMISSION_FILE
    if not path.is_file() or path.is_symlink():
        return False
    return _edit_permissions(path, submitter, prefix)


def _protect(job: _Job) -> bool:
    """Add the protections to the file that governs ``job``."""
    if os.path.lexists(job.path / PERMISSION_FILE):
        return _protect_folder(job.path, job.submitter, "")
    return _protect_folder(job.path.parent, job.submitter, "*/")


def _share(job: _Job, share_outputs: bool, share_logs: bool) -> None:
    """Grant the submitter read access to a finished job's outputs and/or logs."""
    if job.status != "done":
        raise JobError(f"job {job.label} is not done yet ({job.status}); there is nothing to share")
    outputs = job.path / OUTPUTS_DIR
    if share_outputs and os.path.lexists(outputs) and not _real_folder(outputs):
        raise JobError(f"the {OUTPUTS_DIR}/ of job {job.label} is not a folder (the job replaced it with "
                       "a symlink or a file?); nothing shared")
    path, prefix = _governing_file(job)
    shared = [prefix + name for name in _LOG_FILES] if share_logs else []
    outputs_file = job.path / OUTPUTS_DIR / PERMISSION_FILE
    if share_outputs and os.path.lexists(outputs_file):
        # A file in outputs/ (written by the reference runner) decides for outputs/.
        _edit_permissions(outputs_file, job.submitter, "", shared=["**"])
    elif share_outputs:
        shared.append(f"{prefix}{OUTPUTS_DIR}/**")
    if shared:
        _edit_permissions(path, job.submitter, "*/" if prefix else "", shared=shared)


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

_RULE = "=" * 50
_THIN_RULE = "-" * 50


@dataclasses.dataclass(frozen=True)
class _RunOptions:
    """How to run jobs: the arguments of ``process_approved_jobs()`` and ``run()``."""

    stream_output: bool = True
    timeout: float | None = None  # None: $SYFT_DEFAULT_JOB_TIMEOUT_SECONDS, else 300
    skip_job_names: tuple[str, ...] = ()
    share_outputs: bool = False
    share_logs: bool = False


class _JobCannotRun(Exception):
    """A job that is finished without running (no run.sh, unreadable config)."""


def _script_preview(path: Path, max_lines: int = 5) -> str:
    """The first lines of a script as bash reads them (only ``\n`` ends a line), with
    control characters escaped: what the owner reviews is what runs."""
    if not os.path.lexists(path):
        return f"(no {RUN_SCRIPT})"
    try:
        head = _read_file(path, 64 * 1024, truncate=True)
    except SyftJobError as exc:
        return f"❌ {exc}"
    lines = head.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    shown = [f"{i}: {_printable(line)}" for i, line in enumerate(lines[:max_lines], 1)]
    if len(lines) > max_lines or len(head) == 64 * 1024:
        shown.append("... (more lines)")
    return "\n".join(shown) if shown else "(empty)"


def _config_display_items(config: dict) -> list[tuple[Any, str]]:
    """A job's settings to show: name, submitter and time first, then the others."""
    first = [k for k in ("name", "submitted_by", "submitted_at") if k in config]
    rest = sorted((k for k in config if k not in first), key=str)
    items = []
    for key in first + rest:
        value = config[key]
        if isinstance(value, (list, tuple)):
            shown = ", ".join(str(v) for v in value)
        elif isinstance(value, (bool, int, float)):
            shown = _dump_scalar(value)  # as the file says it: true, not True
        else:
            shown = "" if value is None else str(value)
        items.append((_printable(str(key)), _printable(shown)))
    return items


class SyftJobRunner:
    """Watches an owner's job directory, runs approved jobs and shares their results.

    :param config: the owner's configuration.
    :param poll_interval: seconds between two polls in :meth:`run`.
    :param require_approval_digest: strict mode: run only jobs approved through this
        module (:meth:`approve_job`) whose files have not changed since. Otherwise an
        empty ``approved`` marker, as other SyftBox tools write, is enough.
    :param env_passthrough: names of environment variables that jobs also get. Jobs
        otherwise get only PATH, HOME, LANG, LC_*, TMPDIR, TZ, USER, UV_* and the
        SyftBox variables.
    :param max_memory_mb: address space limit of each process of a job.
    :param max_cpu_seconds: CPU time limit of each process of a job.
    :param max_log_bytes: size limit of each log; a job that writes more is stopped.
    """

    def __init__(self, config: SyftJobConfig, poll_interval: float = 5, *,
                 require_approval_digest: bool = False, env_passthrough: Sequence[str] = (),
                 max_memory_mb: float | None = None, max_cpu_seconds: float | None = None,
                 max_log_bytes: int | None = None) -> None:
        self.config = config
        self.poll_interval = _positive_seconds(poll_interval, "poll_interval")
        self.require_approval_digest = require_approval_digest
        if isinstance(env_passthrough, str):
            env_passthrough = [env_passthrough]
        self.limits = _JobLimits(tuple(env_passthrough), max_memory_mb, max_cpu_seconds, max_log_bytes)
        self.job_dir = config.get_job_dir(config.email)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self._scanner = _JobScanner(self.job_dir)
        self._known_jobs: set[str] = set()
        self._protected: set[str] = set()  # submitters and inbox jobs already protected
        self._abandoned_jobs: set[str] = set()  # could not even be marked done
        self._held_back: dict[str, str] = {}  # job key -> why it is not run (said once)

    # -- discovery -----------------------------------------------------------

    def _jobs(self) -> list[_Job]:
        """One scan of the job directory (a poll makes one, and passes it on)."""
        jobs = self._scanner.scan()
        self._protect_new(jobs)
        return jobs

    def _protect_new(self, jobs: list[_Job]) -> None:
        """Protect each submitter folder the first time it is seen, and each inbox job
        that has a syft.pub.yaml of its own: no submitter approves its own job."""
        for job in jobs:
            if job.submitter not in self._protected:
                self._protected.add(job.submitter)
                self._try_protect(job.key, _protect_folder, job.path.parent, job.submitter, "*/")
            if job.status == "inbox" and job.key not in self._protected:
                self._protected.add(job.key)
                self._try_protect(job.key, _protect_folder, job.path, job.submitter, "")

    def _try_protect(self, key: str, protect: Callable[..., bool], *args: Any) -> None:
        try:
            protect(*args)
        except (OSError, SyftJobError) as exc:
            print(f"⚠️ Cannot protect the results of {_printable(key)}: {exc}")

    def check_for_new_jobs(self) -> None:
        """Print every inbox job not seen before, with a preview of its script and config."""
        self._announce(self._jobs())

    def _announce(self, jobs: list[_Job]) -> None:
        for job in jobs:
            if job.status != "inbox" or job.key in self._known_jobs:
                continue
            self._known_jobs.add(job.key)
            self._print_job(job)

    def _print_job(self, job: _Job) -> None:
        print(f"🔔 NEW JOB DETECTED: {job.label}")
        print(f"📁 Location: {job.where}")
        print("📝 Script preview:")
        print(_script_preview(job.path / RUN_SCRIPT))
        print("⚙️ Config:")
        try:
            config = job.read_config()
        except SyftJobError as exc:
            print(f"❌ {exc}")
        else:
            for key, value in _config_display_items(config):
                print(f"{key}: {value}")
        print(_THIN_RULE)

    # -- execution -----------------------------------------------------------

    def process_approved_jobs(
        self,
        stream_output: bool = True,
        timeout: float | None = None,
        skip_job_names: Sequence[str] | None = None,
        share_outputs_with_submitter: bool = False,
        share_logs_with_submitter: bool = False,
    ) -> None:
        """Run every approved job that is not done yet, one after another.

        :param stream_output: print the job's output live, prefixed per line.
        :param timeout: seconds per job; default $SYFT_DEFAULT_JOB_TIMEOUT_SECONDS or 300.
        :param skip_job_names: job names, or ``submitter/name``, to leave alone.
        :param share_outputs_with_submitter: share ``outputs/`` after each job.
        :param share_logs_with_submitter: share the logs after each job.
        """
        self._process(_RunOptions(stream_output, timeout, tuple(skip_job_names or ()),
                                  share_outputs_with_submitter, share_logs_with_submitter))

    def _process(self, options: _RunOptions, jobs: list[_Job] | None = None) -> list[_JobResult]:
        """One round over the approved jobs; the results of those that ran here.

        :param jobs: this poll's scan, if the caller made one already.
        """
        seconds = _resolve_timeout(options.timeout)
        skip = set(options.skip_job_names)
        jobs = [j for j in (self._jobs() if jobs is None else jobs)
                if j.status in ("approved", "running") and j.name not in skip and j.key not in skip
                and j.key not in self._abandoned_jobs]
        results: list[_JobResult] = []
        env = _job_environment(self.config, self.limits.env_passthrough)
        with _sigterm_stops_jobs():
            for job in jobs:
                claim = self._claim(job)
                if claim is None:
                    continue
                if not results:
                    print(f"📋 Found {len(jobs)} job(s) in approved directory")
                    print(_RULE)
                result = self._run_claimed(job, claim, options.stream_output, seconds, env)
                if result is None:
                    continue
                results.append(result)
                if (options.share_outputs or options.share_logs) and result.job.status == "done":
                    try:
                        self._share_and_report(result.job, options.share_outputs, options.share_logs)
                    except (OSError, SyftJobError) as exc:
                        print(f"❌ Could not share the results of {job.label}: {exc}")
                print(_RULE)
        if results:
            print(f"✅ Processed {len(results)} job(s)")
        return results

    def _hold_back(self, job: _Job, why: str) -> None:
        """Say once why a job is not run now; it is looked at again at each poll."""
        if self._held_back.get(job.key) != why:
            self._held_back[job.key] = why
            print(f"⏸️ Job {job.label} is not run: {why}")

    def _claim(self, job: _Job) -> _Claim | None:
        """Claim a job for this runner, or None: another runner has it, or it cannot be
        claimed (a read-only or full disk); said once."""
        try:
            claim, holder = _take_claim(job)
        except (OSError, SyftJobError) as exc:
            self._hold_back(job, f"cannot claim it: {exc}")
            return None
        if holder and holder.get("host") != socket.gethostname():
            self._hold_back(job, f"a runner on {_printable(str(holder.get('host')))} (pid {holder['pid']}) "
                                 f"claimed it at {holder.get('claimed_at')}; if that runner is gone, delete "
                                 f"{_printable(job.file(CLAIM_FILE))}")
        return claim

    def _run_claimed(self, job: _Job, claim: _Claim, stream_output: bool, timeout: float,
                     env: dict[str, str]) -> _JobResult | None:
        """Run a job this runner has claimed, and release the claim whatever happens;
        None when it turned out not to need running."""
        try:
            if os.path.lexists(job.file(DONE_MARKER)) or not os.path.lexists(job.file(APPROVED_MARKER)):
                return None  # finished, or approval withdrawn, since the scan
            if 1 < claim.attempt <= _MAX_ATTEMPTS:
                print(f"🔁 Job {job.label} was interrupted (the runner stopped while it ran); "
                      f"attempt {claim.attempt} of {_MAX_ATTEMPTS}")
            problem = None if claim.attempt > _MAX_ATTEMPTS else _approval_problem(job, self.require_approval_digest)
            if problem:
                command = f"syft-job approve {shlex.quote(job.name)} --user {shlex.quote(job.submitter)}"
                self._hold_back(job, f"{problem}. Review it, then approve it again: {_printable(command)}")
                return None
            self._held_back.pop(job.key, None)
            return self._run_job(job, claim, stream_output, timeout, env)
        except (OSError, SyftJobError) as exc:
            self._hold_back(job, f"cannot check its approval: {exc}")
            return None
        finally:
            with contextlib.suppress(OSError):
                _release(claim)

    def _run_job(self, job: _Job, claim: _Claim, stream_output: bool, timeout: float,
                 env: dict[str, str]) -> _JobResult:
        """Execute one job and finish it; any failure is recorded in the job, never raised
        (except KeyboardInterrupt, which leaves the job approved for the next start)."""
        print(f"🚀 Executing job: {_printable(job.name)}")
        print(f"📁 Job directory: {job.where}")
        try:
            if claim.attempt > _MAX_ATTEMPTS:
                raise _JobCannotRun(f"job {job.label} was interrupted {_MAX_ATTEMPTS} times (the runner was "
                                    "killed or the machine stopped while it ran); it is not run again")
            try:
                script_mode = os.lstat(job.file(RUN_SCRIPT)).st_mode
            except FileNotFoundError:
                raise _JobCannotRun(f"job {job.label} has no {RUN_SCRIPT} in {job.where}") from None
            if not stat.S_ISREG(script_mode):
                raise _JobCannotRun(f"job {job.label} was not run: its {RUN_SCRIPT} is a symlink or not a file")
            try:
                job.read_config()
            except SyftJobError as exc:
                raise _JobCannotRun(f"job {job.label} was not run: {exc}") from None
            self._try_protect(job.key, _protect, job)
            console = _Console(f"[{self.config.email}][{_printable(job.name)}] ") if stream_output else None
            result = _execute(job, env, timeout, console, self.limits,
                              on_start=lambda pgid: _note_process_group(claim, pgid))
            if not result.error:
                _mark_done(job, claim)
        except _JobCannotRun as exc:
            result = _JobResult(job, -1, error=str(exc))
        except Exception as exc:  # a runner-side failure: record it, go on
            logger.exception("runner error in job %s", job.label)
            result = _JobResult(job, -1, error=f"runner error in job {job.label}: {type(exc).__name__}: {exc}")
        name = _printable(job.name)
        if result.error:
            print(f"❌ {result.error}")
            try:
                _fail_job(job, result.error, claim)
            except (OSError, SyftJobError) as exc:
                print(f"❌ Cannot mark job {job.label} as done either ({exc}); skipping it until restart")
                self._abandoned_jobs.add(job.key)
                return result
        result.job = dataclasses.replace(job, status="done")
        if result.timed_out:
            print(f"⏰ Job {name} timed out after {timeout:g} seconds (return code -1)")
        elif result.over_limit:
            print(f"❌ Job {name} failed: {result.over_limit} (return code {result.returncode})")
        elif result.succeeded:
            print(f"✅ Job {name} completed successfully")
            print(f"📄 Output written to {STDOUT_FILE}")
        elif not result.error:
            print(f"❌ Job {name} failed with return code {result.returncode}")
            print(f"📄 Output written to {STDOUT_FILE} and {STDERR_FILE}")
        return result

    # -- sharing -------------------------------------------------------------

    def _find_job(self, job_name: str, user: str | None = None) -> _Job:
        """The one job named ``job_name`` (of ``user``, or of any submitter)."""
        if user is not None:
            candidates = [self.job_dir / _check_email(user) / _check_folder_name(job_name, "job name")]
        else:
            _check_folder_name(job_name, "job name")
            candidates = [Path(s.path) / job_name for s in _sorted_subfolders(self.job_dir)]
        found = [_Job(str(p), p.parent.name, p.name, _job_status(p)) for p in candidates
                 if _real_folder(p) and os.path.isfile(p / CONFIG_FILE)]
        if not found:
            where = f"from {user}" if user else "from any submitter"
            raise JobNotFoundError(f"no job named {job_name!r} {where} in {self.job_dir}")
        if len(found) > 1:
            owners = ", ".join(_printable(j.submitter) for j in found)
            raise JobError(f"several jobs are named {job_name!r} (submitted by {owners}); pass user=...")
        return found[0]

    def share_job_results(self, job_name: str, share_outputs: bool = True,
                          share_logs: bool = True, user: str | None = None) -> None:
        """Let the submitter read the results of a finished job.

        :param job_name: the job's name (its folder name).
        :param share_outputs: grant read on the job's ``outputs/``.
        :param share_logs: grant read on ``stdout.txt``, ``stderr.txt``, ``returncode.txt``.
        :param user: the submitter; None searches every submitter's folder.
        :raises JobNotFoundError: no such job. :raises JobError: several, or not done.
        """
        self._share_and_report(self._find_job(job_name, user), share_outputs, share_logs)

    def _share_and_report(self, job: _Job, share_outputs: bool, share_logs: bool) -> None:
        _share(job, share_outputs, share_logs)
        what = " and ".join(w for w, on in (("outputs", share_outputs), ("logs", share_logs)) if on)
        if what:
            print(f"🔓 Shared {what} of {job.label} with {_printable(job.submitter)}")

    # -- review --------------------------------------------------------------

    def approve_job(self, job_name: str, user: str | None = None) -> Path:
        """Approve a job (again, after a change): its ``approved`` marker records the
        sha256 of each submitted file, and the job runs only while they stay the same.

        :param job_name: the job's name (its folder name).
        :param user: the submitter; None searches every submitter's folder.
        :returns: the job's folder.
        :raises JobNotFoundError: no such job. :raises JobError: several, or done.
        """
        job = self._find_job(job_name, user)
        if job.status == "done":
            raise JobError(f"job {job.label} is already done")
        if job.status == "running":
            raise JobError(f"job {job.label} is running; approve it again once it is done, if needed")
        _atomic_write(job.path / APPROVED_MARKER, _approval_record(job, self.config.email))
        self._held_back.pop(job.key, None)
        return job.path

    def add_submitter(self, email: str) -> Path:
        """Let ``email`` submit jobs here: its folder, with a syft.pub.yaml that grants
        it write on its submissions and keeps results private until shared.

        :returns: the submitter's folder.
        """
        folder = self.job_dir / _check_email(email)
        folder.mkdir(exist_ok=True)
        _edit_permissions(folder / PERMISSION_FILE, email, "*/", write_everywhere=True)
        self._protected.add(email)
        return folder

    # -- the loop ------------------------------------------------------------

    def run(
        self,
        stream_output: bool = True,
        timeout: float | None = None,
        skip_job_names: Sequence[str] | None = None,
        share_outputs_with_submitter: bool = False,
        share_logs_with_submitter: bool = False,
    ) -> None:
        """Poll forever: print new jobs, run approved ones. Returns on Ctrl+C or SIGTERM,
        after stopping a running job (which stays approved and runs again next start).
        The arguments are those of :meth:`process_approved_jobs`.

        Several runners may watch one job directory: each job runs in only one of them.

        :raises SyftJobError: a bad timeout.
        """
        self._run(_RunOptions(stream_output, timeout, tuple(skip_job_names or ()),
                              share_outputs_with_submitter, share_logs_with_submitter))

    def _run(self, options: _RunOptions) -> None:
        _resolve_timeout(options.timeout)  # a bad timeout fails now, not at the first job
        with _sigterm_stops_jobs():
            try:
                self._print_banner()
                while True:
                    try:
                        jobs = self._jobs()
                        self._announce(jobs)
                        self._process(options, jobs)
                    except Exception as exc:  # never let one bad poll end the loop
                        logger.exception("poll failed")
                        print(f"❌ Poll failed: {type(exc).__name__}: {exc}")
                    time.sleep(self.poll_interval)
            except KeyboardInterrupt:
                print("\n🛑 SyftJob Runner stopped")

    def _print_banner(self) -> None:
        print(f"🚀 SyftJob Runner started: version: {__version__}")
        print(f"👤 Monitoring jobs for: {self.config.email}")
        print(f"📂 Job directory: {self.job_dir}")
        print(f"⏱️ Poll interval: {self.poll_interval:g} seconds")
        print("⏹️ Press Ctrl+C to stop")
        print(_RULE)
        jobs = self._jobs()
        if not jobs:
            print("📭 No existing jobs found")
            return
        counts = {s: sum(1 for j in jobs if j.status == s) for s in _STATUSES}
        print(f"📋 Found {len(jobs)} existing job(s): "
              + ", ".join(f"{counts[s]} {s}" for s in _STATUSES))
        for job in jobs:
            if job.status == "inbox":
                print(f"- {job.label} (waiting for review)")
                self._known_jobs.add(job.key)

    # -- reset ---------------------------------------------------------------

    def reset_all_jobs(self) -> None:
        """Delete every job of every submitter. Submitter folders and their
        syft.pub.yaml stay, so submitters can still submit. Cannot be undone.

        :raises SyftJobError: a runner is running one of the jobs.
        """
        running = [j.label for j in _scan_jobs(self.job_dir) if _live_status(j) == "running"]
        if running:
            raise SyftJobError(f"a runner is running {', '.join(running)} in {self.job_dir}; "
                               "stop it before a reset")
        self._reset()

    def _reset(self) -> None:
        jobs = _scan_jobs(self.job_dir)
        print(f"🔄 RESETTING ALL JOBS for {self.config.email}")
        print(f"📁 Target directory: {self.job_dir}")
        counts = {}
        for status in _STATUSES:
            of_status = [j for j in jobs if j.status == status]
            counts[status] = len(of_status)
            if of_status:
                print(f"📋 Found {len(of_status)} jobs in {status}:")
                for job in of_status:
                    print(f"- {job.label}")
        print(f"⚠️ WARNING: This will permanently delete {len(jobs)} jobs!")
        print("This action cannot be undone.")
        print(f"🗑️ Deleting job directory: {self.job_dir}")
        for submitter in _sorted_subfolders(self.job_dir):
            with os.scandir(submitter.path) as entries:
                for entry in list(entries):
                    if entry.name != PERMISSION_FILE:
                        _remove_path(Path(entry.path))
        print("📁 Recreating job folder structure...")
        self.job_dir.mkdir(parents=True, exist_ok=True)
        print("✅ Job reset completed successfully!")
        print("📊 Summary:")
        print(f"- Deleted {len(jobs)} jobs total")
        for status in _STATUSES:
            if counts[status]:
                print(f"- {status}: {counts[status]} jobs deleted")
        print("- Clean job directory recreated")


def create_runner(syftbox_folder_path: str | os.PathLike, email: str, poll_interval: float = 5,
                  **settings: Any) -> SyftJobRunner:
    """Build a runner for the datasite of ``email`` in a SyftBox folder.

    :param syftbox_folder_path: the SyftBox folder; ``~`` is expanded.
    :param email: the data owner's email.
    :param poll_interval: seconds between polls in ``run()``.
    :param settings: ``require_approval_digest``, ``env_passthrough``, ``max_memory_mb``,
        ``max_cpu_seconds``, ``max_log_bytes``: see :class:`SyftJobRunner`.
    """
    return SyftJobRunner(SyftJobConfig.from_syftbox_folder(syftbox_folder_path, email), poll_interval, **settings)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

_FOLDER_ENV_VAR = "SYFTBOX_FOLDER"
_EMAIL_ENV_VAR = "SYFTBOX_EMAIL"
_CLIENT_CONFIG_ENV_VAR = "SYFTBOX_CLIENT_CONFIG_PATH"
_CLIENT_CONFIG_DEFAULT = "~/.syftbox/config.json"


class _UsageError(SyftJobError):
    """A mistake on the command line: one line of explanation, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake prints one line instead of the whole usage."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _env(name: str) -> str | None:
    """An environment variable; empty counts as unset."""
    return os.environ.get(name) or None


def _client_config() -> tuple[str | None, str | None]:
    """``(SyftBox folder, email)`` from the SyftBox client's config.json, if there is one."""
    path = Path(_env(_CLIENT_CONFIG_ENV_VAR) or _CLIENT_CONFIG_DEFAULT).expanduser()
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _UsageError(f"cannot read the SyftBox client config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise _UsageError(f"the SyftBox client config {path} is not a JSON object")
    folder = data.get("data_dir") or None
    if folder:
        datasites = Path(folder).expanduser() / "datasites"
        folder = str(datasites) if datasites.is_dir() else folder
    return folder, data.get("email") or None


def _datasite(args: argparse.Namespace) -> SyftJobConfig:
    """Which datasite: the flags, else the environment, else the SyftBox client config."""
    folder = getattr(args, "syftbox_folder", None) or _env(_FOLDER_ENV_VAR)
    email = getattr(args, "email", None) or _env(_EMAIL_ENV_VAR)
    if not folder or not email:
        config_folder, config_email = _client_config()
        folder, email = folder or config_folder, email or config_email
    if not folder:
        raise _UsageError(f"no SyftBox folder given: pass --syftbox-folder PATH (or set {_FOLDER_ENV_VAR})")
    if not email:
        raise _UsageError(f"no email given: pass --email EMAIL (or set {_EMAIL_ENV_VAR})")
    return SyftJobConfig.from_syftbox_folder(folder, email)


def _count_arg(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _positive_arg(kind: type) -> Callable[[str], Any]:
    """An argparse type: a positive ``kind`` (int or float)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            what = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive {what}")
        return value
    return parse


def _seconds_arg(text: str) -> float:
    try:
        return _positive_seconds(text, "the value")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def _job_rows(runner: SyftJobRunner) -> list[dict]:
    rows = []
    for job in _scan_jobs(runner.job_dir):
        try:
            submitted = job.read_config().get("submitted_at", "")
        except SyftJobError:
            submitted = "(unreadable config.yaml)"
        rows.append({"job": job.name, "submitter": job.submitter, "status": _live_status(job),
                     "submitted_at": str(submitted or ""), "returncode": _returncode(job),
                     "path": str(job.path)})
    return rows


def _returncode(job: _Job) -> int | None:
    try:
        return int(_read_file(job.file(RETURNCODE_FILE), 64))
    except (SyftJobError, ValueError):
        return None


def _print_table(rows: list[dict]) -> None:
    columns = [("JOB", "job"), ("SUBMITTER", "submitter"), ("STATUS", "status"),
               ("SUBMITTED", "submitted_at"), ("RC", "returncode")]
    cells = [[h for h, _ in columns]] + [["" if r[k] is None else _printable(str(r[k])) for _, k in columns]
                                         for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a (possibly huge) log, read from its end."""
    if not os.path.lexists(path):
        return "(none)"
    try:
        with os.fdopen(_open_regular(path), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
            data = f.read(64 * 1024)
    except (OSError, SyftJobError) as exc:
        return f"({exc})"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(_printable(line) for line in text) if text else "(empty)"


def _runner_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The SyftJobRunner settings given by the run/once flags."""
    if not hasattr(args, "strict"):
        return {}
    return {"require_approval_digest": args.strict, "env_passthrough": args.pass_env,
            "max_memory_mb": args.max_memory, "max_cpu_seconds": args.max_cpu,
            "max_log_bytes": args.max_log_size}


def _run_options(args: argparse.Namespace) -> _RunOptions:
    return _RunOptions(not args.no_stream, args.timeout, tuple(args.skip or ()),
                       args.share_outputs, args.share_logs)


def _cmd_run(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    runner.poll_interval = args.poll_interval
    runner._run(_run_options(args))
    return 0


def _cmd_once(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    jobs = runner._jobs()
    runner._announce(jobs)
    results = runner._process(_run_options(args), jobs)
    if not results:
        print("📭 No approved jobs to run")
    return 1 if any(not r.succeeded for r in results) else 0


def _cmd_list(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    rows = _job_rows(runner)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        _print_table(rows)
    else:
        print(f"📭 No jobs in {runner.job_dir}")
    return 0


def _cmd_show(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    job = runner._find_job(args.job, args.user)
    print(f"Job:       {job.label}")
    print(f"Status:    {_live_status(job)}")
    print(f"Folder:    {job.where}")
    try:
        print("Config:\n" + "".join(f"  {k}: {v}\n" for k, v in _config_display_items(job.read_config())), end="")
    except SyftJobError as exc:
        print(f"Config:    ❌ {exc}")
    if _returncode(job) is not None:
        print(f"Return code: {_returncode(job)}")
    for name in (STDOUT_FILE, STDERR_FILE):
        print(f"--- {name} (last {args.lines} lines) ---")
        print(_tail(job.path / name, args.lines))
    return 0


def _cmd_approve(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    job = runner._find_job(args.job, args.user)
    if job.status in ("done", "running"):
        print(f"Job {job.label} is already {job.status}")
        return 0
    runner.approve_job(job.name, job.submitter)
    again = "Approved again" if job.status == "approved" else "Approved"
    print(f"✅ {again} {job.label}, with a digest of its files: it runs at the next poll of the runner,")
    print("   unless its files change before then")
    return 0


def _cmd_share(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    if not args.outputs and not args.logs:
        raise _UsageError("say what to share: --outputs, --logs, or both")
    runner.share_job_results(args.job, args.outputs, args.logs, user=args.user)
    return 0


def _cmd_add_submitter(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    folder = runner.add_submitter(args.submitter_email)
    print(f"✅ {args.submitter_email} can submit jobs into {folder}")
    print("   (its results stay private until you share them)")
    return 0


def _cmd_reset(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise _UsageError("reset deletes every job; without a terminal to confirm, pass --yes")
        answer = input(f"Delete every job in {runner.job_dir}? Type 'yes' to confirm: ")
        if answer.strip().lower() != "yes":
            print("Nothing deleted.")
            return 1
    runner.reset_all_jobs()
    return 0


_DEMO_OWNER = "do@example.com"
_DEMO_SUBMITTER = "ds@example.com"
_DEMO_ANALYSIS = """\
echo "Counting the words of the owner's private data..."
printf 'the quick brown fox\\njumps over the lazy dog\\n' | wc -w | tr -d ' ' > outputs/word_count.txt
echo "Result written to outputs/word_count.txt"
"""
_DEMO_FAILING = """\
echo "Looking for a file that is not there..."
cat missing.csv
"""
_DEMO_PYTHON = 'print("hello from a Python job")\n'


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.folder:
        folder = Path(args.folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise _UsageError(f"the demo needs an empty folder, and {folder} is not empty")
    else:
        folder = Path(tempfile.mkdtemp(prefix="syft-job-demo-"))
    print(f"🧪 Demo SyftBox folder: {folder}")
    print(f"   data owner: {_DEMO_OWNER}   data scientist: {_DEMO_SUBMITTER}\n")
    runner = create_runner(folder, _DEMO_OWNER, poll_interval=1)
    runner.add_submitter(_DEMO_SUBMITTER)
    client = JobClient(SyftJobConfig.from_syftbox_folder(folder, _DEMO_SUBMITTER))
    analysis = client.submit_bash_job(_DEMO_OWNER, _DEMO_ANALYSIS, job_name="word count")
    failing = client.submit_bash_job(_DEMO_OWNER, _DEMO_FAILING, job_name="missing file")
    code = folder / "ds-code" / "hello.py"
    code.parent.mkdir()
    code.write_text(_DEMO_PYTHON)
    waiting = client.submit_python_job(_DEMO_OWNER, code, job_name="python hello", dependencies=["numpy"])
    print("1️⃣  The data scientist submitted 3 jobs. The runner sees them:\n")
    runner.check_for_new_jobs()
    print("\n2️⃣  The owner approves two of them and runs them:\n")
    for job in (analysis, failing):
        runner.approve_job(job.name, _DEMO_SUBMITTER)
    runner.process_approved_jobs(stream_output=True, timeout=60,
                                 share_outputs_with_submitter=True, share_logs_with_submitter=True)
    print("\n3️⃣  Where everything is:\n")
    for job in (analysis, failing, waiting):
        print(f"  {job.name} ({_job_status(job)}): {job}")
        for path in sorted(job.rglob("*")):
            if path.is_file():
                print(f"      {path.relative_to(job)}")
    permissions = runner.job_dir / _DEMO_SUBMITTER / PERMISSION_FILE
    print(f"\n4️⃣  What {_DEMO_SUBMITTER} can now read (rules in {permissions}):")
    shared = [r for r in (load_yaml(permissions.read_text(), str(permissions)) or {}).get("rules", [])
              if _DEMO_SUBMITTER in _access(r, "read") and not r["pattern"].startswith("*/")]
    for rule in shared:
        print(f"  read  {rule['pattern']}")
    print(f"  (its own submission files too; '{_DEMO_SUBMITTER}' cannot write approved, done, logs or outputs,")
    print("   and 'python hello' was never approved, so it never ran)")
    print(f"\n✨ Try: python3 -m syft_job list --syftbox-folder {shlex.quote(str(folder))} --email {_DEMO_OWNER}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    datasite = argparse.ArgumentParser(add_help=False)
    datasite.add_argument("--syftbox-folder", metavar="PATH", default=argparse.SUPPRESS,
                          help=f"the SyftBox folder (default: ${_FOLDER_ENV_VAR}, else the SyftBox client config)")
    datasite.add_argument("--email", metavar="EMAIL", default=argparse.SUPPRESS,
                          help=f"the data owner's email (default: ${_EMAIL_ENV_VAR}, else the SyftBox client config)")
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--timeout", type=_seconds_arg, metavar="SECONDS",
                         help=f"stop a job after this long (default: ${TIMEOUT_ENV_VAR}, else 300)")
    running.add_argument("--no-stream", action="store_true", help="do not print the jobs' output (logs are still written)")
    running.add_argument("--share-outputs", action="store_true", help="share each finished job's outputs/ with its submitter")
    running.add_argument("--share-logs", action="store_true", help="share each finished job's logs with its submitter")
    running.add_argument("--skip", action="append", metavar="NAME", help="never run this job (a name or SUBMITTER/NAME; repeatable)")
    running.add_argument("--strict", action="store_true",
                         help="run only jobs approved with `syft-job approve` whose files have not changed since")
    running.add_argument("--pass-env", action="append", metavar="NAME", default=[],
                         help="also give jobs this environment variable of yours (repeatable; by default "
                              "jobs get only PATH, HOME, LANG, LC_*, TMPDIR, TZ, USER, UV_* and the SyftBox ones)")
    running.add_argument("--max-memory", type=_positive_arg(float), metavar="MB",
                         help="limit each job process's address space to this many MB")
    running.add_argument("--max-cpu", type=_positive_arg(float), metavar="SECONDS",
                         help="limit each job process's CPU time")
    running.add_argument("--max-log-size", type=_positive_arg(int), metavar="BYTES",
                         help="cut each log at this size and stop the job")
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("job", metavar="JOB", help="the job's name")
    which.add_argument("--user", metavar="EMAIL", help="the submitter, when several have a job of that name")

    parser = _ArgumentParser(prog="syft-job", description="The job runner of a SyftBox datasite.",
                             parents=[datasite])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    commands.required = True

    def command(name: str, help: str, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[datasite, *parents])

    run = command("run", "poll for jobs and run approved ones until Ctrl+C", [running])
    run.add_argument("--poll-interval", type=_seconds_arg, default=5.0, metavar="SECONDS",
                     help="seconds between two polls (default: 5)")
    command("once", "run the approved jobs once and exit (status 1 if a job failed)", [running])
    listing = command("list", "list the jobs: name, submitter, status, submitted, return code")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    show = command("show", "show a job's config, status and the end of its logs", [which])
    show.add_argument("--lines", type=_count_arg, default=20, metavar="N", help="how many log lines to show (default: 20)")
    command("approve", "approve a job (the runner then runs it)", [which])
    share = command("share", "let the submitter read a finished job's outputs and/or logs", [which])
    share.add_argument("--outputs", action="store_true", help="share the job's outputs/ folder")
    share.add_argument("--logs", action="store_true", help="share stdout.txt, stderr.txt and returncode.txt")
    add = command("add-submitter", "let a data scientist submit jobs to this datasite")
    add.add_argument("submitter_email", metavar="EMAIL", help="the data scientist's email")
    reset = command("reset", "delete every job (asks first)")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    commands.add_parser("version", help="print the version", description="print the version")
    demo = commands.add_parser("demo", help="run a self-contained demo in a throwaway SyftBox folder",
                               description="run a self-contained demo in a throwaway SyftBox folder")
    demo.add_argument("--folder", metavar="PATH", help="an empty folder to use (default: a new temp folder)")
    return parser


_COMMANDS: dict[str, Callable[[SyftJobRunner, argparse.Namespace], int]] = {
    "run": _cmd_run, "once": _cmd_once, "list": _cmd_list, "show": _cmd_show,
    "approve": _cmd_approve, "share": _cmd_share, "add-submitter": _cmd_add_submitter,
    "reset": _cmd_reset,
}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``syft-job`` command; returns its exit status.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    """
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "version":
            print(f"syft-job {__version__}")
            return 0
        if args.command == "demo":
            return _cmd_demo(args)
        runner = SyftJobRunner(_datasite(args), **_runner_settings(args))
        return _COMMANDS[args.command](runner, args)
    except (SyftJobError, OSError) as exc:
        print(f"syft-job {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n🛑 Interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
