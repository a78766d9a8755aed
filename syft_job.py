"""syft_job: the job runner of a SyftBox datasite, in one file, standard library only.

A data scientist drops a job (a ``run.sh``, a ``config.yaml`` and code) into the data
owner's SyftBox folder. The owner reviews it and approves it; the runner runs approved
jobs, each from a private copy of exactly what was approved and, where bubblewrap is
installed, in a sandbox; it records their output and shares the results with the
submitter when the owner says so. It speaks every layout syft-job has shipped::

    <syftbox>/<owner>/app_data/job/
        inbox/<submitter>/<job>/            config.yaml  run.sh  code/   (today's clients)
        review/<submitter>/<job>/           state.yaml  stdout.txt  stderr.txt
                                            returncode.txt  outputs/
        inbox/<submitter>/v1/<job>/, review/<submitter>/v1/<job>/        (syft-job 0.1.40)
        <submitter>/<job>/                  all in one folder, with ``approved`` and
                                            ``done`` marker files          (syft-job 0.1.24)

Quick start (a SyftBox folder ``~/SyftBox``, which must exist: the SyftBox client makes
it, or ``mkdir -p ~/SyftBox``; each side normally runs on its own machine, and SyftBox
syncs the folder between them)::

    import syft_job

    # The data owner: a runner for owner@example.com's datasite.
    runner = syft_job.create_runner("~/SyftBox", "owner@example.com")
    runner.add_submitter("ds@example.com")      # ds@example.com may submit jobs

    # The data scientist: submit a job.
    ds = syft_job.SyftJobConfig.from_syftbox_folder("~/SyftBox", "ds@example.com")
    client = syft_job.JobClient(ds)
    client.submit_bash_job("owner@example.com", "echo hello > outputs/hello.txt",
                           job_name="hello")

    # The owner: review, approve, run, share.
    runner.check_for_new_jobs()                 # prints the new job and its script
    runner.approve_job("hello")                 # records the digest of its files
    for result in runner.process_approved_jobs():
        print(result.name, result.status, result.return_code, f"{result.duration:.2f} s")
    runner.share_job_results("hello", share_outputs=True, share_logs=True)

    # The data scientist reads what was shared.
    print(client.jobs)                          # a table; client.jobs[0].stdout, .outputs
    runner.run()                                # or poll forever; Ctrl+C stops

``create_runner(..., console=False)`` keeps the runner quiet; any object with a
``write(text)`` method receives its lines instead of standard output.

From the shell: ``python -m syft_job --help``. The file is read top to bottom: its
sections, each using only those above it, are listed in README.md ("How the module is
organised").
"""

from __future__ import annotations

import argparse
import codecs
import configparser
import contextlib
import csv
import dataclasses
import datetime
import difflib
import errno
import fcntl
import functools
import glob
import hashlib
import html
import json
import logging
import os
import pwd
import re
import secrets
import select
import selectors
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

__version__ = "0.3.0"

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
    "JobResult",
    "JobClient",
    "JobInfo",
    "JobsList",
    "main",
    # the files and folders of a job, and the words of its protocols (the on-disk format)
    "CONFIG_FILE", "RUN_SCRIPT", "CODE_DIR", "STATE_FILE", "APPROVED_MARKER", "DONE_MARKER", "REJECTED_MARKER",
    "PERMISSION_FILE", "STDOUT_FILE", "STDERR_FILE", "RETURNCODE_FILE", "OUTPUTS_DIR", "TIMEOUT_LINE",
    "LAYOUTS", "STATUSES", "ISOLATION_MODES", "TIMEOUT_ENV_VAR", "CLIENT_SOURCE_ENV_VAR",
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
    """A YAML text is outside what this module reads; ``source`` (as given to :func:`load_yaml`) and
    ``line`` (counted from 1) say where."""

    def __init__(self, message: str, source: str, line: int) -> None:
        super().__init__(f"{source}, line {line}: {message}")
        self.source, self.line = source, line


class JobError(SyftJobError):
    """A job cannot be created, found, reviewed or shared as asked."""


class JobNotFoundError(JobError):
    """No job matches the name that was asked for."""


# ---------------------------------------------------------------------------
# Console: everything the library prints goes through one object
# ---------------------------------------------------------------------------

# Control characters, bidi overrides and undecodable bytes in a name could forge or
# hide console lines ("\n✅ Job approved", "\x1b[2K"); they are shown escaped.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u115f\u1160\u200b-\u200f\u2028-\u202e"
                          "\u2060-\u206f\u2800\u3164\ufeff\uffa0\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]")
_UNPRINTABLE_IN_LINES = re.compile(_UNPRINTABLE.pattern.replace("\x0a", "\x0b"))  # the same, but for "\n"


def _printable(text: str, lines: bool = False) -> str:
    """``text`` safe to print: control, bidi and undecodable characters escaped, ``\n`` too unless ``lines``."""
    return (_UNPRINTABLE_IN_LINES if lines else _UNPRINTABLE).sub(
        lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


class _Console:
    """Where everything the library prints goes: standard output (``None``), any object with
    ``write(text)``, or nowhere (``False``). Each write holds whole lines."""

    def __init__(self, sink: Any = None) -> None:
        if sink is not None and sink is not False and not callable(getattr(sink, "write", None)):
            raise ConfigError(f"console must be None, False or have a write(text) method, got {sink!r}")
        self.sink = sink
        self.said: dict[str, str] = {}  # job -> the last thing said of it

    def write(self, text: str) -> None:
        """Write ``text`` (already escaped), any character the console cannot encode as an escape."""
        if self.sink is False:
            return
        out = sys.stdout if self.sink is None else self.sink
        try:
            out.write(text)
        except UnicodeEncodeError:
            encoding = getattr(out, "encoding", None) or "ascii"
            out.write(text.encode(encoding, "backslashreplace").decode(encoding))
        flush = getattr(out, "flush", None)
        if flush is not None:
            flush()

    def say(self, *lines: str) -> None:
        """Write lines of the runner's own, any control character in them escaped."""
        if lines:
            self.write("".join(_printable(line, lines=True) + "\n" for line in lines))

    def say_once(self, key: str, text: str) -> None:
        """Say ``text`` about ``key`` (a job) unless it was the last thing said of it."""
        if self.said.get(key) != text:
            self.said[key] = text
            self.say(text)

    def forget(self, key: str) -> None:  # what was said of ``key`` may be said again
        self.said.pop(key, None)


# ---------------------------------------------------------------------------
# Files: folders opened once, never through a symlink; atomic replaces
# ---------------------------------------------------------------------------
#
# A submitter can write its own folders, so a path the runner built a moment ago may now be a symlink
# to the owner's files. Folders are therefore opened once, checked, and everything inside is done
# relative to the open folder (``dir_fd``), with O_NOFOLLOW on the last step.

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_MAX_TREE_DEPTH = 64  # folders inside folders in a submission or outputs/


def _open_folder(path: str | os.PathLike) -> int:
    """Open a folder for ``*_at`` calls. :raises JobError: not a folder, or a symlink on the way."""
    path = os.path.abspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        problem = "is a symlink" if os.path.islink(path) else exc.strerror
        raise JobError(f"{_printable(path)}: {problem}; not used") from None
    if _fd_path(fd, path) != path:  # paths are built on the resolved SyftBox folder: any difference is a symlink
        os.close(fd)
        raise JobError(f"{_printable(path)}: a folder on the way is a symlink; not used")
    return fd


def _quietly(action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A clean-up whose failure changes nothing (the file or process already gone, a disk full)."""
    try:
        action(*args, **kwargs)
    except (OSError, SyftJobError, subprocess.SubprocessError):
        pass


def _or_none(read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read(*args, **kwargs)``, or None for a file gone, unreadable or malformed."""
    try:
        return read(*args, **kwargs)
    except (OSError, SyftJobError, ValueError, RecursionError):
        return None


def _fd_path(fd: int, path: str) -> str:
    """Where the open folder ``fd`` really is (the kernel knows; ``realpath`` guesses)."""
    with contextlib.suppress(OSError):  # no /proc, no F_GETPATH: the path as resolved
        if sys.platform.startswith("linux"):
            return os.readlink(f"/proc/self/fd/{fd}")
        if hasattr(fcntl, "F_GETPATH"):
            return fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0").decode()
    return os.path.realpath(path)


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _folder(path: str | os.PathLike) -> contextlib.AbstractContextManager[int]:
    return _closing(_open_folder(path))


def _subfolder(dir_fd: int, name: str) -> contextlib.AbstractContextManager[int]:
    return _closing(os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=dir_fd))


def _create_at(dir_fd: int, name: str, mode: int = 0o644) -> int:
    """A new, empty file ``name`` open for writing. Whatever stood there (an old log, a
    planted symlink or folder) is removed first: nothing is written through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        _remove_at(dir_fd, name)
        return os.open(name, flags, mode, dir_fd=dir_fd)


def _write_at(dir_fd: int, name: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``name`` with ``data`` atomically (temp file, rename): a crash leaves the old or the new
    file, and a symlink there is replaced, not followed. ``durable``: fsync first, so a power cut
    cannot leave it empty (approvals and permissions are; records the runner can redo are not)."""
    tmp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        with _closing(fd):
            _write_all(fd, data)
            os.fchmod(fd, mode)  # os.open applied the umask
            if durable:
                os.fsync(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _quietly(os.unlink, tmp, dir_fd=dir_fd)
        raise


def _atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    path = os.path.abspath(path)
    with _folder(os.path.dirname(path)) as fd:
        _write_at(fd, os.path.basename(path), data, mode, durable)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write part of it); a full disk raises."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _remove_at(dir_fd: int, name: str, depth: int = 0) -> None:
    """Remove a file, a symlink (not its target) or a whole folder; missing is fine."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if depth > 2 * _MAX_TREE_DEPTH:
        raise JobError(f"{_printable(name)}: nested too deep to remove")
    with _subfolder(dir_fd, name) as fd:
        for entry in list(os.scandir(fd)):
            _remove_at(fd, entry.name, depth + 1)
    os.rmdir(name, dir_fd=dir_fd)


def _remove_path(path: str | os.PathLike) -> None:
    path = os.path.abspath(path)
    with _folder(os.path.dirname(path)) as fd:
        _remove_at(fd, os.path.basename(path))


class _Gone(JobError):
    """A file that went away between the listing of its folder and its opening."""


def _open_regular(name: str | os.PathLike, dir_fd: int | None = None) -> int:
    """Open a regular file for reading, never through a symlink and never blocking on a planted FIFO.
    :raises JobError: naming the file and what is wrong (_Gone: it is not there)."""
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        problem = "is a symlink" if exc.errno == errno.ELOOP else "cannot be read: " + exc.strerror
        error = _Gone if exc.errno == errno.ENOENT else JobError
        raise error(f"{_printable(os.fspath(name))}: {problem}; not read") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobError(f"{_printable(os.fspath(name))}: is not a regular file; not read")
    return fd


def _read_file(name: str | os.PathLike, max_bytes: int, dir_fd: int | None = None,
               truncate: bool = False) -> bytes:
    """The bytes of a regular file, reading at most ``max_bytes``: a larger one raises JobError, unless
    ``truncate`` (its first ``max_bytes`` then)."""
    with _closing(_open_regular(name, dir_fd)) as fd:
        data = b""
        while len(data) <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - len(data))):
            data += chunk
    if len(data) > max_bytes:
        if not truncate:
            raise JobError(f"{_printable(os.fspath(name))}: is larger than {_size(max_bytes)}; not read")
        data = data[:max_bytes]
    return data


def _read_text(name: str | os.PathLike, max_bytes: int, dir_fd: int | None = None) -> str:
    """A small UTF-8 file as text. :raises JobError: unreadable or not UTF-8."""
    data = _read_file(name, max_bytes, dir_fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobError(f"{_printable(os.fspath(name))}: is not UTF-8 text (byte {exc.start} is "
                        f"{data[exc.start:exc.start + 1]!r})") from None


def _copy_tree(src_fd: int, dst_fd: int | None, skip: Callable[[str], bool] = lambda rel: False,
               prefix: str = "", depth: int = 0) -> dict[str, str]:
    """``{relative path: sha256}`` of a folder's files, read through file descriptors (links never
    followed) and copied into ``dst_fd`` unless it is None; a path ``skip(rel)`` is not read at all.
    A symlink, FIFO or device is listed as ``"symlink"`` or ``"not a regular file"``, never copied."""
    if depth > _MAX_TREE_DEPTH:
        raise JobError(f"{_printable(prefix)}: folders nested deeper than {_MAX_TREE_DEPTH} levels")
    files: dict[str, str] = {}
    for name in sorted(entry.name for entry in os.scandir(src_fd)):
        rel = prefix + name
        if skip(rel):
            continue
        try:
            mode = os.stat(name, dir_fd=src_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:  # gone since the listing (a submitter may be writing): not part of it
            continue
        if stat.S_ISDIR(mode):
            with contextlib.ExitStack() as stack:
                fd, sub = stack.enter_context(_subfolder(src_fd, name)), None
                if dst_fd is not None:
                    with contextlib.suppress(FileExistsError):  # copies may merge into one folder
                        os.mkdir(name, 0o755, dir_fd=dst_fd)
                    sub = stack.enter_context(_subfolder(dst_fd, name))
                files.update(_copy_tree(fd, sub, skip, rel + "/", depth + 1))
        elif stat.S_ISREG(mode):
            with contextlib.suppress(_Gone):  # gone since the listing: not part of it
                files[rel] = _copy_file(src_fd, name, dst_fd)
        else:
            files[rel] = "symlink" if stat.S_ISLNK(mode) else "not a regular file"
    return files


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _copy_file(src_fd: int, name: str, dst_fd: int | None) -> str:
    """Copy one regular file (if ``dst_fd``); its sha256, of the bytes copied."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        fd = stack.enter_context(_closing(_open_regular(name, src_fd)))
        out = None
        if dst_fd is not None:
            mode = 0o755 if os.fstat(fd).st_mode & 0o111 else 0o644
            out = stack.enter_context(_closing(_create_at(dst_fd, name, mode)))
        for block in iter(functools.partial(os.read, fd, 1 << 20), b""):
            digest.update(block)
            if out is not None:
                _write_all(out, block)
    return digest.hexdigest()


def _size(n: int) -> str:
    """A byte count for people: ``512 bytes``, ``64 kB``, ``1 MB``."""
    for unit, scale in (("GB", 1024 ** 3), ("MB", 1024 * 1024), ("kB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _utc_now() -> str:
    """Now, as SyftBox's clients write times: ISO 8601 in UTC with a trailing Z."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------
# YAML: what SyftBox's files hold, read as PyYAML reads it
# ---------------------------------------------------------------------------
#
# config.yaml, state.yaml and syft.pub.yaml hold block mappings and lists (2-space indents from PyYAML,
# 4 from Go's yaml.v3), plain and quoted scalars folded over lines, [] and {}, flow lists of scalars,
# comments, a leading "---". The reader takes that and refuses the rest (anchors, tags, block
# scalars, dates, octal, yes/no, integers of over 4000 digits) by file and line.

_MAX_YAML_DEPTH = 100
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?\Z")
# Every other plain scalar that PyYAML's resolver turns into something not a string.
_YAML11_TYPED = re.compile(r"""(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|=|<<
    |[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}.*)?)\Z""", re.X)
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = dict(zip('0abt\tnvfre "/\\N_LP', "\0\a\b\t\t\n\v\f\r\x1b \"/\\\x85\xa0\u2028\u2029"))
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"
_FLOW_END = re.compile(r" *\]")
_FLOW_ITEM = re.compile(r""" *('(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^,\[\]{}'"]*?) *([,\]])""")


class _YamlReader:
    """Reads one document of the subset above, line by line; see the section comment."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.i = self.depth = 0  # the line the parser is at, and how deep it is

    def error(self, message: str, line: int) -> YAMLError:
        return YAMLError(message, self.source, line + 1)

    def read(self) -> Any:
        for n, line in enumerate(self.lines):
            bad = _NOT_PRINTABLE.search(line)
            if bad or line.lstrip(" ").startswith("\t"):
                raise self.error(f"character {bad.group()!r} is not allowed" if bad else "a tab indents; use spaces", n)
        first = self.next()
        if first is not None and self.is_marker(first):
            if not re.match(r"---( +#.*| *)$", self.lines[first]):
                raise self.error("only a bare '---' may start the document", first)
            self.i = first + 1
            first = self.next()
        value = None if first is None else self.block(self.indent(first))
        rest = self.next()
        if rest is not None:
            what = "a second document" if self.is_marker(rest) else f"unexpected text {self.lines[rest].strip()!r}"
            raise self.error(f"{what} (check the indentation)", rest)
        return value

    def next(self) -> int | None:  # the next line that is not blank or a comment
        while self.i < len(self.lines):
            stripped = self.lines[self.i].strip(" ")
            if stripped and not stripped.startswith("#"):
                return self.i
            self.i += 1
        return None

    def indent(self, n: int) -> int:
        return len(self.lines[n]) - len(self.lines[n].lstrip(" "))

    def is_marker(self, n: int) -> bool:  # "---" or "...": the start or end of a document
        return re.match(r"(---|\.\.\.)( |$)", self.lines[n]) is not None

    def is_item(self, n: int, indent: int) -> bool:
        return re.match(r"-( |$)", self.lines[n][indent:]) is not None

    def block(self, indent: int) -> Any:
        """The node that starts at column ``indent`` of line ``self.i``."""
        self.depth += 1  # an error ends the whole read: no need to count back down then
        if self.depth > _MAX_YAML_DEPTH:
            raise self.error(f"nested deeper than {_MAX_YAML_DEPTH} levels", self.i)
        item = self.is_item(self.i, indent)
        if item or self.key(self.i, indent):
            value = self.collection(indent, [] if item else {})
        else:
            value = self.inline(self.i, indent, indent - 1)
        self.depth -= 1
        return value

    def collection(self, indent: int, result: Any) -> Any:
        """The ``- item`` (``result`` a list) or ``key: value`` lines at ``indent``; values inline or below."""
        is_list = isinstance(result, list)
        while True:
            n = self.next()
            if n is None or self.indent(n) != indent or self.is_marker(n) or (is_list and not self.is_item(n, indent)):
                return result
            line = self.lines[n]
            key, column = (None, indent + 1) if is_list else self.key(n, indent) or (None, -1)
            if column < 0 or (not is_list and key in result):
                raise self.error(f"the key {key!r} appears twice" if column > 0 else "expected 'key: value'", n)
            rest = line[column:].lstrip(" ")
            if not rest or rest.startswith("#"):  # the value is on the lines below
                self.i = n + 1
                below = self.next()
                nested = below is not None and (self.indent(below) > indent or (
                    not is_list and self.indent(below) == indent and self.is_item(below, indent)))
                value = self.block(self.indent(below)) if nested else None
            elif is_list:  # "- value": read the value as a block at its own column
                self.lines[n] = " " * (len(line) - len(rest)) + rest
                value = self.block(len(line) - len(rest))
            else:
                value = self.inline(n, len(line) - len(rest), indent)
            if is_list:
                result.append(value)
            else:
                result[key] = value
            n = self.next()
            if n is not None and self.indent(n) > indent:
                raise self.error("unexpected indentation", n)

    def key(self, n: int, indent: int) -> tuple[Any, int] | None:
        """For a ``key: value`` line, the key and the column after its ':'."""
        line = self.lines[n]
        if re.match(r"[?:]( |$)", line[indent:]):
            raise self.error("complex mapping keys ('? ') are not supported", n)
        quoted = re.match(r"""('(?:[^']|'')*'|"(?:[^"\\]|\\.)*") *:( |$)""", line[indent:])
        if quoted:
            return self.quoted(n, indent)[0], indent + quoted.end()
        if line[indent:indent + 1] in ("'", '"'):
            return None
        match = re.search(r":( |$)", line[indent:])
        if not match or self.is_item(n, indent) or re.search(r"(^| )#", line[indent:indent + match.start()]):
            return None
        text = line[indent:indent + match.start()].rstrip(" ")
        if text[:1] in tuple("[{&*!|>"):
            raise self.error("flow, anchored or tagged keys are not supported", n)
        return self.plain(text, n), indent + match.start() + 1

    def inline(self, n: int, column: int, parent: int) -> Any:
        """A value that starts at ``column`` of line ``n``; moves past its last line."""
        line, first = self.lines[n], self.lines[n][column]
        if first in "'\"":
            value, n, end = self.quoted(n, column)
        elif first == "[":
            value, end = self.flow_list(n, column)
        elif first == "{":
            if not re.match(r"\{ *\}", line[column:]):
                raise self.error("flow mappings ({...}) are not supported, only {}", n)
            value, end = {}, line.index("}", column) + 1
        elif first in _INDICATORS and not (first in "-?:" and line[column + 1:column + 2] not in ("", " ")):
            raise self.error(f"a value starting with {first!r} is not supported (quote it)", n)
        else:
            value, n, end = self.plain_lines(n, column, parent)
        rest = self.lines[n][end:]
        if rest.strip(" ") and not re.match(r" +#", rest):
            raise self.error(f"unexpected text after the value: {rest.strip()!r}", n)
        self.i = n + 1
        return value

    def plain(self, text: str, n: int) -> Any:
        """An unquoted scalar's value; one PyYAML reads as another type (a date, 017, yes, .inf) is refused."""
        if "\t" in text or ": " in text or text.endswith(":"):
            raise self.error(f"the plain value {text!r} holds a tab or ': ' (quote it)", n)
        if text in _NULLS or text in _BOOLS:
            return _BOOLS.get(text)
        if _INT.match(text) and len(text) > 4000:  # Python refuses to read longer ones (int_max_str_digits)
            raise self.error(f"an integer of {len(text)} digits is too long", n)
        if _INT.match(text) or _FLOAT.match(text):
            return int(text) if _INT.match(text) else float(text)
        if _YAML11_TYPED.match(text):
            raise self.error(f"the plain value {text!r} is not a string in YAML 1.1 (quote it)", n)
        return text

    def plain_lines(self, n: int, column: int, parent: int) -> tuple[Any, int, int]:
        """A plain scalar, continued on lines indented more than ``parent`` and folded as
        YAML folds it: a line break is a space, each blank line a newline."""
        line = self.lines[n]
        comment = line.find(" #", column)
        end = len(line) if comment < 0 else comment
        parts, last, k = [line[column:end].rstrip(" ")], n, n + 1
        while comment < 0 and k < len(self.lines):
            stripped = self.lines[k].strip(" ")
            if stripped and (self.indent(k) <= parent or stripped[0] == "#" or self.is_marker(k)):
                break
            if stripped:
                if " #" in stripped or ": " in stripped or stripped.endswith(":"):
                    raise self.error("a continued plain value holds ' #' or ': ' (quote it)", k)
                parts += ["\n" * (k - last - 1) or " ", stripped]
                last, end = k, len(self.lines[k].rstrip(" "))
            k += 1
        return self.plain("".join(parts), n), last, end

    def quoted(self, n: int, column: int) -> tuple[str, int, int]:
        """A '...' or "..." scalar from ``column`` of line ``n``, over as many lines as it
        takes: its value, and the line and column just after the closing quote."""
        line, quote, pos, start = self.lines[n], self.lines[n][column], column + 1, n
        run = re.compile(r"[^']*" if quote == "'" else r'[^"\\]*')
        out: list[str] = []
        while True:
            text = run.match(line, pos).group()
            out.append(text)
            pos += len(text)
            ch, code = line[pos:pos + 1], line[pos + 1:pos + 2]
            if ch == quote == "'" and code == "'":
                out.append("'")
                pos += 2
            elif ch == quote:
                return "".join(out), n, pos + 1
            elif ch == "\\" and code:  # an escape: \n, \x41, \u263A, ...
                size = _HEX_ESCAPES.get(code, 0)
                digits = line[pos + 2:pos + 2 + size]
                if code not in _ESCAPES and not (size and re.fullmatch(f"[0-9a-fA-F]{{{size}}}", digits)):
                    raise self.error(f"unknown escape \\{code}{digits}", n)
                out.append(_ESCAPES[code] if code in _ESCAPES else chr(int(digits, 16)))
                pos += 2 + size
            else:  # a line break (escaped, after a "\\"): folded into a space, or kept per blank line
                if ch != "\\":
                    out[-1] = out[-1].rstrip(" \t")
                before, n = n, n + 1
                while n < len(self.lines) and not self.lines[n].strip(" \t"):
                    n += 1
                if n >= len(self.lines) or self.is_marker(n):
                    raise self.error("a quoted string is not closed", start)
                out.append("\n" * (n - before - 1) or ("" if ch == "\\" else " "))
                line = self.lines[n]
                pos = len(line) - len(line.lstrip(" \t"))

    def flow_list(self, n: int, column: int) -> tuple[list, int]:
        """``[]``, or a list of scalars on one line: ``[a, 'b', "c"]``."""
        items, pos, line = [], column + 1, self.lines[n]
        while not _FLOW_END.match(line, pos) or items:
            match = _FLOW_ITEM.match(line, pos)
            token = match.group(1) if match else ""
            if not token or " #" in token or token[0] in _INDICATORS.replace("'", "").replace('"', ""):
                raise self.error("a flow list holds only plain or quoted scalars, on one line", n)
            items.append(self.quoted(n, match.start(1))[0] if token[0] in "'\"" else self.plain(token, n))
            pos = match.end()
            if match.group(2) == "]" or _FLOW_END.match(line, pos):
                break
        return items, line.index("]", pos - 1 if items else pos) + 1


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Read a YAML document of the subset SyftBox's files use (a JSON document too), giving what
    PyYAML gives. :raises YAMLError: for anything outside the subset, naming ``source`` (the file) and the line."""
    if re.match(r"\s*\{\s*\S", text):
        def yaml_float(number: str) -> float:  # 1e5 is a float to JSON, a string to PyYAML
            if not _FLOAT.match(number):
                raise ValueError(number)
            return float(number)
        if (value := _or_none(json.loads, text, parse_float=yaml_float, parse_constant=yaml_float)) is not None:
            return value  # else not JSON, or nested too deep: read as YAML
    return _YamlReader(text, source).read()


_PLAIN_SAFE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+=-]*(?: [A-Za-z0-9_./@+=-]+)*\Z")
_AMBIGUOUS_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}


def _dump_scalar(value: Any) -> str:
    """A scalar that PyYAML, Go's yaml.v3 and this reader read back equal (strings they could misread quoted)."""
    if isinstance(value, (dict, list, tuple)):  # empty: the others are written as blocks
        return "{}" if isinstance(value, dict) else "[]"
    if value is None or isinstance(value, (bool, int, float)):
        text = json.dumps(value)  # null, true, 3, 2.5, 1e+16; inf and nan below, as PyYAML writes them
        text = {"Infinity": ".inf", "-Infinity": "-.inf", "NaN": ".nan"}.get(text, text)
        return re.sub(r"^(-?[0-9]+)e", r"\1.0e", text)  # PyYAML reads 1e+16 as a string
    if not isinstance(value, str):
        raise TypeError(f"cannot write a {type(value).__name__} as YAML: {value!r}")
    if _PLAIN_SAFE.match(value) and value.lower() not in _AMBIGUOUS_WORDS:
        return value
    # JSON's escapes are YAML's too; YAML also wants these escaped (not printable, or line breaks).
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04X}", json.dumps(value, ensure_ascii=False))


def _dump_lines(value: Any, indent: int) -> Iterator[str]:
    pad = " " * indent
    pairs = [(f"{_dump_scalar(k)}:", value[k]) for k in sorted(value, key=str)] if isinstance(value, dict) \
        else [("-", item) for item in value]
    for head, item in pairs:
        if not isinstance(item, (dict, list, tuple)) or not item:
            yield f"{pad}{head} {_dump_scalar(item)}"
        elif head == "-":  # "- key: value" or "- - item": the first line joins the dash
            lines = list(_dump_lines(item, indent + 2))
            yield f"{pad}- {lines[0][indent + 2:]}"
            yield from lines[1:]
        else:
            yield pad + head
            yield from _dump_lines(item, indent + 2 if isinstance(item, dict) else indent)


def dump_yaml(value: Any) -> str:
    """Write ``value`` (dicts, lists, strings, numbers, booleans, None) as block YAML,
    keys sorted, that this module, PyYAML and Go's yaml.v3 read back equal (but inf and
    nan, written as PyYAML writes them). :raises TypeError: for a value of another type."""
    lines = _dump_lines(value, 0) if isinstance(value, (dict, list, tuple)) and value else [_dump_scalar(value)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

# The on-disk layout, shared with every other SyftBox tool (see the module docstring).
CONFIG_FILE = "config.yaml"
RUN_SCRIPT = "run.sh"
CODE_DIR = "code"
STATE_FILE = "state.yaml"
APPROVED_MARKER = "approved"
DONE_MARKER = "done"
REJECTED_MARKER = "rejected"
PERMISSION_FILE = "syft.pub.yaml"
STDOUT_FILE = "stdout.txt"
STDERR_FILE = "stderr.txt"
RETURNCODE_FILE = "returncode.txt"
OUTPUTS_DIR = "outputs"
_APPROVAL_FILE = ".syft_job_approval"  # inbox/review layouts: the digest approved, beside state.yaml
_LOG_FILES = (STDOUT_FILE, STDERR_FILE, RETURNCODE_FILE)
# Names the owner and the runner write in a legacy job folder: never part of a submission.
_RUNNER_NAMES = frozenset({APPROVED_MARKER, DONE_MARKER, REJECTED_MARKER, PERMISSION_FILE, OUTPUTS_DIR, *_LOG_FILES})
LAYOUTS = ("legacy", "v0", "v1")  # syft-job 0.1.24; 0.1.28 to 0.1.39; 0.1.40
_LAYOUT_FOLDERS = frozenset({"inbox", "review", "staging"})  # never a submitter's folder
_VERSION_FOLDER = re.compile(r"v[0-9]+\Z")  # inbox/<submitter>/v1/: a protocol level, never a job
STATUSES = ("inbox", "approved", "running", "done", "failed", "rejected", "interrupted", "changed")
ISOLATION_MODES = ("auto", "sandbox", "none")
_MAX_CONFIG_BYTES = 1024 * 1024  # a submitter's config.yaml is read whole: keep it bounded

TIMEOUT_ENV_VAR = "SYFT_DEFAULT_JOB_TIMEOUT_SECONDS"
_DEFAULT_TIMEOUT_SECONDS = 300.0
_EMAIL_RE = re.compile(r"^[^@\s/\\\x00]+@[^@\s/\\\x00]+\.[^@\s/\\\x00]+$")


def _check_folder_name(name: Any, what: str) -> str:
    """Refuse a name that cannot safely be one folder under another; ``what`` names it in the message."""
    if not isinstance(name, str):
        raise JobError(f"the {what} must be a string, not {type(name).__name__}")
    if name in (".", ".."):
        problem = "is not a folder name"
    elif "/" in name or "\0" in name:
        problem = "contains '/' or a NUL character"
    elif not name.strip():
        problem = "is empty or only spaces"
    elif len(name.encode("utf-8", "surrogateescape")) > 255:
        problem = "is longer than 255 bytes"
    else:
        return name
    raise JobError(f"the {what} {_printable(repr(name))} {problem}")


def _check_email(email: Any) -> str:
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise ConfigError(f"{email!r} does not look like an email address (name@domain.tld)")
    try:
        return _check_folder_name(email, "email")
    except JobError as exc:
        raise ConfigError(str(exc)) from None


def _positive(value: Any, what: str, kind: type = float) -> Any:
    """``value`` as a positive, finite number (``kind`` int: a whole one). :raises ConfigError: naming ``what``."""
    if isinstance(value, str):
        converted = _or_none(kind, value.strip())
        value = value if converted is None else converted
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf") \
            or (kind is int and value != int(value)):
        raise ConfigError(f"{what} must be a positive {'whole ' if kind is int else ''}number, got {value!r}")
    return kind(value)


def _default_work_dir() -> Path:
    """Where a runner keeps its private state: $XDG_STATE_HOME/syft-job, else
    ~/.local/state/syft-job, and /var/lib/syft-job for root, whose jobs run as another
    account that must reach their copies (outside the SyftBox folder)."""
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "syft-job"
    return Path("/var/lib/syft-job") if os.geteuid() == 0 else Path.home() / ".local" / "state" / "syft-job"


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both absolute and normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


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


@dataclasses.dataclass(frozen=True)
class _RunOptions:
    """How to run jobs: the arguments of ``process_approved_jobs()`` and ``run()``."""

    stream_output: bool
    timeout: float
    skip_job_names: frozenset
    share_outputs: bool
    share_logs: bool

    @classmethod
    def make(cls, stream_output: bool = True, timeout: Any = None, skip_job_names: Iterable[str] | None = None,
             share_outputs_with_submitter: bool = False, share_logs_with_submitter: bool = False) -> _RunOptions:
        """Check the arguments; no timeout: $SYFT_DEFAULT_JOB_TIMEOUT_SECONDS, else 300 s (read now)."""
        if timeout is None:
            from_env = os.environ.get(TIMEOUT_ENV_VAR, "").strip()
            timeout = _positive(from_env, TIMEOUT_ENV_VAR) if from_env else _DEFAULT_TIMEOUT_SECONDS
        return cls(bool(stream_output), _positive(timeout, "timeout"), frozenset(skip_job_names or ()),
                   bool(share_outputs_with_submitter), bool(share_logs_with_submitter))


# ---------------------------------------------------------------------------
# Discovery: what jobs exist, in every layout, and in which state
# ---------------------------------------------------------------------------
#
# A job's state is read from what the owner and the runner write, never from what the
# submitter writes. state.yaml (upstream's words; the legacy layout's markers read as
# them: no marker "pending", approved, done, rejected) gives a coarse state (_Job.state:
# is there anything to run?) and a status (STATUSES: what list, show, the banner's
# counts and JobInfo say), which _status decides, closer for the owner from the claims
# and the recorded return code: running or interrupted, approved or changed.
#   state.yaml       _Job.state                      STATUSES
#   received         inbox ("unreceived": no file)   inbox
#   pending          inbox ("broken": unusable)      inbox
#   approved         approved                        approved, changed
#   running          running                         running, interrupted
#   done, failed     finished                        done, failed
#   rejected         rejected                        rejected
# A run stopped by the runner (_Run.stop_reason: timeout, cancelled, log, interrupted)
# is failed with that reason, or, interrupted, approved again.

_STATE_KEYS = ("approval_method", "approved_at", "approved_by", "completed_at", "received_at", "rejected_at",
               "rejected_by", "return_code", "review_reason", "status")
_STATUS_OF_WORD = {"received": "inbox", "pending": "inbox", "approved": "approved", "running": "running",
                   "done": "done", "failed": "failed", "rejected": "rejected"}
_STATE_STATUSES = {word: "finished" if status in ("done", "failed") else status
                   for word, status in _STATUS_OF_WORD.items()}
_MAX_STATE_BYTES = 64 * 1024
_FULL_SCAN_SECONDS = 60.0
_WATCHED_FULL_SCAN_SECONDS = 600.0  # with inotify: a change not told (a coarse clock, NFS) is seen this late
_SETTLED_NS = 1_000_000_000  # a folder changed this recently may change again unseen


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[\]{}\\])", r"\\\1", name)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """One protocol syft-job has shipped (LAYOUTS): where its jobs are, where the owner's
    side is written, how state is recorded. A new protocol is one more of these."""

    name: str
    level: str | None  # its folder inside inbox/<submitter>/ and review/<submitter>/ ("v1"), if any
    markers: bool  # state in marker files in the job's own folder (0.1.24), not review/.../state.yaml
    versioned: bool  # its state.yaml and config.yaml carry canonical_name and version (0.1.40)

    def paths(self, job_dir: str | os.PathLike, submitter: str, name: str) -> tuple[Path, Path]:
        """``(submission folder, results folder)`` of a job."""
        if self.markers:
            return Path(job_dir, submitter, name), Path(job_dir, submitter, name)
        level = (self.level,) if self.level else ()
        return Path(job_dir, "inbox", submitter, *level, name), Path(job_dir, "review", submitter, *level, name)

    @property
    def status_file(self) -> str:  # in the results folder: says the job is approved
        return APPROVED_MARKER if self.markers else STATE_FILE

    @property
    def approval_file(self) -> str:  # in the results folder: the digest of an approval
        return APPROVED_MARKER if self.markers else _APPROVAL_FILE

    @property
    def runner_names(self) -> frozenset[str]:  # at the top of a submission, written by the owner and the runner
        return _RUNNER_NAMES if self.markers else frozenset({PERMISSION_FILE})

    @property
    def output_folders(self) -> tuple[str, ...]:  # code/outputs/ too, where code runs in code/
        return (OUTPUTS_DIR,) if self.markers else (OUTPUTS_DIR, f"{CODE_DIR}/{OUTPUTS_DIR}")

    def rules(self, results: str, name: str) -> tuple[str, str]:
        """The syft.pub.yaml governing a job's results (review/<submitter>/'s, above any
        level), and the prefix of the job's patterns in it."""
        if self.markers:  # its own folder's file, if it has one, else its submitter folder's
            if os.path.lexists(os.path.join(results, PERMISSION_FILE)):
                return os.path.join(results, PERMISSION_FILE), ""
            return os.path.join(os.path.dirname(results), PERMISSION_FILE), _glob_escape(name) + "/"
        above = os.path.dirname(os.path.dirname(results) if self.level else results)
        return os.path.join(above, PERMISSION_FILE), (f"{self.level}/" if self.level else "") + _glob_escape(name) + "/"


_LAYOUTS = {layout.name: layout for layout in (_Layout("legacy", None, True, False), _Layout("v0", None, False, False),
                                              _Layout("v1", "v1", False, True))}
_LEVELS = frozenset(layout.level for layout in _LAYOUTS.values() if layout.level)


@dataclasses.dataclass(frozen=True)
class _Job:
    """One job: where it was submitted, where its results go, and its coarse state."""

    layout: str
    submitter: str
    name: str
    folder: str   # the submission: config.yaml, run.sh, code
    results: str  # where the owner and the runner write (the same folder in the legacy layout)
    state: str

    @property
    def protocol(self) -> _Layout:
        return _LAYOUTS[self.layout]

    @property
    def key(self) -> str:  # as jobs are addressed (skip_job_names, messages)
        return f"{self.submitter}/{self.name}"

    @property
    def label(self) -> str:  # the key, safe to print (a name may hold control characters)
        return _printable(self.key) + ("" if self.protocol.markers else f" ({self.layout})")

    @functools.cached_property
    def digest_key(self) -> str:  # its file name in the runner's private state
        return hashlib.sha256(self.results.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def read_config(self) -> dict:
        """:raises SyftJobError: config.yaml a symlink, too large, not UTF-8, not YAML, not a mapping."""
        path = os.path.join(self.folder, CONFIG_FILE)
        value = load_yaml(_read_text(path, _MAX_CONFIG_BYTES), path)
        if not isinstance(value, (dict, type(None))):
            raise JobError(f"{_printable(path)}: expected a mapping of settings, found a {type(value).__name__}")
        return value or {}


def _read_state(results: str) -> dict | None:
    """A job's state.yaml, or None. :raises SyftJobError: unreadable, or an unknown status."""
    path = os.path.join(results, STATE_FILE)
    if not os.path.lexists(path):
        return None
    state = load_yaml(_read_text(path, _MAX_STATE_BYTES), path)
    status = state.get("status") if isinstance(state, dict) else None
    if not isinstance(status, str) or status not in _STATE_STATUSES:
        raise JobError(f"{_printable(path)}: status {status!r} is none of {', '.join(_STATE_STATUSES)}; not used")
    return state


def _write_state(job: _Job, **changes: Any) -> None:
    """Update a job's state.yaml as syft-job 0.1.39 and 0.1.40 write it: every key,
    nulls included, times in UTC with a Z; ``canonical_name``/``version`` under v1/."""
    state = {**dict.fromkeys(_STATE_KEYS), **(_or_none(_read_state, job.results) or {}), **changes}
    state = {key: value for key, value in state.items() if key not in ("canonical_name", "version")}
    if job.protocol.versioned:
        state.update(canonical_name="JobState", version="1")
    os.makedirs(job.results, exist_ok=True)
    _atomic_write(os.path.join(job.results, STATE_FILE), dump_yaml(state).encode("utf-8"))


def _coarse_state(layout: str, folder: str, results: str) -> str:
    if _LAYOUTS[layout].markers:
        for marker, state in ((REJECTED_MARKER, "rejected"), (DONE_MARKER, "finished"), (APPROVED_MARKER, "approved")):
            if os.path.lexists(os.path.join(folder, marker)):
                return state
        return "inbox"
    try:
        state = _read_state(results)
    except (OSError, SyftJobError):
        return "broken"
    return "unreceived" if state is None else _STATE_STATUSES[state["status"]]


def _subfolders(path: str | os.PathLike) -> list[os.DirEntry]:
    """The folders in ``path`` (not symlinks to folders), sorted by name."""
    try:
        with os.scandir(path) as entries:
            return sorted((e for e in entries if e.is_dir(follow_symlinks=False)), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


class _JobScanner:
    """Finds the jobs of a job directory in every layout, poll after poll, looking again
    only at what can have changed: a folder's listing is kept while its mtime stays (once
    _SETTLED_NS old: times are coarse), a finished or rejected job stays so. All is looked
    at again every _FULL_SCAN_SECONDS, and after ``forget()``."""

    def __init__(self, job_dir: str | os.PathLike) -> None:
        self.job_dir = str(job_dir)
        self.listings: dict[str, tuple[int, list[tuple[str, str]]]] = {}  # folder -> (mtime, its folders)
        self.final: dict[str, _Job] = {}  # submission folder -> its job, once finished or rejected
        self.open: list[tuple[str, str]] = []  # the last scan's (submitter, folder) of jobs not finished, results too
        self.full_scan_at = 0.0
        self.full_scan_every = _FULL_SCAN_SECONDS  # longer while inotify tells of every change

    def forget(self) -> None:
        self.full_scan_at = 0.0

    def scan(self) -> list[_Job]:
        """Every job, by submitter then name, legacy first. Symlinked folders are not
        followed: a submitter cannot make the runner look outside its folder."""
        if time.monotonic() >= self.full_scan_at:
            self.listings.clear()
            self.final.clear()
            self.full_scan_at = time.monotonic() + self.full_scan_every
        found = []
        for entry in _subfolders(self.job_dir):
            if entry.name not in _LAYOUT_FOLDERS:
                found += [("legacy", entry.name, name, path) for name, path in self.folders(entry.path)]
        for submitter in _subfolders(os.path.join(self.job_dir, "inbox")):
            for name, path in self.folders(submitter.path):
                if name == "v1":
                    found += [("v1", submitter.name, n, p) for n, p in self.folders(path)]
                elif not _VERSION_FOLDER.match(name):
                    found.append(("v0", submitter.name, name, path))
        jobs = {path: self.job(layout, submitter, name, path) for layout, submitter, name, path in found}
        self.open = [(submitter, folder) for _, submitter, _, path in found if path not in self.final
                     for folder in ([path, jobs[path].results] if jobs[path] else [path])]  # no config.yaml yet, too
        return [job for job in jobs.values() if job is not None]

    def job(self, layout: str, submitter: str, name: str, folder: str) -> _Job | None:
        if name == PERMISSION_FILE:  # its results folder would stand where the submitter's rules must be
            return None
        job = self.final.get(folder)
        if job is None and os.path.isfile(os.path.join(folder, CONFIG_FILE)):
            protocol = _LAYOUTS[layout]
            results = folder if protocol.markers else str(protocol.paths(self.job_dir, submitter, name)[1])
            job = _Job(layout, submitter, name, folder, results, _coarse_state(layout, folder, results))
            if job.state in ("finished", "rejected"):
                self.final[folder] = job
        return job

    def folders(self, path: str) -> list[tuple[str, str]]:
        """``(name, path)`` of each folder in ``path``, sorted by name."""
        try:
            mtime = os.lstat(path).st_mtime_ns
        except OSError:
            return []
        listed = self.listings.get(path)
        if listed is not None and listed[0] == mtime:
            return listed[1]
        folders = [(entry.name, entry.path) for entry in _subfolders(path)]
        if time.time_ns() - mtime > _SETTLED_NS:
            self.listings[path] = (mtime, folders)
        return folders


class _Watcher:
    """Wakes a running runner when something changes in the folders it names (Linux
    inotify, through ctypes; ``fd`` None without it: the runner polls). Any event, a
    queue overflow too, means "scan again"."""

    # attrib, close_write, moved_from, moved_to, create, delete, delete_self, move_self (not
    # modify: logs growing are no news); only folders, never through a symlink
    _MASK = 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x1000000 | 0x2000000

    def __init__(self) -> None:
        self.fd: int | None = None
        self.watched: dict[str, int] = {}  # folder -> watch descriptor
        with contextlib.suppress(OSError, AttributeError):  # no libc, no inotify: the runner polls
            import ctypes
            self._libc = ctypes.CDLL(None, use_errno=True)
            fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            self.fd = fd if fd >= 0 else None

    def watch(self, folders: Iterable[str]) -> bool:
        """Watch exactly ``folders``; whether any is newly watched (new, or another
        folder under its name since a rename): it may have changed before, look once more."""
        wanted, added = set(folders), False
        for folder in set(self.watched) - wanted:
            self._libc.inotify_rm_watch(self.fd, self.watched.pop(folder))
        for folder in wanted:
            descriptor = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), self._MASK)
            if descriptor >= 0 and self.watched.get(folder) != descriptor:
                self.watched[folder], added = descriptor, True
        return added

    def changed(self) -> bool:
        """Whether anything happened since the last call (the events are dropped)."""
        happened = False
        with contextlib.suppress(BlockingIOError):  # every event read
            while os.read(self.fd, 1 << 16):
                happened = True
        return happened

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _kind(entry: os.DirEntry) -> str:
    """"folder", "file" or "other" (a link, a FIFO, ...), never through a link."""
    if entry.is_dir(follow_symlinks=False):
        return "folder"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _receive(job: _Job, owner: str, datasite: str) -> str | None:
    """Give a new inbox/review job its first state, as upstream's owner client does:
    ``pending``, or ``rejected`` when malformed (not exactly code/, run.sh, config.yaml).

    :returns: why it was rejected (paths relative to ``datasite``, never the owner's
        own folders), or None.
    """
    problem = None
    try:
        with os.scandir(job.folder) as entries:
            kinds = {e.name: _kind(e) for e in entries if e.name != PERMISSION_FILE}
        if kinds != {CODE_DIR: "folder", RUN_SCRIPT: "file", CONFIG_FILE: "file"}:
            held = [_printable(name) + "/" * (kind == "folder") for name, kind in sorted(kinds.items())]
            problem = ("the submission must hold exactly code/, run.sh and config.yaml (regular files and a folder); "
                       f"it holds {', '.join(held)}")
        else:
            job.read_config()
    except (OSError, SyftJobError) as exc:
        problem = str(exc)
    now = _utc_now()
    reason = None if problem is None else _relative(problem, datasite)
    rejected = {"rejected_by": owner, "rejected_at": now, "review_reason": reason} if reason else {}
    _write_state(job, status="rejected" if reason else "pending", received_at=now, **rejected)
    return reason


def _relative(text: str, folder: str) -> str:
    """A message for a submitter: paths in ``folder`` named relative to it."""
    return text.replace(folder.rstrip("/") + "/", "")


# ---------------------------------------------------------------------------
# Claims and approvals: who runs a job, and is it still what the owner approved
# ---------------------------------------------------------------------------
#
# The runner keeps its state outside the SyftBox folder, where no submitter and no
# job can write (``work_dir``): one folder per job directory holding
#
#   jobs/<job>.json      while the job runs, the claim of the runner running it: host,
#                        pid and start time, attempt, the run's token and process group.
#                        Created with O_EXCL, so of two runners only one runs a job.
#                        When it ends, the result is added: the record of its last run.
#   jobs/<job>.cancel    a request (from `syft-job cancel`) to stop it.
#   copies/<job>-<token>/  the private working copy the job runs in.
#   seen.json            the inbox jobs already announced.
#
# A claim left by a runner that died is taken over: what the job left running is
# stopped (found by its token), and the job runs again, at most _MAX_ATTEMPTS times.
#
# Approving through this module records the sha256 of every submitted file (in the
# legacy ``approved`` marker, or beside state.yaml); a job whose files differ from
# that record when they are copied is not run.

_MAX_ATTEMPTS = 3
_MAX_RECORD_BYTES = 16 * 1024 * 1024
_held_claims: set[str] = set()  # claim files this process holds (runners in threads share a pid)


class _Site:
    """The runner's private state for one job directory (see the section comment)."""

    def __init__(self, work_dir: Path, job_dir: Path) -> None:
        self.root = work_dir / hashlib.sha256(str(job_dir).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.made: set[str] = set()  # folders made already

    def path(self, kind: str, job: _Job, suffix: str = ".json", create: bool = False) -> str:
        """The file of ``kind`` ("jobs", "copies") for ``job``; its folder made only with ``create``."""
        folder = f"{self.root}/{kind}"
        if create and folder not in self.made:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if kind == "copies":  # a root owner's jobs run as another account, which goes through to its copy
                os.chmod(self.root, 0o711)
                os.chmod(folder, 0o711)
            self.made.add(folder)
        return f"{folder}/{job.digest_key}{suffix}"

    def record(self, job: _Job) -> dict:
        """The job's claim, or the record of its last run ({} if none)."""
        return _read_json(self.path("jobs", job)) or {}

    def save(self, name: str, data: bytes) -> str:
        """Replace the file ``name`` of this state with ``data``; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _atomic_write(self.root / name, data, 0o600, durable=False)
        return str(self.root / name)

    def poke(self) -> None:
        """Tell a running runner to look at every job again (a job was changed by hand)."""
        self.save("poke", b"")

    def unprotected_markers(self) -> dict[str, list[int]]:
        """``{path: [inode, mtime_ns]}`` of the legacy ``approved`` markers that stood when
        this runner first kept their submitter from writing them: any may be forged (one
        the owner writes again is another file)."""
        return _read_json(str(self.root / "protected.json")) or {}

    def note_protected(self, path: str | None) -> None:
        """Note the markers under the folder of the permission file ``path`` (None: the
        runner changed nothing) as they are now, after the change."""
        if path is None:
            return
        folder = os.path.dirname(path)
        markers = [os.path.join(f, APPROVED_MARKER) for f in (folder, *(e.path for e in _subfolders(folder)))]
        found = {m: [st.st_ino, st.st_mtime_ns] for m in markers if (st := _or_none(os.lstat, m)) is not None}
        if found:
            self.save("protected.json", json.dumps({**self.unprotected_markers(), **found}).encode())

    def audit(self, event: str, job: _Job, by: str, **fields: Any) -> None:
        """Append a decision or a run, by whom and when, to ``audit.jsonl``, with ``prev``, the
        sha256 of the line before, so that a line edited, removed or moved shows. Locked:
        runners in several processes never mix their lines."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.root / "audit.jsonl", os.O_RDWR | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            last = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20))).rstrip(b"\n").rsplit(b"\n", 1)[-1]
            line = json.dumps({"at": _utc_now(), "event": event, "job": job.key, "layout": job.layout, "by": by,
                               **fields, "prev": hashlib.sha256(last).hexdigest() if last else None}, sort_keys=True)
            _write_all(fd, line.encode() + b"\n")
            _atomic_write(self.root / "audit.head", hashlib.sha256(line.encode()).hexdigest().encode(), 0o600,
                          durable=False)  # the last line's hash: an edit of the last line shows too
        finally:
            os.close(fd)

    def audit_lines(self) -> tuple[list[dict], str | None]:
        """The audit trail, and what is wrong with it (None: every line as written, in place)."""
        if not os.path.lexists(self.root / "audit.jsonl"):
            gone = os.path.lexists(self.root / "audit.head")  # it was there: someone removed it
            return [], "audit.jsonl was removed (its last line's hash is still there)" if gone else None
        data = _read_file(self.root / "audit.jsonl", 1 << 30)
        entries, prev = [], None
        for number, line in enumerate(data.split(b"\n")[:-1], 1):
            entry = _or_none(json.loads, line)
            if entry is not None:
                entries.append(entry)
            if len(entries) < number or not isinstance(entries[-1], dict) or entries[-1].get("prev") != prev:
                return entries, (f"line {number - 1} was edited, or the line after it removed or moved" if number > 1
                                 else "line 1 was edited, or a line before it removed")
            prev = hashlib.sha256(line).hexdigest()
        head = _or_none(_read_file, self.root / "audit.head", 64)
        if head is not None and (prev != head.decode() or not data.endswith(b"\n")):
            return entries, (f"line {len(entries)}, the last, was edited or cut, or lines after it removed"
                             if entries else "every line was removed")
        return entries, None

    def poked_at(self) -> int:
        poked = _or_none(os.stat, self.root / "poke")
        return poked.st_mtime_ns if poked else 0


@dataclasses.dataclass
class _Claim:
    """This runner's hold on one job."""

    path: str
    attempt: int
    token: str  # in the job's environment: finds every process of this run

    @property
    def cancel_path(self) -> str:  # jobs/<job>.cancel: where `syft-job cancel` asks this run to stop
        return self.path[:-len(".json")] + ".cancel"


def _read_json(path: str) -> dict | None:
    """A JSON object from a file of ours (or JSON lines, each adding to the one before,
    as a claim grows); None when missing or unreadable."""
    try:
        data = _read_file(path, _MAX_RECORD_BYTES)
        whole = _or_none(json.loads, data or b"{}")
        if whole is not None:  # else JSON lines, or nothing good
            return whole if isinstance(whole, dict) else None
        fields: dict = {}
        for line in data.splitlines():
            fields.update(json.loads(line))
        return fields
    except (SyftJobError, ValueError, TypeError, RecursionError):
        return None


def _read_proc(path: str) -> bytes:
    """A /proc file, whole (read to the end: they report a size of 0). :raises OSError:"""
    with open(path, "rb", buffering=0) as file:
        return file.read()


def _proc_stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...); None
    without /proc or when the process is gone."""
    try:
        fields = _read_proc(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (from /proc), to tell it from a later process with that pid."""
    fields = _proc_stat(pid)
    return fields[19].decode() if fields else None


@functools.lru_cache(maxsize=4)
def _own_start(pid: int) -> str | None:
    """This process's start time, read once (a forked child asks with its own pid)."""
    return _process_start(pid)


def _claim_is_stale(path: str, fields: dict | None) -> bool:
    """Whether the runner that wrote a claim is gone. An unreadable claim is being
    written now, unless older than a few seconds (a crash mid-write); one from another
    host (a shared work_dir) cannot be judged from here."""
    if fields is None:
        st = _or_none(os.lstat, path)
        return st is not None and time.time() - st.st_mtime > 10
    if fields.get("host") != socket.gethostname():
        return False
    pid = fields.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return path not in _held_claims
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another account's
        pass
    recorded = fields.get("pid_start")
    return recorded is not None and _process_start(pid) not in (None, recorded)


def _take_claim(site: _Site, job: _Job, stop_leftovers: Callable[[dict], None]) -> _Claim | None:
    """Claim a job for this runner; None when another live runner has it. The record of a
    finished run is replaced; a stale claim is taken over, after ``stop_leftovers(its fields)``."""
    path = site.path("jobs", job, create=True)
    attempt = 1
    if os.path.lexists(path):
        fields = _read_json(path)
        finished = fields is not None and "finished_at" in fields
        if not finished and not _claim_is_stale(path, fields):
            return None
        if finished and _coarse_state(job.layout, job.folder, job.results) not in ("approved", "running"):
            return None  # another runner finished it since our scan
        stale = f"{path}.{secrets.token_hex(6)}.stale"  # of runners taking it over, one wins the rename
        try:
            os.rename(path, stale)
        except FileNotFoundError:
            return None
        try:
            if _read_json(stale) != fields:  # replaced meanwhile by a live runner
                _quietly(os.link, stale, path)
                return None
            if fields and not finished:
                attempt = fields["attempt"] + 1 if isinstance(fields.get("attempt"), int) else 2
                stop_leftovers(fields)
        finally:
            os.unlink(stale)
    claim = _Claim(path, attempt, secrets.token_hex(16))
    fields = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _own_start(os.getpid()),
              "claimed_at": _utc_now(), "attempt": attempt, "token": claim.token, "job": job.key}
    _held_claims.add(path)  # before the file exists: a thread of this process may look
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    except BaseException as exc:
        _held_claims.discard(path)
        if isinstance(exc, FileExistsError):
            return None
        raise
    try:
        _write_all(fd, (json.dumps(fields) + "\n").encode())
    except BaseException:
        _release(claim)  # a full disk: no half-written claim is left behind
        raise
    finally:
        os.close(fd)
    return claim


def _add_to_claim(claim: _Claim, **fields: Any) -> None:
    """Note the started run (its process group, ...) for whoever takes the claim over."""
    with contextlib.suppress(OSError):  # a full disk: the job runs all the same
        fd = os.open(claim.path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
        try:
            _write_all(fd, (json.dumps(fields) + "\n").encode())
        finally:
            os.close(fd)


def _release(claim: _Claim) -> None:
    if claim.path in _held_claims:
        _held_claims.discard(claim.path)
        _quietly(os.unlink, claim.path)


def _discard(claim: _Claim, copy: str) -> None:
    """Remove the private copy, give the claim up, and any cancel request and Slurm job id."""
    for note in (claim.cancel_path, claim.path[:-len(".json")] + ".slurm"):
        _quietly(os.unlink, note)
    _release(claim)
    if os.path.lexists(copy):
        shutil.rmtree(copy, ignore_errors=True)
        if os.path.lexists(copy):  # nested too deep for rmtree: let rm do it
            subprocess.run(["rm", "-rf", "--", copy], capture_output=True)


def _submission(job: _Job, copy_to: int | None = None) -> dict[str, str]:
    """What the submitter sent: ``{relative path: sha256}`` of every file of the job folder
    but the owner's and the runner's, links never followed. With ``copy_to`` (an open
    folder), also copied there: what is copied is exactly what was hashed."""
    top = job.protocol.runner_names
    with _folder(job.folder) as fd:
        return _copy_tree(fd, copy_to, lambda rel: rel in top)


def _digest(files: dict[str, str]) -> str:
    """One sha256 for a whole submission (what ``approve --digest`` compares)."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _code_digest(files: dict[str, str]) -> str:
    """The digest of all but config.yaml, which changes with each submission (what ``trust`` compares)."""
    return _digest({rel: sha for rel, sha in files.items() if rel != CONFIG_FILE})


def _approval_path(job: _Job) -> str:
    return os.path.join(job.results, job.protocol.approval_file)


def _approval(job: _Job, path: str | None = None) -> tuple[dict[str, str] | None, str]:
    """``(the submission recorded at approval, the approval's fingerprint)``. The files are
    None without a record (an empty ``approved``, another client's approval). A legacy
    job finished for this fingerprint never runs again, even if its ``done`` marker goes.

    :param path: the record to read; default the one beside the job's state.
    """
    path = path or _approval_path(job)
    try:
        data = _read_file(path, _MAX_RECORD_BYTES)
        fingerprint = hashlib.sha256(data + str(os.lstat(path).st_mtime_ns).encode()).hexdigest()
    except (OSError, SyftJobError):
        return None, ""
    record = _or_none(json.loads, data or b"null")
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict) and all(isinstance(v, str) for v in files.values()):
        return files, fingerprint
    return None, fingerprint


def _changes(approved: dict[str, str], now: dict[str, str]) -> str | None:
    """What differs between two submissions, said for people; None if nothing."""
    changes = [f"{what}: {', '.join(_printable(n) for n in sorted(names))}" for what, names in (
        ("changed", {n for n in now.keys() & approved.keys() if now[n] != approved[n]}),
        ("added", now.keys() - approved.keys()), ("removed", approved.keys() - now.keys())) if names]
    return "; ".join(changes) or None


@dataclasses.dataclass(frozen=True)
class _Status:
    """A word of STATUSES, and for a finished or rejected job its return code and reason."""

    status: str
    return_code: int | None = None
    reason: str | None = None


def _status(job: _Job, site: _Site | None = None, read: Callable[[str], str | None] | None = None) -> _Status:
    """The one place a job's status is decided (see the Discovery section's comment).

    :param read: gives a file of the job's results as text, None where there is none or
        the viewer may not read it; default: all.
    :param site: the runner's state, for the owner's closer look: "running" only while a
        live runner has it, "interrupted", "changed", and the run's own record.
    """
    read = read or (lambda name: (_or_none(_read_file, os.path.join(job.results, name), 16 << 20, truncate=True)
                                  or b"").decode("utf-8", "replace") if os.path.lexists(os.path.join(job.results, name))
                    else None)
    if job.protocol.markers:
        marked = {marker: read(marker) for marker in (REJECTED_MARKER, DONE_MARKER, APPROVED_MARKER)}
        if marked[REJECTED_MARKER] is not None:
            return _Status("rejected", None, marked[REJECTED_MARKER].strip() or None)
        word, state = ("approved" if marked[APPROVED_MARKER] is not None else "pending"), {}
        if marked[DONE_MARKER] is not None:
            record = _or_none(json.loads, marked[DONE_MARKER] or "{}")
            word, state = "done", record if isinstance(record, dict) else {}
    else:
        state = _or_none(load_yaml, read(STATE_FILE) or "{}")
        state = state if isinstance(state, dict) else {}
        word = state.get("status")
        word = word if isinstance(word, str) and word in _STATE_STATUSES else "pending"
    status = _STATUS_OF_WORD[word]
    code, reason = state.get("return_code"), state.get("review_reason") or state.get("rejection_reason")
    record = site.record(job) if site is not None else {}
    if status in ("approved", "running") and site is not None:
        status = _claimed_status(job, site, status, record)
    if status in ("done", "failed"):  # the runner's record, where there is one, knows best
        finished = record if "finished_at" in record else {}
        code = finished.get("return_code", code)
        if code is None:
            code = _or_none(int, read(RETURNCODE_FILE) or "")
        if job.protocol.markers:  # the done marker says finished; the return code says how
            status = "done" if code in (0, None) else "failed"
        reason = finished.get("reason") or reason
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    return _Status(status, code if status in ("done", "failed") else None, None if reason is None else str(reason))


def _claimed_status(job: _Job, site: _Site, status: str, record: dict) -> str:
    """An approved or running job, looked at closer: running, interrupted, changed or approved."""
    claim = site.path("jobs", job)
    if os.path.lexists(claim) and "finished_at" not in record:
        return "interrupted" if _claim_is_stale(claim, record or None) else "running"
    if status == "running":
        return "interrupted"
    approved = _approval(job)[0]
    current = _or_none(_submission, job) if approved is not None else None
    return "changed" if current is not None and approved != current else "approved"


def _slurm_job_id(site: _Site, job: _Job) -> int | None:
    """The Slurm job id of the job's run through srun, which notes it (None otherwise)."""
    return _or_none(int, _or_none(_read_file, site.path("jobs", job, ".slurm"), 64) or b"")


# ---------------------------------------------------------------------------
# Sharing: SyftBox permissions, judged and written, private until the owner shares
# ---------------------------------------------------------------------------
#
# For a path, SyftBox uses only the nearest syft.pub.yaml above it (a terminal one ends the way
# down), and in it the most specific matching pattern: a literal path beats "*/...", which beats "**",
# under both of SyftBox's engines. A submitter's folder usually grants it write (inbox, legacy) or read
# (review) on "**"; the runner adds more specific rules to the same file:
#
#   legacy <submitter>/:  */stdout.txt, */stderr.txt, */returncode.txt, */outputs/**  nobody
#                         */approved, */done, */rejected        read: the submitter
#   review/<submitter>/:  the same logs and outputs/**, under */ and v1/*/       nobody
#                         */state.yaml, v1/*/state.yaml           read: the submitter
#   when shared:          <job>/stdout.txt ... <job>/outputs/**   read: the submitter

_ACCESS_LEVELS = ("read", "write", "admin")  # each includes the ones before it
_GRANTING = {level: _ACCESS_LEVELS[i:] for i, level in enumerate(_ACCESS_LEVELS)}  # the levels giving each
_PRIVATE_NAMES = (*_LOG_FILES, f"{OUTPUTS_DIR}/**")
_MAX_PERMISSION_BYTES = 16 * 1024 * 1024
# The syft.pub.yaml files this process last read or wrote, by path: (identity, data, header).
# A submitter's file grows with every shared job: reading it again for each job would cost more and more.
_permission_files: dict[str, tuple[tuple[int, int, int] | None, dict, str]] = {}
_GLOB_PARTS = {"**/": "(?:[^/]+/)*", "**": ".*", "*": "[^/]*", "?": "[^/]"}
_NEVER = re.compile(r"(?!)")


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern:
    """A SyftBox pattern as a regex (``*``, ``?``, ``**``, ``[...]``, ``{a,b}``, ``\\``); ``[z-a]`` matches nothing."""
    out = []
    for part in re.split(r"(\*\*/|\*\*$|\\.|\*|\?|\[[^\]]*\]|\{[^}]*\})", pattern):
        if not part or (part == "*" and out[-1:] == ["[^/]*"]):
            continue  # "***x" is "*x": a run of stars would backtrack without end
        if part in _GLOB_PARTS:
            out.append(_GLOB_PARTS[part])
        elif part[:1] == "[":
            out.append("[" + part[1:-1].replace("!", "^", 1) + "]")
        elif part[:1] == "{":
            out.append("(?:" + "|".join(map(re.escape, part[1:-1].split(","))) + ")")
        else:
            out.append(re.escape(part[1:] if part[:1] == "\\" else part))
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return _NEVER


def _rank(pattern: str) -> tuple:
    """SyftBox's specificity, higher first: template, literal segments, wildcard segments, fewer ``**``, length."""
    segments = pattern.split("/")
    literal = [not re.search(r"(?<!\\)[*?\[\]{}]", s) for s in segments]
    return ("{{.UserEmail}}" in pattern, sum(literal),
            sum(1 for s, lit in zip(segments, literal) if not lit and s != "**"), -segments.count("**"), len(segments))


def _access(rule: Any, level: str) -> list:
    access = rule.get("access") if isinstance(rule, dict) else None
    users = access.get(level) if isinstance(access, dict) else None
    return users if isinstance(users, list) else []


def _file_identity(path: str) -> tuple[int, int, int] | None:
    """What changes whenever a file is replaced or written: inode, size, mtime."""
    st = _or_none(os.lstat, path)
    return (st.st_ino, st.st_size, st.st_mtime_ns) if st else None


def _load_permissions(path: str) -> tuple[dict, str]:
    """A syft.pub.yaml as ``(data, its leading comment lines)``; empty if missing."""
    if not os.path.lexists(path):
        return {"terminal": False, "rules": []}, ""
    known = _permission_files.get(path)
    if known is not None and known[0] == _file_identity(path):
        return known[1], known[2]
    text = _read_text(path, _MAX_PERMISSION_BYTES)
    data = load_yaml(text, path) or {}
    if not isinstance(data, dict) or not isinstance(data.get("rules") or [], list):
        raise JobError(f"{_printable(path)}: not a SyftBox permission file (expected a 'rules:' list)")
    data.setdefault("terminal", False)
    data["rules"] = data.get("rules") or []
    header = "".join(line + "\n" for line in re.match(r"(?:[ \t]*(?:#.*)?\n)*", text).group().splitlines()).strip("\n")
    header = header + "\n" if header else ""
    _permission_files[path] = (_file_identity(path), data, header)
    return data, header


def _may(syftbox: str | os.PathLike, owner: str, user: str, path: str, level: str) -> bool:
    """Whether ``user`` may ``level`` ``path`` in ``owner``'s datasite (a syft.pub.yaml needs admin). Reading is
    judged as SyftBox does (the nearest file; an unreadable one grants nothing). Writing fails closed, since a
    wrong "no" would trust a forged approval: an unreadable permission file, a rule or name not read exactly
    (a glob in an email, USER, a template), or a grant in any syft.pub.yaml on the way down is a "may"."""
    if user == owner:
        return True
    cautious = level != "read"
    datasite = os.path.join(os.fspath(syftbox), owner)
    parts = os.path.relpath(path, datasite).split(os.sep)
    level = "admin" if parts[-1] == PERMISSION_FILE else level
    files = []
    for depth in range(len(parts)):  # from the datasite down to the file's own folder
        candidate = os.path.join(datasite, *parts[:depth], PERMISSION_FILE)
        if os.path.lexists(candidate) and (cautious or (os.path.isfile(candidate) and not os.path.islink(candidate))):
            try:
                data = _load_permissions(candidate)[0]
            except (OSError, SyftJobError):
                if cautious:
                    return True
                data = {"rules": []}
            files.append((depth, data))
            if data.get("terminal") is True and not cautious:
                break
    for depth, data in files if cautious else files[-1:]:
        if cautious and not all(_understood(rule) for rule in data["rules"]):
            return True
        target = "/".join(parts[depth:])
        rules = [r for r in data["rules"] if isinstance(r, dict) and isinstance(r.get("pattern"), str)
                 and _glob(r["pattern"].replace("{{.UserEmail}}", user)).match(target)]
        best = max(rules, key=lambda r: _rank(r["pattern"]), default=None)  # max keeps the first of equals
        if best is not None and any(_grants(name, user, cautious) for higher in _GRANTING[level]
                                    for name in _access(best, higher)):
            return True
    return False


_PLAIN_GRANTEE = re.compile(r"(?:\*|(?:\*@)?[^*?\[\]{}\s@]+@[^*?\[\]{}\s@]+)\Z")  # anyone, an email, "*@domain"


def _grants(name: Any, user: str, cautious: bool) -> bool:
    """Whether a name in an access list grants to ``user``; ``cautious``: also any name not read exactly."""
    return name in ("*", user, "*@" + user.partition("@")[2]) or (
        cautious and not (isinstance(name, str) and _PLAIN_GRANTEE.match(name)))


def _understood(rule: Any) -> bool:
    """A rule of the shape SyftBox writes: a pattern (no template but the user's email), a list per level."""
    if not isinstance(rule, dict) or not isinstance(rule.get("pattern"), str):
        return False
    access, pattern = rule.get("access"), rule["pattern"].replace("{{.UserEmail}}", "")
    return "{{" not in pattern and _glob(pattern) is not _NEVER and isinstance(access, dict) and all(
        isinstance(access.get(level) or [], list) for level in _ACCESS_LEVELS)


def _edit_permissions(path: str, submitter: str, wanted: Sequence[tuple[str, Sequence[str], Sequence[str]]],
                      unshare: Sequence[str] = ()) -> bool:
    """Bring the syft.pub.yaml ``path`` up to date, atomically and under a lock: each ``(pattern, readers,
    writers)`` of ``wanted`` is there (users added to a rule with that pattern), ``submitter`` reads none of
    the ``unshare`` patterns (a rule left with nobody goes), other rules are kept. Whether it changed."""
    with _folder(os.path.dirname(path)) as fd:
        _quietly(fcntl.flock, fd, fcntl.LOCK_EX)  # a file system without locks: go on unlocked
        if os.path.islink(path):
            raise JobError(f"{_printable(path)}: is a symlink; refusing to edit permissions through it")
        data, header = _load_permissions(path)
        data = {**data, "rules": [dict(r) if isinstance(r, dict) else r for r in data["rules"]]}
        by_pattern = {r["pattern"]: r for r in data["rules"] if isinstance(r, dict) and isinstance(r.get("pattern"), str)}
        added, changed = [], not os.path.lexists(path)
        for pattern, read, write in wanted:
            rule = by_pattern.get(pattern)
            if rule is None:
                access = {"admin": [], "read": list(read), "write": list(write)}
                rule = by_pattern[pattern] = {"pattern": pattern, "access": access}
                added.append(rule)
                continue
            for level, users in (("read", read), ("write", write)):
                missing = [u for u in users if not any(u in _access(rule, lvl) for lvl in _GRANTING[level])]
                if missing:
                    rule["access"] = {**(rule.get("access") if isinstance(rule.get("access"), dict) else {}),
                                      level: _access(rule, level) + missing}
                    changed = True
        for pattern in unshare:
            rule = by_pattern.get(pattern)
            if rule is not None and submitter in _access(rule, "read"):
                rule["access"] = {**rule["access"], "read": [u for u in _access(rule, "read") if u != submitter]}
                if not any(_access(rule, level) for level in _ACCESS_LEVELS):
                    data["rules"].remove(rule)
                changed = True
        if added:  # specific rules first, as people write them; the order does not change their meaning
            data["rules"] = [r for r in added if r["pattern"] != "**"] + data["rules"] + [
                r for r in added if r["pattern"] == "**"]
            changed = True
        if changed:
            _write_at(fd, PERMISSION_FILE, (header + dump_yaml(data)).encode("utf-8"))
            _permission_files[path] = (_file_identity(path), data, header)
        return changed


def _governing_file(job: _Job) -> tuple[str, str]:
    """The syft.pub.yaml that decides access to a job's results, and the prefix of the job's patterns in it."""
    return job.protocol.rules(job.results, job.name)


def _protections(layout: _Layout, submitter: str, prefix: str = "*/") -> list[tuple[str, list, list]]:
    """The rules keeping a submitter's results private and its status readable; ``prefix`` "" in a job's own folder."""
    if layout.markers:
        return [(prefix + n, [], []) for n in _PRIVATE_NAMES] + [
            (prefix + n, [submitter], []) for n in (APPROVED_MARKER, DONE_MARKER, REJECTED_MARKER)]
    levels = ["*/", *(f"{other.level}/*/" for other in _LAYOUTS.values() if other.level)]  # one file for them all
    return [(level + n, [], []) for level in levels for n in _PRIVATE_NAMES] + [
        (level + STATE_FILE, [submitter], []) for level in levels]


def _protect(job: _Job, own_folder: bool = False) -> str | None:
    """Add the protections to the syft.pub.yaml of the job's submitter folder or (``own_folder``) legacy job
    folder; a legacy one only if it exists (the owner's own files are not ours to edit) and lets the submitter
    write (else nothing is needed). The file, if it changed (the submitter could write there until now)."""
    if not job.protocol.markers:
        path, prefix = _governing_file(job)[0], "*/"
    else:
        path = os.path.join(job.folder if own_folder else os.path.dirname(job.folder), PERMISSION_FILE)
        prefix = "" if own_folder else "*/"
        if not os.path.isfile(path) or os.path.islink(path) or not any(
                _grants(name, job.submitter, True) for rule in _load_permissions(path)[0]["rules"]
                for level in ("write", "admin") for name in _access(rule, level)):
            return None
    return path if _edit_permissions(path, job.submitter, _protections(job.protocol, job.submitter, prefix)) else None


def _share(job: _Job, share_outputs: bool, share_logs: bool, undo: bool = False) -> None:
    """Grant (or with ``undo`` take back) the submitter's read access to a finished job's outputs and/or logs."""
    outputs = os.path.join(job.results, OUTPUTS_DIR)
    if share_outputs and not undo and os.path.lexists(outputs) and (os.path.islink(outputs) or not os.path.isdir(outputs)):
        raise JobError(f"the {OUTPUTS_DIR}/ of job {job.label} is not a folder (the job replaced it with a symlink "
                       "or a file?); nothing shared")
    path, prefix = _governing_file(job)
    patterns = [prefix + n for n in _LOG_FILES if share_logs]
    own = os.path.join(outputs, PERMISSION_FILE)
    if share_outputs and os.path.lexists(own):  # a file in outputs/ (other tools write one) decides for it
        _edit_permissions(own, job.submitter, [] if undo else [("**", [job.submitter], [])],
                          _patterns_in(own, "") if undo else ())
    elif share_outputs:
        patterns.append(f"{prefix}{OUTPUTS_DIR}/**")
    if undo and os.path.lexists(path):  # the files released one by one too
        patterns += [p for p in _patterns_in(path, prefix) if p[len(prefix):].startswith((f"{OUTPUTS_DIR}/", *_LOG_FILES))]
    if patterns and (not undo or os.path.lexists(path)):
        wanted = [] if undo else [(p, [job.submitter], []) for p in patterns]
        if not undo and not job.protocol.markers:
            wanted += _protections(job.protocol, job.submitter)
        _edit_permissions(path, job.submitter, wanted, patterns if undo else ())


def _patterns_in(path: str, prefix: str) -> list[str]:
    """The patterns of a permission file that start with ``prefix``."""
    return [r["pattern"] for r in _load_permissions(path)[0]["rules"]
            if isinstance(r, dict) and isinstance(r.get("pattern"), str) and r["pattern"].startswith(prefix)]


def _grant_files(job: _Job, paths: Sequence[str]) -> None:
    """Let the submitter read exactly these result files (``stdout.txt``, ``outputs/table.csv``)."""
    path, prefix = _governing_file(job)
    own = os.path.join(job.results, OUTPUTS_DIR, PERMISSION_FILE)
    if os.path.lexists(own):  # a file in outputs/ (other tools write one) decides for what is under it
        inside = [p[len(OUTPUTS_DIR) + 1:] for p in paths if p.startswith(f"{OUTPUTS_DIR}/")]
        _edit_permissions(own, job.submitter, [(_glob_escape(p), [job.submitter], []) for p in inside])
        paths = [p for p in paths if not p.startswith(f"{OUTPUTS_DIR}/")]
    if paths:
        _edit_permissions(path, job.submitter, [(prefix + _glob_escape(p), [job.submitter], []) for p in paths] + (
            _protections(job.protocol, job.submitter) if not job.protocol.markers else []))


def _result_hashes(job: _Job, outputs: bool = True, logs: bool = True) -> dict[str, str]:
    """``{path in the results: sha256}`` of a finished job's logs and outputs, read through file descriptors."""
    with _folder(job.results) as fd:
        hashes = {name: sha for name in (_LOG_FILES if logs else ()) if (sha := _or_none(_copy_file, fd, name, None))}
        if outputs and os.path.isdir(os.path.join(job.results, OUTPUTS_DIR)):
            with contextlib.suppress(OSError, SyftJobError), _folder(os.path.join(job.results, OUTPUTS_DIR)) as out:  # gone
                hashes.update((f"{OUTPUTS_DIR}/{rel}", sha) for rel, sha in _copy_tree(out, None).items())
    return hashes


# Output checking before results leave the datasite, as trusted research environments do it (OpenSAFELY's
# job runner: the file types, 16 MB, 5,000 CSV rows; SACRO/ACRO: cell counts under 10). A flag is a reason
# to look, and to name the file to release it.
_OUTPUT_CHECKS = {"min_count": 10, "max_rows": 5000, "max_file_mb": 16, "allowed_types": [
    ".csv", ".jpg", ".jpeg", ".png", ".svg", ".svgz", ".html", ".pdf", ".txt", ".log", ".json", ".md"]}
_IDENTIFIER_COLUMN = re.compile(r"(?:id|.+_id|e-?mail|.*name|nhs_?number|ssn|dob|date_of_birth|birth_?date|address"
                                r"|post_?code|zip_?code|phone|mobile)\Z", re.I)
_SMALL_INTEGER = re.compile(r"\s*\+?[0-9]{1,9}\s*\Z")


def _output_checks(overrides: dict | None) -> dict:
    """The thresholds of the checks: the defaults, with ``overrides``.
    :raises ConfigError: an unknown name or a value that is not positive."""
    checks = dict(_OUTPUT_CHECKS)
    for name, value in (overrides or {}).items():
        if name not in checks:
            raise ConfigError(f"output_checks: {name!r} is none of {', '.join(checks)}")
        checks[name] = [str(t).lower() for t in value] if name == "allowed_types" else _positive(value, name)
    return checks


def _result_reports(job: _Job, checks: dict) -> list[dict]:
    """The report of a job's logs, then of each regular file under outputs/ (walked by fd, links never followed)."""
    reports: list[dict] = []

    def check(folder_fd: int, name: str, rel: str) -> None:
        with contextlib.suppress(OSError, SyftJobError):  # gone or changed while checked: not reported
            if stat.S_ISREG(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode):
                reports.append(_check_result(folder_fd, name, rel, checks))

    with _folder(job.results) as fd:
        for name in (STDOUT_FILE, STDERR_FILE):
            check(fd, name, name)
        for root, folders, files, root_fd in os.fwalk(OUTPUTS_DIR, dir_fd=fd) if _exists_at(fd, OUTPUTS_DIR) else ():
            folders.sort()  # (fwalk gives nothing when outputs/ is a link)
            for name in sorted(files):
                check(root_fd, name, f"{root}/{name}")
    return reports


def _check_result(dir_fd: int, name: str, rel: str, checks: dict) -> dict:
    """One result file as the owner reviews it before release, with the checks' flags (one read; a small CSV: two)."""
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    size = lines = 0
    head, last, text = b"", b"\n", True
    fd = _open_regular(name, dir_fd)
    try:
        for block in iter(functools.partial(os.read, fd, 1 << 20), b""):
            digest.update(block)
            size, lines, last = size + len(block), lines + block.count(b"\n"), block[-1:]
            head += block[:max(0, 65536 - len(head))]
            text = text and _or_none(decoder.decode, block) is not None  # None: not UTF-8
    finally:
        os.close(fd)
    text = text and b"\0" not in head and decoder.getstate()[0] == b""
    if last != b"\n":  # a last line without its newline
        lines += 1
    report = {"path": rel, "size": size, "sha256": digest.hexdigest(), "text": text, "lines": lines,
              "first_lines": [_printable(line) for line in head[:4096].decode("utf-8", "replace").splitlines()[:5]]
              if text else [],
              "flags": [flag for flag, hit in (
                  ("file-type", not rel.lower().endswith(tuple(checks["allowed_types"]))),
                  ("large-file", size > checks["max_file_mb"] * 1024 * 1024), ("not-utf8", not text)) if hit]}
    if text and rel.lower().endswith(".csv"):
        report.update(_check_csv(dir_fd, name, lines, "large-file" not in report["flags"], checks, report["flags"]))
    return report


def _check_csv(dir_fd: int, rel: str, lines: int, small: bool, checks: dict, flags: list[str]) -> dict:
    """A CSV's shape; flags many rows, identifier columns and small counts (cells read only if ``small``)."""
    fd = _open_regular(rel, dir_fd)
    with open(fd, encoding="utf-8", newline="", errors="replace") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        rows = max(lines - 1, 0)
        if small and rows <= checks["max_rows"]:
            rows = 0
            for row in reader:
                rows += 1
                if "small-count" not in flags and any(
                        _SMALL_INTEGER.match(cell) and 1 <= int(cell) < checks["min_count"] for cell in row):
                    flags.append("small-count")
    flags += [flag for flag, hit in (("many-rows", rows > checks["max_rows"]),
                                     ("identifier-column", any(_IDENTIFIER_COLUMN.match(h.strip()) for h in header)))
              if hit]
    return {"csv": {"rows": rows, "columns": len(header), "header": [_printable(h) for h in header]}}


def _what_is_shared(job: _Job, syftbox: Path, owner: str) -> list[str]:
    """What the submitter can read of a job's results: "logs", "outputs", "N output(s)" released one by one."""
    shared = [what for what, name in (("logs", STDOUT_FILE), ("outputs", f"{OUTPUTS_DIR}/f"))
              if _may(syftbox, owner, job.submitter, os.path.join(job.results, name), "read")]
    path, prefix = _governing_file(job)
    one_by_one = [p for p in _or_none(_patterns_in, path, f"{prefix}{OUTPUTS_DIR}/") or ()
                  if p != f"{prefix}{OUTPUTS_DIR}/**"]
    if one_by_one and "outputs" not in shared:
        shared.append(f"{len(one_by_one)} output(s)")
    return shared


# ---------------------------------------------------------------------------
# Isolation: what a running job can reach
# ---------------------------------------------------------------------------
#
# Every job runs in a private copy of what was approved, in a process group of its own, with a run
# token in its environment, and never as root: a root owner's jobs run as an unprivileged account
# (run_as, default "nobody"; util-linux's setpriv switches to it, with no capabilities and no way to
# gain any), other owners' jobs as the owner. On top of that:
#
#   sandbox  (bubblewrap) its own PID namespace, so every process it makes dies with it; no
#            capabilities; a seccomp filter (x86_64, aarch64) refuses ptrace, keyrings, bpf, kernel
#            modules, mounts and new user namespaces; /proc/sys and the like read-only, /proc/kcore
#            and the like hidden, no /sys; writes only to its copy and a private /tmp; reads the
#            system, the SyftBox folder without any app_data/job tree (the owner's datasets in
#            <owner>/private/ stay readable), uv and its Pythons, and what allow_read adds; never
#            the owner's home or the runner's state. With network=False, only loopback.
#   none     no sandbox: it runs with the rights of its account.
#
# Always, on Linux: the runner cannot be read through /proc by its jobs (it is not dumpable), and
# orphans are adopted by the runner (a subreaper) and stopped with their job, found by the run
# token. The kernel is the host's: a kernel bug is the sandbox's limit.

_SYSTEM_FOLDERS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
# Docker's read-only and masked /proc paths (moby oci/defaults.go); /sys is not mounted.
_PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
_PROC_HIDDEN = ("acpi", "asound", "kcore", "keys", "latency_stats", "sched_debug", "scsi", "timer_list", "timer_stats")
_JOB_ENV_VAR = "SYFT_JOB_RUN_TOKEN"  # finds every process of a run, whatever group it left for
_JOB_UIDS = 0x70000000  # a root owner's runs get uids from here on, one each (2^24 of them)
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36
_hardened: list[bool] = []  # the runner process has been hardened (once per process)


@dataclasses.dataclass(frozen=True)
class _Account:
    """The unprivileged account a root owner's jobs run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def can_reach(self, path: str, read: bool = False) -> bool:
        """Whether this account can go through every folder to ``path`` (and, with ``read``, read it): mode bits."""
        parts = Path(path).parts
        for depth in range(1, len(parts) + 1):
            try:
                st = os.stat(os.path.join(*parts[:depth]))
            except OSError:
                return False
            # x (1) to go through a folder; at the end, r (4) to read it, and x too if it is a folder
            need = (4 * read + stat.S_ISDIR(st.st_mode)) if depth == len(parts) else 1
            if st.st_uid == self.uid:
                bits = st.st_mode >> 6
            elif st.st_gid in (self.gid, *self.groups):
                bits = st.st_mode >> 3
            else:
                bits = st.st_mode
            if bits & need != need:
                return False
        return True

    def for_run(self, token: str) -> _Account:
        """The account one run runs as: a uid of its own (with this account's groups), so
        that no two jobs, and nothing a job left behind, can reach each other's processes."""
        return dataclasses.replace(self, uid=_JOB_UIDS + int(token[:6], 16))

    def give(self, folder: str) -> None:
        """Make a private copy (made by the runner, never reached by a job yet) its own;
        others may go through it (bubblewrap, root without capabilities, enters it)."""
        os.chmod(folder, 0o711)
        for parent, folders, files in os.walk(folder):
            os.chown(parent, self.uid, self.gid)
            for name in folders + files:
                os.chown(os.path.join(parent, name), self.uid, self.gid, follow_symlinks=False)


def _job_account(run_as: str | None) -> _Account | None:
    """The account jobs run as when the runner is root; None when it is not (jobs run as
    the owner). :raises ConfigError: an unknown account, root, or no setpriv."""
    if os.geteuid() != 0:
        if run_as is not None:
            raise ConfigError(f"run_as={run_as!r}: only a runner started as root runs jobs as another account; "
                              "yours run as you")
        return None
    try:
        entry = pwd.getpwuid(int(run_as)) if str(run_as).isdigit() else pwd.getpwnam(run_as or "nobody")
    except (KeyError, OverflowError):
        raise ConfigError(f"run_as: there is no account {run_as or 'nobody'!r} on this machine "
                          "(create one, e.g. useradd --system syft-jobs)") from None
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)) - {entry.pw_gid}))
    if 0 in (entry.pw_uid, entry.pw_gid, *groups):
        raise ConfigError(f"run_as: {entry.pw_name} is root or in root's group; jobs must not run with root's rights")
    if _setpriv() is None:
        raise ConfigError("a root runner switches jobs to an unprivileged account with util-linux's setpriv, "
                          "which is not on PATH (Debian/Ubuntu: apt install util-linux)")
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _setpriv() -> str | None:
    return shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")


def _switch_to(account: _Account | None) -> list[str]:
    """A prefix that runs a command as ``account``, without capabilities and unable to
    gain any (setuid programs included); nothing when jobs run as the owner."""
    if account is None:
        return []
    groups = f"--groups={','.join(map(str, account.groups))}" if account.groups else "--clear-groups"
    return [_setpriv(), f"--reuid={account.uid}", f"--regid={account.gid}", groups,
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


# The seccomp filter's system calls: x86_64 from <asm/unistd_64.h>, aarch64 from <asm-generic/unistd.h>.
# Each fails with EPERM, but clone and unshare only when they make a user namespace, and clone3 with ENOSYS
# (its flags are out of the filter's sight; glibc then falls back to clone). Docker's profile refuses these too.
_SYSCALLS_X86_64 = dict(
    ptrace=101, process_vm_readv=310, process_vm_writev=311, keyctl=250, add_key=248, request_key=249, bpf=321,
    perf_event_open=298, userfaultfd=323, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
    kexec_load=246, kexec_file_load=320, init_module=175, finit_module=313, delete_module=176, mount=165,
    umount2=166, pivot_root=155, setns=308, acct=163, swapon=167, swapoff=168, reboot=169, settimeofday=164,
    clock_settime=227, clock_adjtime=305, open_by_handle_at=304, name_to_handle_at=303, lookup_dcookie=212,
    quotactl=179, fsopen=430, fsmount=432, fsconfig=431, fspick=433, move_mount=429, open_tree=428, kcmp=312,
    iopl=172, ioperm=173, uselib=134, create_module=174, get_kernel_syms=177, query_module=178, _sysctl=156,
    ustat=136, sysfs=139, clone=56, unshare=272, clone3=435)
_SYSCALLS_AARCH64 = dict(
    ptrace=117, process_vm_readv=270, process_vm_writev=271, keyctl=219, add_key=217, request_key=218, bpf=280,
    perf_event_open=241, userfaultfd=282, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
    kexec_load=104, kexec_file_load=294, init_module=105, finit_module=273, delete_module=106, mount=40,
    umount2=39, pivot_root=41, setns=268, acct=89, swapon=224, swapoff=225, reboot=142, settimeofday=170,
    clock_settime=112, clock_adjtime=266, open_by_handle_at=265, name_to_handle_at=264, lookup_dcookie=18,
    quotactl=60, fsopen=430, fsmount=432, fsconfig=431, fspick=433, move_mount=429, open_tree=428, kcmp=272,
    clone=220, unshare=97, clone3=435)


def _seccomp_filter() -> bytes | None:
    """The sandbox's seccomp filter (classic BPF, ``struct sock_filter[]``) for ``bwrap --seccomp FD``; None
    on machines other than x86_64 and aarch64. Every jump is short: the architecture (a foreign ABI gets EPERM),
    x32 refused, a ``jeq nr; ret EPERM`` pair per call, clone3, then clone/unshare with CLONE_NEWUSER."""
    machine = os.uname().machine
    if machine not in ("x86_64", "aarch64"):
        return None
    audit_arch, table = (0xC000003E, _SYSCALLS_X86_64) if machine == "x86_64" else (0xC00000B7, _SYSCALLS_AARCH64)
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|J*|K, BPF_RET|K
    eperm, enosys, allow = 0x50000 | errno.EPERM, 0x50000 | errno.ENOSYS, 0x7FFF0000  # SECCOMP_RET_ERRNO, _ALLOW
    program = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, eperm), (ld, 0, 0, 0)]
    if machine == "x86_64":
        program += [(jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]
    for name, number in table.items():
        if name not in ("clone", "unshare", "clone3"):
            program += [(jeq, 0, 1, number), (ret, 0, 0, eperm)]
    program += [(jeq, 0, 1, table["clone3"]), (ret, 0, 0, enosys),
                (jeq, 1, 0, table["unshare"]), (jeq, 0, 3, table["clone"]),
                (ld, 0, 0, 16), (jset, 0, 1, 0x10000000), (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


@functools.lru_cache(maxsize=None)
def _bwrap() -> str | None:
    """bubblewrap's ``bwrap``, if it is installed and can make a sandbox on this machine."""
    path = shutil.which("bwrap")
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # it cannot even start: no sandbox
        probe = [path, "--ro-bind", "/", "/", "--unshare-pid", "--die-with-parent", "--cap-drop", "ALL", "true"]
        if path and subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=30).returncode == 0:
            return path
    return None


def _resolve_isolation(mode: str) -> str:
    """"sandbox" or "none", for the ``isolation`` the owner asked for.
    :raises ConfigError: an unknown mode, or "sandbox" where none can be made."""
    if mode not in ISOLATION_MODES:
        raise ConfigError(f"isolation must be one of {', '.join(ISOLATION_MODES)}, got {mode!r}")
    if mode == "none" or (mode == "auto" and _bwrap() is None):
        return "none"
    if _bwrap() is None:
        raise ConfigError("isolation 'sandbox': no sandbox can be made here: bubblewrap's bwrap is not on PATH or "
                          "cannot create namespaces (Debian/Ubuntu: apt install bubblewrap)")
    return "sandbox"


def _harden_runner(console: _Console) -> None:
    """Once per process: not dumpable (jobs cannot read its /proc files: environment, memory, descriptors)
    and a subreaper (a job's orphans become its children, so they can be found and stopped)."""
    if _hardened:
        return
    _hardened.append(True)
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) or prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError) as exc:
        console.say(f"⚠️ Jobs can read this runner's memory and may leave processes behind on this system ({exc}); "
                    "run it on Linux, with bubblewrap, for isolation")


@functools.lru_cache(maxsize=None)
def _find_program(name: str, search_path: str) -> str | None:
    """``shutil.which``, once: a plain "bash" would make every job's child try each PATH entry in turn."""
    return shutil.which(name, path=search_path)


@functools.lru_cache(maxsize=1)
def _system_mounts() -> tuple[str, ...]:
    """bwrap's arguments, looked at once, for /proc's read-only and hidden parts and the system's folders."""
    argv: list[str] = []
    for path in ("/proc/" + name for name in _PROC_READ_ONLY):
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for path in ("/proc/" + name for name in _PROC_HIDDEN):
        if os.path.isdir(path):
            argv += ["--tmpfs", path, "--remount-ro", path]
        elif os.path.exists(path):
            argv += ["--ro-bind", "/dev/null", path]
    for path in ("/" + name for name in _SYSTEM_FOLDERS):
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return tuple(argv)


def _sandbox_argv(copy: str, syftbox: Path | None, reads: Sequence[str], network: bool, account: _Account | None,
                  seccomp_fd: int | None, more: Sequence[str] = ()) -> list[str]:
    """bwrap's arguments for a job in ``copy`` (see the section comment): ``syftbox`` readable but for its job
    trees (None: hidden), ``reads`` too, as ``account`` (switched to inside), the seccomp filter read from
    ``seccomp_fd``, and ``more`` of bwrap's arguments (settings, the package cache)."""
    argv = [_bwrap(), "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
            "--perms", "1777", "--tmpfs", "/tmp"]
    if account is not None:  # bwrap runs as root: setpriv, inside, needs these to switch to the account
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    if not network:
        argv.append("--unshare-net")
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += _system_mounts()
    system = ["/" + name for name in _SYSTEM_FOLDERS]
    mounts = [*([str(syftbox)] if syftbox else []), *reads, copy]
    # bubblewrap makes the folders on the way to a mount point, root's with mode 0700: here they are 0755 first
    ancestors = {str(parent) for path in mounts for parent in Path(path).parents}
    for folder in sorted(ancestors - {"/", "/tmp"}):
        if not any(folder == top or folder.startswith(top + "/") for top in system + mounts):
            argv += ["--perms", "0755", "--dir", folder]
    argv += ["--ro-bind", str(syftbox), str(syftbox)] if syftbox else []
    for site in _subfolders(syftbox) if syftbox else ():  # every job tree (other jobs, their results) out of reach
        if os.path.isdir(os.path.join(site.path, "app_data", "job")):
            argv += ["--tmpfs", os.path.join(site.path, "app_data", "job")]
    for path in reads:
        argv += ["--ro-bind-try", path, path]
    return argv + [*more, "--bind", copy, copy, "--chdir", copy, "--", *_switch_to(account)]


def _sandbox_reads(allow_read: Sequence[str], search_path: str, pythons: Sequence[tuple[str, str]]) -> list[str]:
    """What a sandboxed job may read besides the system: allow_read, uv, the owner's Pythons, DNS settings."""
    uv = _find_program("uv", search_path)
    return [*allow_read, *([uv] if uv else []), *(prefix for _, prefix in pythons),
            os.path.realpath("/etc/resolv.conf")]


# Python jobs in the sandbox. The job's code is offline, so what its run.sh installs with `uv pip
# install` is fetched before it starts, by the runner: uv, outside the sandbox, binary wheels only (a
# wheel is unpacked, never run), from the owner's index, into a cache in work_dir that only the runner
# writes. The job's own uv then installs offline from that cache, bound read-only under a private one
# in its /tmp. With allow_source_builds, building runs a package's code: the fetch then runs in the
# job's sandbox (network on, the job's account) into a cache of that run alone.
_PYPI = "https://pypi.org/simple"
_JOB_UV_CACHE, _SHARED_UV_CACHE = "/tmp/uv-cache", "/tmp/uv-shared"
# In the sandbox, before run.sh: the job's own uv cache, whose folders of packages are the
# shared cache's, read-only (uv writes markers and locks at the top of its cache).
_LINK_SHARED_CACHE = (f'mkdir -p {_JOB_UV_CACHE} && for b in {_SHARED_UV_CACHE}/*/; do b=${{b%/}}; case ${{b##*/}} in '
                      f'interpreter-*|sdists-*) ;; *) ln -sfn "$b" {_JOB_UV_CACHE}/ ;; esac; done; exec "$@"')
# A fetch before the job: "${@:1:$0}" fetches (into a scratch folder, from /: never the
# submission's folder, where a planted .venv would be run), the rest is the job.
_FETCH_THEN_RUN = ('t=$(mktemp -d) || exit; (umask 022 && cd / && exec "${@:1:$0}" --target "$t") >&2; rc=$?; '
                   'rm -rf "$t"; [ "$rc" = 0 ] || { echo "syft_job: the runner could not fetch the packages this job '
                   'installs from the package index (uv said why above); its code did not run" >&2; exit "$rc"; }; '
                   'shift "$0"; exec "$@"')
_PYTHON_REQUEST = re.compile(r"\d+\.\d+(\.\d+)?")
_MAX_PLAN_BYTES = 1 << 20  # a run.sh or requirements file read for the packages it installs
# A requirement of PEP 508 without a URL: a name, extras, versions, markers.
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\s*\[[A-Za-z0-9._,\s-]*\])?[\s<>=!~.,*;()'\"A-Za-z0-9_+-]*")
_VALUE_OPTIONS = frozenset({"-p", "--python", "-i", "--index-url", "--extra-index-url", "--default-index", "--index",
                            "-f", "--find-links", "-c", "--constraint", "--overrides", "--target", "--prefix", "-e",
                            "--editable", "--cache-dir", "-C", "--config-setting", "--python-version",
                            "--python-platform"})  # uv pip install's options that take a value


def _package_index() -> str:
    """The owner's package index: uv's or pip's setting, else PyPI."""
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name]
    parser = configparser.ConfigParser()
    with contextlib.suppress(configparser.Error, UnicodeDecodeError):  # pip ignores what it cannot read, too
        parser.read(["/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.expanduser("~/.pip/pip.conf"),
                     os.path.expanduser("~/.config/pip/pip.conf"), os.environ.get("PIP_CONFIG_FILE", "")])
    return next((parser.get(section, "index-url") for section in ("install", "global")
                 if parser.has_option(section, "index-url")), _PYPI)


def _owner_pythons(allow_read: Sequence[str]) -> list[tuple[str, str]]:
    """The owner's Pythons, as (X.Y, the folder holding bin/pythonX.Y): uv's, pyenv's,
    conda's and mamba's, the system's, and those in allow_read."""
    home = os.path.expanduser("~")
    data = os.environ.get("XDG_DATA_HOME") or f"{home}/.local/share"
    uv = os.environ.get("UV_PYTHON_INSTALL_DIR") or f"{data}/uv/python"
    pyenv = os.environ.get("PYENV_ROOT") or f"{home}/.pyenv"
    condas = [os.environ.get(name, "") for name in ("CONDA_PREFIX", "MAMBA_ROOT_PREFIX")] + [
        f"{home}/{name}" for name in ("miniconda3", "anaconda3", "miniforge3", "mambaforge", "micromamba", ".conda")]
    tops = [uv, f"{pyenv}/versions", *(f"{conda}/envs" for conda in condas if conda), *allow_read]
    prefixes = [*condas, "/usr", "/usr/local", *allow_read, *(entry.path for top in tops for entry in _subfolders(top))]
    found: dict[str, tuple[str, str]] = {}
    for prefix in filter(None, prefixes):
        for exe in sorted(glob.glob(glob.escape(prefix) + "/bin/python3.[0-9]*")):
            version = re.fullmatch(r"python(3\.\d+)", os.path.basename(exe))
            if version and os.access(exe, os.X_OK):
                found.setdefault(os.path.realpath(prefix), (version[1], prefix))
                break
    return sorted(found.values(), key=lambda found: [int(n) for n in found[0].split(".")], reverse=True)


def _pythons_text(pythons: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{version} ({_printable(prefix)})" for version, prefix in pythons) or "none"


def _python_plan(copy: str) -> tuple[list[str], str | None, bool]:
    """What a job's run.sh installs with ``uv pip install`` (and its ``-r`` files), the Python it asks uv
    for, and whether it runs Python or uv at all (only then are the owner's Pythons mounted).
    :raises JobError: a requirement that needs more than the package index; a file over _MAX_PLAN_BYTES."""
    packages, python, cwd, read = [], None, copy, set()
    if not os.path.lexists(os.path.join(copy, RUN_SCRIPT)):
        return [], None, False
    script = _read_file(os.path.join(copy, RUN_SCRIPT), _MAX_PLAN_BYTES).decode("utf-8", "replace")
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        commands: list[list[str]] = [[]]
        with contextlib.suppress(ValueError):  # unbalanced quotes: bash will say so
            for word in lexer:
                if word in ("&&", "||", ";", "|", "&"):
                    commands.append([])
                else:
                    commands[-1].append(word)
        for command in commands:
            if command[:1] == ["cd"] and len(command) == 2:
                cwd = os.path.normpath(os.path.join(cwd, command[1]))
            elif command[:2] == ["uv", "venv"] and "--python" in command[:-1]:
                python = command[command.index("--python") + 1]
            elif command[:3] == ["uv", "pip", "install"]:
                packages += _requirements(command[3:], cwd, copy, read)
    return list(dict.fromkeys(packages)), python, bool(re.search(r"\b(python|uv)", script))


def _requirements(words: Sequence[str], cwd: str, copy: str, read: set[str]) -> list[str]:
    """The packages to fetch that ``uv pip install`` words name, ``-r`` files read (each once, into ``read``).
    The rest that is allowed (a local path inside the submission) is left to the job's own uv, offline."""
    named, words, i = [], list(words), 0
    while i < len(words):
        word, i = words[i], i + 1
        if word in ("-r", "--requirement") and i < len(words):
            path, i = os.path.realpath(os.path.join(cwd, words[i])), i + 1
            if not _within(path, copy):
                raise JobError(f"its requirements file {path} is outside the submission")
            if path not in read and os.path.lexists(path):
                read.add(path)
                text = _read_file(path, _MAX_PLAN_BYTES).decode("utf-8", "replace")
                words += [line.split(" #")[0].strip() for line in text.splitlines()
                          if line.strip() and not line.lstrip().startswith(("#", "-"))]
        elif word in _VALUE_OPTIONS:
            i += 1
        elif not word.startswith("-") and _requirement(word, cwd, copy):
            named.append(word)
    return named


def _requirement(word: str, cwd: str, copy: str) -> bool:
    """Whether ``word`` is a package to fetch from the index (a name, extras, versions, markers).
    :raises JobError: a requirement that needs more than the index."""
    if re.match(r"(git|hg|svn|bzr)\+", word, re.I) or re.search(r"@\s*(git|hg|svn|bzr)\+", word, re.I):
        raise JobError(f"its requirement {_printable(word[:200])!r} points at a version control system; only "
                       "packages from the package index can be installed offline")
    if re.search(r"[:@\\]", word):  # uv reads http:host\x.whl, name@file:..., ${VAR} inside URLs
        raise JobError(f"its requirement {_printable(word[:200])!r} is a URL or a direct reference; only packages "
                       "from the package index can be installed")
    if word.startswith((".", "/", "~")) or "/" in word or word.endswith((".whl", ".tar.gz", ".zip")):
        if not _within(os.path.realpath(os.path.join(cwd, os.path.expanduser(word))), copy):
            raise JobError(f"its requirement {_printable(word[:200])!r} is a local path outside the submission")
        return False
    return len(word) <= 1000 and bool(_PACKAGE.fullmatch(word))


def _processes() -> dict[int, tuple[int, int, int]] | None:
    """Every process that runs (zombies left out): pid -> (parent, group, session); None without /proc."""
    names = _or_none(os.listdir, "/proc")
    if names is None:
        return None
    return {int(pid): (int(fields[1]), int(fields[2]), int(fields[3])) for pid in names
            if pid.isdigit() and (fields := _proc_stat(pid)) and fields[0] != b"Z"}


def _carries(pid: int, token: str) -> bool:
    """Whether a process has this run token in its environment."""
    return f"{_JOB_ENV_VAR}={token}\0".encode() in (_or_none(_read_proc, f"/proc/{pid}/environ") or b"")


def _children() -> set[int]:
    """This process's children, zombies included (/proc; empty without it)."""
    return {int(pid) for task in _or_none(os.listdir, "/proc/self/task") or ()
            for pid in (_or_none(_read_proc, f"/proc/self/task/{task}/children") or b"").split()}


def _job_processes(pgid: int, token: str, leaders: set[int], other_tokens: Sequence[str]) -> set[int]:
    """Every process of a run still running: its group, what carries its token, orphans adopted by this
    runner (a job leader of none, in a session of their own, with no other run's token), their descendants."""
    if not _signal_group(pgid, 0) and not (_children() - leaders):
        return set()  # the usual case, found without reading /proc
    table = _processes() or {}
    me, my_session = os.getpid(), os.getsid(0)
    found = {pid for pid, (parent, group, session) in table.items() if pid != me and (
        group == pgid or _carries(pid, token) or (parent == me and pid not in leaders and session != my_session
                                                  and not any(_carries(pid, t) for t in other_tokens)))}
    while True:
        more = {pid for pid, (parent, _, _) in table.items() if parent in found and pid not in found}
        if not more:
            return found
        found |= more


def _reap_orphans(leaders: set[int]) -> None:
    """Collect the adopted orphans that ended (zombie children of this runner in a session of their own)."""
    my_session = os.getsid(0)
    for pid in _children() - leaders:
        fields = _proc_stat(pid)
        if fields and fields[0] == b"Z" and int(fields[3]) != my_session:
            _quietly(os.waitpid, pid, os.WNOHANG)


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
        return True
    except (ProcessLookupError, PermissionError):  # macOS: a group of zombies only
        return False


def _stop_leftovers(fields: dict, console: _Console, label: str) -> None:
    """Stop what an interrupted run left: what carries its token, its group if the same leader, its Slurm job."""
    pgid, token, table = fields.get("pgid"), fields.get("token"), _processes() or {}
    victims = {pid for pid in table if isinstance(token, str) and _carries(pid, token)}
    if isinstance(pgid, int) and pgid > 1 and _process_start(pgid) == fields.get("leader_start") is not None:
        victims |= {pid for pid, (_, group, _) in table.items() if group == pgid}
    if victims:
        console.say(f"🧹 Stopping {len(victims)} process(es) left running by the interrupted run of {label}")
    for pid in victims:
        _quietly(os.kill, pid, signal.SIGKILL)
    if fields.get("slurm_job_name"):
        _scancel(f"--name={fields['slurm_job_name']}")


def _scancel(*selectors: str) -> None:
    """Cancel Slurm jobs: ``--name=NAME`` or job ids (best effort: ``scancel`` may be missing here)."""
    if shutil.which("scancel"):
        _quietly(subprocess.run, ["scancel", *selectors], capture_output=True, timeout=30)


def _cancel_slurm_jobs_of(uids: set[int]) -> None:
    """Cancel the Slurm jobs that runs queued themselves, found by their uids (one ``squeue`` a round)."""
    if uids and shutil.which("squeue"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):  # no Slurm now: nothing of theirs to cancel
            queue = subprocess.run(["squeue", "-h", "-o", "%i %U"], capture_output=True, text=True, timeout=30).stdout
            ids = [fields[0] for fields in map(str.split, queue.splitlines())
                   if len(fields) == 2 and fields[1].isdigit() and int(fields[1]) in uids]
            if ids:
                _scancel(*ids)


# ---------------------------------------------------------------------------
# Execution: many jobs, one selector; output pumped as bytes
# ---------------------------------------------------------------------------
#
# A job's whole life is here: _Executor claims it, makes its private copy and logs,
# starts it (start, launch, begin), pumps it with the others (_Engine: one selector
# holds every running job's pipes and exit descriptors; _Run.advance stops what must
# stop) and finishes it (finish_run: return code, outputs published, state, shared).
# Timeouts and stops are measured here, on the runner's side: a job that stops its
# runner (kill -STOP $PPID) cannot stretch its time or turn a failure into success.

TIMEOUT_LINE = b"--- PROCESS TIMED OUT ---\n"
_LOG_CUT_LINE = "--- LOG CUT: it reached the limit of {limit} bytes (max_log_bytes); the job was stopped ---\n"
_KILL_GRACE_SECONDS = 2.0      # between SIGTERM and SIGKILL
_PARTIAL_LINE_SECONDS = 0.25   # a line without newline is shown after this long
_PIPE_DRAIN_SECONDS = 0.5      # how long to read pipes still held after the job's processes are gone
_MAX_CONSOLE_LINE = 64 * 1024  # a longer line is shown in pieces (memory stays flat)
_READ_SIZE = 64 * 1024
# What a job inherits from the runner's environment; everything else (tokens, keys,
# cloud credentials) stays with the runner unless the owner passes it by name.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "TZ", "USER")
_INHERITED_PREFIXES = ("LC_", "UV_")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|CREDENTIALS?|_KEY)$", re.I)  # passed only when named
_URL_CREDENTIALS = re.compile(r"://[^/\s]*@")  # https://user:p@ss@index/ loses user:p@ss@
# Signs in the end of stderr.txt that a job ran out of memory under max_memory_mb.
_OUT_OF_MEMORY = (b"MemoryError", b"Cannot allocate memory", b"out of memory", b"bad_alloc", b"memory exhausted")


@dataclasses.dataclass(frozen=True)
class JobResult:
    """How one job run ended (``process_approved_jobs()`` returns one per job it ran).

    :param status: ``"done"`` (return code 0) or ``"failed"``.
    :param return_code: the job's exit status; -1 for a timeout, a stop by the owner
        or a job that could not run.
    :param duration: seconds, measured by the runner.
    :param reason: why it failed, when the runner knows (timed out, cancelled, ...).
    """

    submitter: str
    name: str
    status: str
    return_code: int
    started_at: datetime.datetime
    finished_at: datetime.datetime
    duration: float
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "done"


class _LinePrinter:
    """Prints a job's output as prefixed whole lines, so two streams or jobs never mix
    inside one; lines end at ``\n``, ``\r\n`` or ``\r`` (a progress bar's steps), and a
    chunk of them is printed in a few C calls. A line with no end yet is shown all the
    same once older than ``_PARTIAL_LINE_SECONDS`` or longer than ``_MAX_CONSOLE_LINE``."""

    def __init__(self, console: _Console, prefix: str) -> None:
        self.console = console
        self.prefixes = {"stdout": prefix, "stderr": prefix + "STDERR: "}
        self.partial = {"stdout": bytearray(), "stderr": bytearray()}  # a line not ended yet
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
            self.write(stream, self.take_partial(stream) + data[:end])
            data = data[end + 1:]
        if data:
            if not self.partial[stream]:
                self.since[stream] = time.monotonic()
            self.partial[stream] += data
            if len(self.partial[stream]) >= _MAX_CONSOLE_LINE:
                self.write(stream, self.take_partial(stream))

    def flush_stale(self, max_age: float = _PARTIAL_LINE_SECONDS) -> None:
        now = time.monotonic()
        for stream in self.partial:
            if self.partial[stream] and now - self.since[stream] >= max_age:
                self.write(stream, self.take_partial(stream))

    def take_partial(self, stream: str) -> bytearray:
        line, self.partial[stream] = self.partial[stream], bytearray()
        return line

    def write(self, stream: str, lines: bytes) -> None:
        """Print ``lines`` (``\n`` between them, none at the end), each prefixed."""
        prefix = self.prefixes[stream]
        text = _printable(lines.decode("utf-8", "replace"), lines=True)
        self.console.write(prefix + text.replace("\n", "\n" + prefix) + "\n")


class _Output:
    """One of a job's pipes, copied as bytes to its log file (cut at ``max_bytes``, None:
    no limit) and, when streaming, to the console."""

    def __init__(self, pipe_fd: int, log_fd: int, stream: str, printer: _LinePrinter | None,
                 max_bytes: int | None) -> None:
        self.pipe_fd, self.log_fd, self.stream, self.printer = pipe_fd, log_fd, stream, printer
        self.log_name = STDOUT_FILE if stream == "stdout" else STDERR_FILE
        self.limit = self.room = max_bytes  # bytes the log may take, and may still take
        self.cut = False       # the log reached its limit: the job must be stopped
        self.muted = False     # no longer written (what a stopped srun says is not the job's)
        self.open = True       # the pipe is not closed yet
        self.tail = b"\n"      # the end of the log, to end it cleanly and look for errors
        self.failure: OSError | None = None  # the log cannot be written (a full disk?)

    def read(self) -> bool:
        """Copy what the pipe holds now; False once it is closed."""
        chunk = os.read(self.pipe_fd, _READ_SIZE)
        self.open = bool(chunk)
        if not chunk or self.cut or self.muted or self.failure is not None:
            return self.open  # what is not written is drained all the same: the job never blocks on it
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
        self.tail = (self.tail + data[-4096:])[-4096:]
        if self.printer is not None:
            self.printer.feed(self.stream, data)

    def write_line(self, line: str) -> None:
        """Add a line of the runner's own, on a line of its own (not on the console)."""
        self.printer = None
        start = b"" if self.tail.endswith(b"\n") else b"\n"
        _quietly(self.write, start + line.encode())  # a full disk: the log just ends


@dataclasses.dataclass(eq=False)
class _Run:
    """One job this runner is running, from start to finish."""

    job: _Job
    claim: _Claim
    timeout: float
    results_fd: int
    copy: str  # the private working copy it runs in
    approval: str  # the fingerprint of the approval it runs under
    account: _Account | None  # whom it runs as (a root owner's runs), None: the owner
    started: float = dataclasses.field(default_factory=time.monotonic)
    started_at: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    proc: subprocess.Popen | None = None
    printer: _LinePrinter | None = None
    outputs: dict[str, _Output] = dataclasses.field(default_factory=dict)
    exit_fd: int | None = None
    returncode_fd: int | None = None
    stop_reason: str | None = None  # why the runner stopped it: "timeout", "cancelled", ...
    kill_at: float | None = None    # when to SIGKILL what is left of it
    exited_at: float | None = None  # when the runner saw its process end
    slurm_job_name: str | None = None
    packages: list[str] = dataclasses.field(default_factory=list)  # fetched for it before it starts
    python: str | None = None  # the Python its run.sh asks uv for
    pythons: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # the owner's, mounted for it

    @property
    def pgid(self) -> int:
        return self.proc.pid if self.proc else 0

    def signal(self, signum: int, leaders: set[int], other_tokens: Sequence[str]) -> set[int]:
        """Send ``signum`` to every process of the job, and return them (none: all gone)."""
        victims = _job_processes(self.pgid, self.claim.token, leaders | {self.pgid}, other_tokens)
        if self.proc is not None and self.proc.poll() is None:
            victims.add(self.proc.pid)
        _signal_group(self.pgid, signum)  # first, in one call: a shell never sees its child die before it
        for pid in victims:
            _quietly(os.kill, pid, signum)
        return victims

    def kill(self, leaders: set[int], other_tokens: Sequence[str]) -> None:
        """SIGKILL every process of the job, all frozen first (SIGSTOP until no new one
        shows up) so that none forks away between two looks."""
        frozen: set[int] = set()
        for _ in range(100):
            found = self.signal(signal.SIGSTOP, leaders, other_tokens)
            if found <= frozen:
                break
            frozen |= found
        self.signal(signal.SIGKILL, leaders, other_tokens)

    def advance(self, sandboxed: bool, stopping: bool, leaders: set[int], other_tokens: Sequence[str]) -> bool:
        """Stop it when it must stop, kill what it left once it ended; True when it is over.

        :param sandboxed: it runs in the sandbox, whose PID namespace ends with it.
        :param stopping: the runner is stopping (Ctrl+C): stop it now.
        """
        now = time.monotonic()
        if self.exited_at is None and self.proc.poll() is not None:
            self.exited_at = now
            if now - self.started > self.timeout and self.stop_reason is None:
                self.stop_reason = "timeout"  # it ended late: it ran past its timeout, whatever it says
            if not sandboxed and self.signal(signal.SIGTERM, leaders, other_tokens):  # what it left behind
                self.kill_at = min(self.kill_at or float("inf"), now + _KILL_GRACE_SECONDS)
        elif self.exited_at is None:
            cut = any(o.cut or o.failure for o in self.outputs.values())
            reasons = [("interrupted", stopping), ("timeout", now >= self.started + self.timeout), ("log", cut),
                       ("cancelled", os.path.exists(self.claim.cancel_path))]  # the first that holds
            reason = next((why for why, holds in reasons if holds), None)
            if reason and self.stop_reason is None:  # SIGTERM now, SIGKILL after a grace
                self.stop_reason = reason
                if self.slurm_job_name:  # what srun says while it stops is not the job's output
                    self.outputs["stderr"].muted = True
                self.kill_at = min(self.kill_at or float("inf"), now + (0.5 if stopping else _KILL_GRACE_SECONDS))
                self.signal(signal.SIGTERM, leaders, other_tokens)
        if self.kill_at is not None and (now >= self.kill_at or not self.signal(0, leaders, other_tokens)):
            if now >= self.kill_at:
                self.kill(leaders, other_tokens)
            self.kill_at = None
        if self.printer:
            self.printer.flush_stale()
        return self.exited_at is not None and self.kill_at is None and (
            not any(o.open for o in self.outputs.values()) or now >= self.exited_at + _PIPE_DRAIN_SECONDS)

    def close(self) -> None:
        """Close its files, pipes and descriptors; collect its process."""
        for fd in [self.returncode_fd, self.exit_fd, self.results_fd] + [o.log_fd for o in self.outputs.values()]:
            if fd is not None:
                _quietly(os.close, fd)
        if self.proc is not None:
            for pipe in (self.proc.stdout, self.proc.stderr):
                pipe.close()
            self.proc.wait()
        self.returncode_fd = self.exit_fd = None

    def publish(self, max_bytes: int, max_entries: int) -> tuple[list[str], list[str]]:
        """Copy outputs/ (and code/outputs/, as upstream does) from the private copy into
        the results: regular files and folders only, never a syft.pub.yaml, at most
        ``max_entries`` entries and ``max_bytes`` (apparent sizes: a sparse file counts
        whole); the rest is held back. The job has ended: nothing changes under the walk.

        :returns: ``(notes on what was left out, the paths held back)``.
        """
        _remove_at(self.results_fd, OUTPUTS_DIR)
        os.mkdir(OUTPUTS_DIR, 0o755, dir_fd=self.results_fd)
        notes, held, room = [], [], [max_entries, max_bytes]

        def skip(root: str, rel: str) -> bool:
            if rel.rsplit("/", 1)[-1] == PERMISSION_FILE:
                return True
            st = os.lstat(os.path.join(root, rel))
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            if room[0] < 1 or size > room[1]:
                held.append(f"{os.path.basename(root)}/{rel}")
                return True
            room[0], room[1] = room[0] - 1, room[1] - size
            return False
        target = os.open(OUTPUTS_DIR, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=self.results_fd)
        try:
            for source in self.job.protocol.output_folders:
                path = os.path.join(self.copy, source)
                if not os.path.isdir(path) or os.path.islink(path):
                    continue
                try:
                    with _folder(path) as fd:
                        files = _copy_tree(fd, target, functools.partial(skip, path))
                except SyftJobError as exc:
                    notes.append(f"some of {source}/ was not published: {exc}")
                    continue
                notes += [f"{source}/{_printable(rel)}: {kind}; not published" for rel, kind in files.items()
                          if kind in ("symlink", "not a regular file")]
        finally:
            os.close(target)
        if held:
            shown = ", ".join(map(_printable, held[:10])) + (f" and {len(held) - 10} more" if held[10:] else "")
            notes.append(f"{len(held)} output(s) held back, over the limit of {max_entries} files or "
                         f"{_size(max_bytes)} one job may publish (max_output_files, max_output_bytes): {shown}")
        return notes, held


def _job_environment(config: SyftJobConfig, passthrough: Sequence[str], token: str, sandboxed: bool,
                     account: _Account | None, copy: str) -> dict[str, str]:
    """What a job gets: settings, never credentials unless the owner names them."""
    env = {name: _URL_CREDENTIALS.sub("://", value) for name, value in os.environ.items()
           if (name in _INHERITED_ENV or name.startswith(_INHERITED_PREFIXES)) and not _SECRET_NAME.search(name)}
    env.update((name, os.environ[name]) for name in passthrough if name in os.environ)
    env.setdefault("PATH", os.defpath)
    env["HOME"] = copy  # never the owner's: a job could plant what the owner's programs load (.pth, rc files)
    if account is not None:
        env["USER"] = account.name
        env.pop("TMPDIR", None)
    if sandboxed:  # the owner's home is not there: a private one in the sandbox's /tmp
        env.update(HOME="/tmp", TMPDIR="/tmp", UV_CACHE_DIR=_JOB_UV_CACHE)
    env.update({"SYFTBOX_FOLDER": str(config.syftbox_folder), "SYFTBOX_EMAIL": config.email,
                "SYFT_IS_IN_JOB": "true", "PYTHONUNBUFFERED": "1", _JOB_ENV_VAR: token})
    return env


def _exit_fd(pid: int) -> int | None:
    """A descriptor readable once ``pid`` exits (a pidfd: Linux, Python 3.9+), so a job is
    waited for by ``select``, not a sleep loop; None where there is none."""
    return _or_none(os.pidfd_open, pid) if hasattr(os, "pidfd_open") else None


class _Engine:
    """One selector for every running job's pipes and exit descriptors, the stop signal's
    wake-up and ``news_fd`` (the job directory changed: the caller reads it)."""

    def __init__(self, wakeup_fd: int | None, news_fd: int | None = None) -> None:
        self.selector = selectors.DefaultSelector()
        self.runs: list[_Run] = []
        for fd, data in ((wakeup_fd, None), (news_fd, "news")):
            if fd is not None:
                self.selector.register(fd, selectors.EVENT_READ, data)

    def add(self, run: _Run) -> None:
        self.runs.append(run)
        for output in run.outputs.values():
            self.selector.register(output.pipe_fd, selectors.EVENT_READ, (run, output))
        if run.exit_fd is not None:
            self.selector.register(run.exit_fd, selectors.EVENT_READ, (run, None))

    def remove(self, run: _Run) -> None:
        self.runs.remove(run)
        for fd in [o.pipe_fd for o in run.outputs.values()] + [run.exit_fd]:
            if fd is not None and fd in self.selector.get_map():
                self.selector.unregister(fd)

    def next_wait(self) -> float:
        """Until the next deadline, partial line to show or look for cancel requests."""
        now, soonest = time.monotonic(), 0.5
        for run in self.runs:
            deadlines = [run.kill_at, run.exited_at and run.exited_at + _PIPE_DRAIN_SECONDS,
                         None if run.exited_at else run.started + run.timeout]
            if run.printer and any(run.printer.partial.values()):
                deadlines.append(now + _PARTIAL_LINE_SECONDS)
            soonest = min([soonest] + [d - now for d in deadlines if d])
        return soonest

    def pump(self, seconds: float) -> None:
        """Copy whatever is ready, waiting at most ``seconds`` for something to happen."""
        if any(run.exit_fd is None and run.exited_at is None for run in self.runs):
            seconds = min(seconds, 0.05)  # no pidfd (macOS): look at the processes often
        for key, _ in self.selector.select(max(seconds, 0)):
            if key.data is None:  # a signal arrived: the caller looks at its flag
                _quietly(os.read, key.fd, 512)
            elif key.data != "news" and (key.data[1] is None or not key.data[1].read()):
                self.selector.unregister(key.fd)  # the job exited, or a pipe closed


_HOOKS_AT_ONCE, _HOOK_SECONDS, _HOOKS_WAITING = 4, 10.0, 1000
_SAFETY_SCAN_SECONDS = 30.0  # with inotify, a full look this often all the same (a missed event, NFS)
_EVENT_GAP_SECONDS = 0.05  # events closer than this wake the runner once
_MAX_WATCHED_PER_SUBMITTER = 512  # folders of a submitter's unfinished jobs watched (they could make more)


class _Hooks:
    """The owner's ``--on-event`` command, run in the background for each event (one JSON
    object on its standard input): at most _HOOKS_AT_ONCE at once, each stopped after
    _HOOK_SECONDS, a failure said in one line. No job waits for it."""

    def __init__(self, command: str, console: _Console) -> None:
        self.command, self.console = command, console
        self.waiting: list[dict] = []
        self.running: list[tuple[subprocess.Popen, float, str, Any]] = []  # (process, started, what for, its stderr)

    def add(self, event: dict) -> None:
        if len(self.waiting) >= _HOOKS_WAITING:  # a flood of submissions: the oldest news goes
            self.console.say_once("on-event", f"⚠️ More than {_HOOKS_WAITING} events wait for the on-event command; "
                                              "the oldest are not told")
            self.waiting.pop(0)
        self.waiting.append(event)
        self.poll()

    def poll(self) -> None:
        """Reap what ended, stop what hangs, start what waits."""
        now = time.monotonic()
        for proc, started, what, errors in list(self.running):
            if proc.poll() is None and now - started < _HOOK_SECONDS:
                continue
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
                self.console.say(f"⚠️ The on-event command was stopped after {_HOOK_SECONDS:g} s ({what})")
            elif proc.returncode:
                errors.seek(max(0, os.fstat(errors.fileno()).st_size - 500))
                said = errors.read(500).decode("utf-8", "replace").strip().splitlines()[-1:]
                self.console.say(f"⚠️ The on-event command failed with exit status {proc.returncode} ({what})"
                                 + "".join(f": {line}" for line in said))
            errors.close()
            self.running.remove((proc, started, what, errors))
        while self.waiting and len(self.running) < _HOOKS_AT_ONCE:
            event = self.waiting.pop(0)
            what = f"{event['event']}: {_printable(event['submitter'])}/{_printable(event['job'])}"
            errors = tempfile.TemporaryFile()  # its last line goes into the one line said of a failure
            try:  # the event from a file, not a pipe: a command that reads nothing never blocks the runner
                with tempfile.TemporaryFile() as told:
                    told.write(json.dumps(event).encode() + b"\n")
                    told.seek(0)
                    proc = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=told, stdout=subprocess.DEVNULL,
                                            stderr=errors, start_new_session=True)
            except OSError as exc:
                errors.close()
                self.console.say(f"⚠️ The on-event command could not start ({what}): {exc}")
                continue
            self.running.append((proc, now, what, errors))

    def pids(self) -> set[int]:
        """The commands running: children of the runner, but never a job's leftovers."""
        return {proc.pid for proc, *_ in self.running}

    def close(self) -> None:
        """Let the commands started finish (each in its time) and, meanwhile, those waiting
        start; the rest are said, not told."""
        deadline = time.monotonic() + _HOOK_SECONDS
        while self.running or self.waiting:
            if self.waiting and time.monotonic() >= deadline:
                self.console.say(f"⚠️ {len(self.waiting)} event(s) not told to the on-event command: "
                                 "the runner stopped")
                self.waiting.clear()
            self.poll()
            time.sleep(0.02)


_RULE = "=" * 50
_THIN_RULE = "-" * 50


class _HeldBack(Exception):
    """A job not run now (changed since approval, strict mode, a forged approval, its
    results folder unusable): said once, looked at again at each poll."""


class _CannotRun(Exception):
    """A job finished as failed without running (no run.sh, a bad config)."""


class _StopSignals:
    """Where Ctrl+C and SIGTERM become "stop": while active (main thread only, signals
    still at their default only), one sets ``requested`` and wakes whoever waits on ``fd``."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = signal.SIGINT  # which one stopped it (a KeyboardInterrupt is a Ctrl+C)
        self.fd: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._pair = socket.socketpair()
        for end in self._pair:
            end.setblocking(False)
        self.fd = self._pair[0].fileno()
        self._old_wakeup = signal.set_wakeup_fd(self._pair[1].fileno())
        for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
            if signal.getsignal(signum) is default:
                self.previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.requested, self.signum = True, signum

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or until a stop is requested."""
        if self.fd is None:
            time.sleep(seconds)
        elif not self.requested:
            select.select([self.fd], [], [], seconds)

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(self._old_wakeup)
            for end in self._pair:
                end.close()


@dataclasses.dataclass(frozen=True)
class _Settings:
    """How a runner runs jobs: SyftJobRunner's keywords (see there), each checked once."""

    isolation: str  # "sandbox" or "none", as resolved
    why_no_sandbox: str  # for the line said with every round run without one
    network: bool
    account: _Account | None  # a root owner's jobs' account (each run gets a uid of its own)
    runs_as: str  # whom jobs run as, for messages
    work_dir: Path
    allow_read: tuple[str, ...]
    max_concurrent_jobs: int
    launcher: str | None
    slurm_args: tuple[str, ...]
    require_approval_digest: bool
    env_passthrough: tuple[str, ...]
    max_memory_mb: float | None
    max_cpu_seconds: float | None
    max_log_bytes: int | None
    max_output_bytes: int
    max_output_files: int
    allow_source_builds: bool
    output_checks: dict


class _Executor:
    """Runs approved jobs, many at once: for each, the whole life of a run (claim,
    private copy, launch, pump, finish, publish, share)."""

    def __init__(self, config: SyftJobConfig, settings: _Settings, site: _Site, console: _Console,
                 emit: Callable[..., None], hooks: _Hooks | None) -> None:
        """:param emit: tells an event (see SyftJobRunner's on_event): ``emit(event, job,
        status, return_code, reason)``. :param hooks: the on-event commands, if any."""
        self.config, self.settings, self.site, self.console = config, settings, site, console
        self.emit, self.hooks = emit, hooks
        self.abandoned: set[str] = set()  # jobs that could not even be marked finished
        self.checked_reads = False  # allow_read checked against the jobs' account

    def run_round(self, jobs: list[_Job], options: _RunOptions, stop: _StopSignals | None = None,
                  watcher: _Watcher | None = None, refresh: Callable[[], list[_Job]] | None = None) -> list[JobResult]:
        """One round over the approved jobs: start them as places free up, pump them
        all through one selector, finish each as it ends.

        :param stop: the stop signals of a running loop (else their own, for this round).
        :param watcher: wakes the round when the job directory changes: ``refresh()``
            then gives the jobs, and those approved meanwhile join this round.
        """
        waiting = self.runnable(jobs, options)
        results: list[JobResult] = []
        if not waiting:
            return results
        self.warn(len(waiting))
        with contextlib.ExitStack() as stack:
            stop = stop or stack.enter_context(_StopSignals())
            watcher = watcher if watcher is not None and watcher.fd is not None and refresh else None
            engine = _Engine(stop.fd, watcher and watcher.fd)
            stack.callback(engine.selector.close)
            uids: set[int] = set()
            total = len(waiting)
            while waiting or engine.runs:
                while waiting and len(engine.runs) < self.settings.max_concurrent_jobs and not stop.requested:
                    started = self.start_run(waiting.pop(0), options, header=f"📋 Found {total} job(s) in "
                                              "approved directory" if not results and not engine.runs else None)
                    if isinstance(started, _Run):
                        engine.add(started)
                        uids |= {started.account.uid} if started.account else set()
                    elif started is not None:
                        results.append(started)
                        self.console.say(_RULE)
                if not engine.runs:
                    break
                engine.pump(engine.next_wait())
                if self.hooks is not None:
                    self.hooks.poll()
                if watcher is not None and watcher.changed():  # jobs approved meanwhile join this round
                    busy = {job.folder for job in waiting} | {run.job.folder for run in engine.runs}
                    waiting += [job for job in self.runnable(refresh(), options) if job.folder not in busy]
                leaders = {run.pgid for run in engine.runs} | (self.hooks.pids() if self.hooks else set())
                for run in list(engine.runs):
                    if run.advance(self.settings.isolation == "sandbox", stop.requested, leaders,
                                   [r.claim.token for r in engine.runs if r is not run]):
                        engine.remove(run)
                        result = self.finish_run(run, options)
                        if result is not None:
                            results.append(result)
                            self.console.say(_RULE)
                _reap_orphans(leaders | (self.hooks.pids() if self.hooks else set()))
            _cancel_slurm_jobs_of(uids)  # what the runs queued in Slurm themselves, each as its own uid
            if stop.requested:
                raise KeyboardInterrupt
        if results:
            failed = sum(not r.succeeded for r in results)
            self.console.say(f"{'❌' if failed else '✅'} Processed {len(results)} job(s): "
                             f"{len(results) - failed} succeeded, {failed} failed")
        return results

    def warn(self, count: int) -> None:
        """Before a round: what the owner must know of how its ``count`` jobs run."""
        _harden_runner(self.console)
        settings = self.settings
        if settings.isolation == "none":
            self.console.say(f"⚠️ Running {count} job(s) without a sandbox ({settings.why_no_sandbox}): they can read "
                             f"and write whatever their account can (they run as {settings.runs_as})")
        if settings.account is not None and not self.checked_reads:
            self.checked_reads = True
            for path in settings.allow_read:
                if not settings.account.can_reach(path, read=True):
                    self.console.say(f"⚠️ allow_read {_printable(path)}: jobs run as {settings.account.name}, who "
                                     "cannot read it (give it to a group of that account, or make it readable by all)")

    def runnable(self, jobs: list[_Job], options: _RunOptions) -> list[_Job]:
        return [job for job in jobs if job.state in ("approved", "running") and job.folder not in self.abandoned
                and not {job.name, job.key} & options.skip_job_names]

    def start_run(self, job: _Job, options: _RunOptions, header: str | None) -> _Run | JobResult | None:
        """Claim a job and start it: a run, a result (it could not run), or None (not run
        now: another runner has it, or it is held back)."""
        approved, fingerprint = _approval(job)
        if self.settings.require_approval_digest:  # only the record out of every submitter's reach counts
            approved = _approval(job, self.site.path("approvals", job))[0]
        try:
            self.check_approval(job, approved, fingerprint)
            claim = _take_claim(self.site, job, lambda fields: _stop_leftovers(fields, self.console, job.label))
            if claim is not None and job.state == "running" and claim.attempt == 1:  # no runner here ran it
                _release(claim)
                raise _HeldBack(f"its {STATE_FILE} says it is running, but no runner of this machine runs it; "
                                f"if none does: syft-job rerun {shlex.quote(job.name)}")
        except (_HeldBack, OSError, SyftJobError) as exc:
            cause = "" if isinstance(exc, _HeldBack) else "cannot claim it: "
            self.console.say_once(job.folder, f"⏸️ Job {job.label} is not run: {cause}{exc}")
            return None
        if claim is None:
            return None
        copy = self.site.path("copies", job, f"-{claim.token[:8]}", create=True)
        try:
            if claim.attempt > _MAX_ATTEMPTS:
                raise _CannotRun(f"job {job.label} was interrupted {_MAX_ATTEMPTS} times (the runner was killed "
                                 "or the machine stopped while it ran); it is not run again")
            run = self.launch(job, claim, copy, options, approved, fingerprint)
        except _HeldBack as exc:  # said once, never as "Executing"
            self.console.say_once(job.folder, f"⏸️ Job {job.label} is not run: {exc}")
            _discard(claim, copy)
            return None
        except Exception as exc:  # it cannot run, or a runner-side failure: the job is finished as failed
            reason = str(exc)
            if not isinstance(exc, _CannotRun):
                reason = f"runner error in job {job.label}: {type(exc).__name__}: {exc}"
                logger.exception("runner error in job %s", job.label)
            self.say_started(job, claim, header)
            self.console.say(f"❌ {reason}")
            return self.finish_unrun(job, claim, copy, reason, fingerprint)
        self.say_started(job, claim, header)
        self.console.forget(job.folder)
        self.emit("started", job, "running")
        return run

    def say_started(self, job: _Job, claim: _Claim, header: str | None) -> None:
        if header:
            self.console.say(header, _RULE)
        self.console.say(f"🚀 Executing job: {_printable(job.name)}", f"📁 Job directory: {_printable(job.folder)}")
        if 1 < claim.attempt:
            self.console.say(f"🔁 Job {job.label} runs again: interrupted, attempt {claim.attempt} of {_MAX_ATTEMPTS}")

    def check_approval(self, job: _Job, approved: dict | None, fingerprint: str) -> None:
        """:raises _HeldBack: why the job must not run now."""
        status_file = os.path.join(job.results, job.protocol.status_file)
        if _may(self.config.syftbox_folder, self.config.email, job.submitter, status_file, "write"):
            raise _HeldBack(f"its submitter may write its {os.path.basename(status_file)} (see the syft.pub.yaml "
                            "rules; a rule this runner does not read exactly counts as a grant): an approval there "
                            "could be forged")
        stood = self.site.unprotected_markers().get(status_file) if job.protocol.markers else None
        st = _or_none(os.lstat, status_file) if stood else None
        if st is not None and stood == [st.st_ino, st.st_mtime_ns]:
            again = f"approve it again: syft-job approve {shlex.quote(job.name)} --user {shlex.quote(job.submitter)}"
            raise _HeldBack(f"its {APPROVED_MARKER} marker is older than the rules that keep its submitter "
                            f"from writing it, so it may be forged; if you approved it, {_printable(again)}")
        last = self.site.record(job)
        if job.protocol.markers and "finished_at" in last and fingerprint and last.get("approval") == fingerprint:
            _quietly(_atomic_write, os.path.join(job.folder, DONE_MARKER), json.dumps(
                {k: last.get(k) for k in ("status", "return_code", "finished_at")}).encode(), durable=False)
            raise _HeldBack("it already ran for this approval (its done marker was removed; it is back). "
                            f"To run it again: syft-job rerun {shlex.quote(job.name)}")
        if self.settings.require_approval_digest and approved is None:
            raise _HeldBack("it was approved without a digest of its files, and this runner is strict")

    def launch(self, job: _Job, claim: _Claim, copy: str, options: _RunOptions, approved: dict | None,
                fingerprint: str) -> _Run:
        """Copy the submission privately, check it is what was approved, start it."""
        os.mkdir(copy, 0o700)
        with _folder(copy) as copy_fd:
            files = _submission(job, copy_fd)
        if approved is not None and approved != files:
            command = f"syft-job approve {shlex.quote(job.name)} --user {shlex.quote(job.submitter)}"
            raise _HeldBack(f"its files changed after it was approved ({_changes(approved, files)}). "
                            f"Review it, then approve it again: {_printable(command)}")
        if RUN_SCRIPT not in files:
            raise _CannotRun(f"job {job.label} has no {RUN_SCRIPT} in {_printable(job.folder)}")
        if files[RUN_SCRIPT] in ("symlink", "not a regular file"):
            raise _CannotRun(f"job {job.label} was not run: its {RUN_SCRIPT} is a symlink or not a file")
        try:
            job.read_config()
            sandboxed = self.settings.isolation == "sandbox"
            packages, python, uses_python = _python_plan(copy) if sandboxed else ([], None, False)
        except SyftJobError as exc:
            raise _CannotRun(f"job {job.label} was not run: {exc}") from None
        for folder in job.protocol.output_folders:
            if os.path.isdir(os.path.dirname(os.path.join(copy, folder))):
                os.makedirs(os.path.join(copy, folder), exist_ok=True)
        account = self.settings.account.for_run(claim.token) if self.settings.account else None
        if account is not None:
            account.give(copy)
        try:  # what the owner and the runner own of the job: a folder that cannot take it holds the job back
            if not job.protocol.markers:
                os.makedirs(job.results, exist_ok=True)
            results_fd = _open_folder(job.results)
        except (OSError, JobError) as exc:
            raise _HeldBack(f"cannot use its results folder: {exc}") from None
        run = _Run(job, claim, options.timeout, results_fd, copy, fingerprint, account, packages=packages,
                   python=python, pythons=self.pythons if uses_python else [])
        no_python = self.no_python(job, python)
        if no_python:
            self.console.say(f"⚠️ {no_python}")
        self.begin(run, options, no_python)
        return run

    def begin(self, run: _Run, options: _RunOptions, note: str | None) -> None:
        """Start a run's process and its logs (``note`` first in stderr.txt); on any failure
        nothing of it is left running."""
        job, claim, copy, account, results_fd = run.job, run.claim, run.copy, run.account, run.results_fd
        try:
            try:
                _remove_at(results_fd, OUTPUTS_DIR)
                if job.protocol.markers:
                    _remove_at(results_fd, DONE_MARKER)
                else:
                    _write_state(job, status="running", completed_at=None, return_code=None)
            except OSError as exc:
                raise _HeldBack(f"cannot write its results: {exc}") from None
            env = _job_environment(self.config, self.settings.env_passthrough, claim.token,
                                   self.settings.isolation == "sandbox", account, copy)
            pythons = [f"{prefix}/bin" for _, prefix in run.pythons if prefix not in ("/usr", "/usr/local")]
            env["PATH"] = os.pathsep.join([env["PATH"], *pythons])  # the owner's Pythons last: found by uv
            run.proc = subprocess.Popen(self.command(run, env), cwd=copy, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            _add_to_claim(claim, pgid=run.pgid, leader_start=_process_start(run.pgid),
                          slurm_job_name=run.slurm_job_name)
            # The logs are made while the job starts (its output waits in the pipes).
            if options.stream_output:
                run.printer = _LinePrinter(self.console, f"[{self.config.email}][{_printable(job.name)}] ")
            try:
                for stream, name, pipe in (("stdout", STDOUT_FILE, run.proc.stdout),
                                           ("stderr", STDERR_FILE, run.proc.stderr)):
                    run.outputs[stream] = _Output(pipe.fileno(), _create_at(results_fd, name), stream, run.printer,
                                                  self.settings.max_log_bytes)
                run.returncode_fd = _create_at(results_fd, RETURNCODE_FILE)
                if note:
                    run.outputs["stderr"].write(f"syft-job: {note}\n".encode())
            except OSError as exc:
                raise _HeldBack(f"cannot write its logs: {exc}") from None
            run.exit_fd = _exit_fd(run.pgid)
            self.site.audit("start", job, self.config.email, host=socket.gethostname(), attempt=claim.attempt,
                             isolation=self.settings.isolation, runs_as=self.settings.runs_as)
        except BaseException:
            if run.proc is not None:
                _signal_group(run.pgid, signal.SIGKILL)
            run.close()
            raise

    @functools.cached_property
    def pythons(self) -> list[tuple[str, str]]:
        """The owner's Pythons that jobs can use (looked for once)."""
        return _owner_pythons(self.settings.allow_read)

    def no_python(self, job: _Job, python: str | None) -> str | None:
        """Why a job's ``uv venv --python X`` will find no Python, if it will not."""
        if not python or not _PYTHON_REQUEST.fullmatch(python) or any(
                python == version or python.startswith(version + ".") for version, _ in self.pythons):
            return None
        return (f"Job {job.label} asks for Python {_printable(python)}, which this machine does not have for jobs "
                f"(the owner's Pythons: {_pythons_text(self.pythons)})")

    def fetch(self, run: _Run, bash: str, sandbox: Callable[..., list[str]]) -> tuple[list[str], list[str], list[str]]:
        """How a sandboxed job's packages are fetched before it starts ("Python jobs" in
        Isolation): the fetch, what bwrap adds, what runs before run.sh."""
        index = self.index
        settings = {"UV_DEFAULT_INDEX": _URL_CREDENTIALS.sub("://", index), "UV_LINK_MODE": "copy",
                    **({} if self.settings.network else {"UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never"})}
        if run.packages and self.settings.allow_source_builds:  # a build runs the package's code: in the job's sandbox
            settings["UV_CACHE_DIR"] = os.path.join(run.copy, ".uv-cache")
        more = [word for name, value in settings.items() for word in ("--setenv", name, value)]
        if not run.packages:
            return [], more, []
        python = next((f"{prefix}/bin/python{version}" for version, prefix in self.pythons if run.python and (
            run.python == version or run.python.startswith(version + "."))), None)  # never one uv finds by itself
        install = [_find_program("env", os.defpath) or "env", f"HOME={os.path.expanduser('~')}",  # not the job's /tmp
                   _find_program("uv", os.environ.get("PATH", os.defpath)) or "uv", "pip", "install", "--no-config",
                   "--quiet", "--no-python-downloads", "--default-index", index,
                   *(["--python", python] if python else []), *run.packages]
        if self.settings.allow_source_builds:  # into a cache of this run alone, in a sandbox without your data
            fetch = sandbox(True, data=False) + install + ["--cache-dir", settings["UV_CACHE_DIR"]]
            return [bash, "-c", _FETCH_THEN_RUN, str(len(fetch)), *fetch], more, []
        fetch = install + ["--only-binary", ":all:", "--cache-dir", self.package_cache]
        return ([bash, "-c", _FETCH_THEN_RUN, str(len(fetch)), *fetch], more + ["--ro-bind", self.package_cache,
                _SHARED_UV_CACHE], [bash, "-c", _LINK_SHARED_CACHE, "syft-job-cache"])

    @functools.cached_property
    def index(self) -> str:
        """The owner's package index, looked for once."""
        return _package_index()

    @functools.cached_property
    def package_cache(self) -> str:
        """The package cache every sandboxed job installs from; only the runner writes it."""
        os.makedirs(self.settings.work_dir / "python-cache", exist_ok=True)
        os.chmod(self.settings.work_dir / "python-cache", 0o755)  # read by jobs, through the sandbox only
        return str(self.settings.work_dir / "python-cache")

    @functools.cached_property
    def seccomp_path(self) -> str | None:
        """The sandbox's seccomp filter, written once in the runner's state; None where
        there is none (neither x86_64 nor aarch64)."""
        program = _seccomp_filter()
        return None if program is None else self.site.save("seccomp.bpf", program)

    def command(self, run: _Run, env: dict[str, str]) -> list[str]:
        """``bash run.sh`` after srun, the sandbox or the switch to the job's account, and the
        limits (set by bash's ulimit, so no code runs between fork and exec)."""
        bash = _find_program("bash", env["PATH"]) or "bash"
        limits = []
        if self.settings.max_memory_mb is not None:
            limits.append(f"ulimit -v {int(self.settings.max_memory_mb * 1024)}")
        if self.settings.max_cpu_seconds is not None:  # SIGXCPU at the soft limit, SIGKILL one second later
            seconds = max(1, int(-(-self.settings.max_cpu_seconds // 1)))
            limits.append(f"ulimit -S -t {seconds} && ulimit -H -t {seconds + 1}")
        prefix = [bash, "-c", " && ".join(limits) + ' && exec "$@"', "syft-job-limits"] if limits else []
        if self.settings.isolation == "sandbox":
            seccomp = self.seccomp_path  # bwrap reads it from fd 3, opened by bash, so srun passes no fd
            opener = [bash, "-c", 'exec "$@" 3<"$0"', seccomp] if seccomp else []
            reads = _sandbox_reads(self.settings.allow_read, env["PATH"], run.pythons)

            def sandbox(network: bool, more: Sequence[str] = (), data: bool = True) -> list[str]:
                return opener + _sandbox_argv(run.copy, self.config.syftbox_folder if data else None,
                                              reads if data else reads[len(self.settings.allow_read):], network,
                                              run.account, 3 if seccomp else None, more)
            fetch, more, before = self.fetch(run, bash, sandbox)
            prefix = fetch + sandbox(self.settings.network, more) + prefix + before
        else:
            prefix = _switch_to(run.account) + prefix
        if self.settings.launcher == "slurm":
            run.slurm_job_name = f"syft-job-{run.claim.token[:12]}"
            minutes = int(-(-run.timeout // 60)) + 1  # the runner's own timeout stops it first
            note_id = '{ printf %s "$SLURM_JOB_ID" > "$0"; } 2>/dev/null; exec "$@"'  # for list and show
            prefix = ["srun", f"--job-name={run.slurm_job_name}", f"--chdir={run.copy}", f"--time={minutes}",
                      "--quiet", "--ntasks=1", *self.settings.slurm_args, bash, "-c", note_id,
                      self.site.path("jobs", run.job, ".slurm"), *prefix]
        return prefix + [bash, RUN_SCRIPT]

    def finish_run(self, run: _Run, options: _RunOptions) -> JobResult | None:
        """Record how a run ended: logs, return code, outputs published, done or failed.
        None for a run stopped by Ctrl+C: it stays approved."""
        job = run.job
        if run.printer:
            run.printer.flush_stale(0)
        if run.slurm_job_name and run.stop_reason:
            _scancel(f"--name={run.slurm_job_name}")
        if run.stop_reason == "interrupted":  # its claim stays, as a crashed runner's would: run again, said so
            run.close()
            if not job.protocol.markers:
                _quietly(_write_state, job, status="approved")
            _held_claims.discard(run.claim.path)
            _discard(run.claim, run.copy)
            self.console.say(f"🛑 Stopped {job.label}: it runs again at the next start")
            return None
        code, reason, failure = self.outcome(run)
        finished = datetime.datetime.now(datetime.timezone.utc)
        duration = (run.exited_at or time.monotonic()) - run.started
        held: list[str] = []
        if failure is None:
            try:
                _write_all(run.returncode_fd, str(code).encode())
                notes, held = run.publish(self.settings.max_output_bytes, self.settings.max_output_files)
                for note in notes:
                    run.outputs["stderr"].write_line(f"syft_job: {note}\n")
            except OSError as exc:
                reason = reason or f"job {job.label} could not be finished: {exc}"
        result = JobResult(job.submitter, job.name, "done" if code == 0 else "failed", code, run.started_at,
                           finished, duration, reason)
        if failure is not None:
            self.console.say(f"❌ {reason}")
        marked = self.mark_finished(job, run.claim, run.copy, result, run.approval, run.results_fd, held)
        run.close()
        if marked:
            self.say_finished(run, result, failure is not None)
        if marked and (options.share_outputs or options.share_logs):
            try:
                self.share_and_report(job, options.share_outputs, options.share_logs)
            except (OSError, SyftJobError) as exc:
                self.console.say(f"❌ Could not share the results of {job.label}: {exc}")
        return result

    def outcome(self, run: _Run) -> tuple[int, str | None, _Output | None]:
        """How a run ended: its return code, why (None: it ended by itself), and the log
        that could not be written (if one could not); the reason is noted in stderr.txt."""
        job, code, reason = run.job, run.proc.returncode, None
        failure = next((o for o in run.outputs.values() if o.failure is not None), None)
        stderr = run.outputs["stderr"]
        if failure is not None:
            code, reason = -1, f"job {job.label} was stopped: cannot write its {failure.log_name}: " \
                               f"{failure.failure.strerror or failure.failure}"
        elif run.stop_reason == "timeout":
            code, reason = -1, f"it timed out after {run.timeout:g} seconds"
            for output in run.outputs.values():
                output.write_line(TIMEOUT_LINE.decode())
        elif run.stop_reason == "cancelled":
            code, reason = -1, "cancelled"
            stderr.write_line("syft_job: cancelled by the data owner\n")
        elif any(o.cut for o in run.outputs.values()):
            cut = next(o for o in run.outputs.values() if o.cut)
            code, reason = -1, (f"its {cut.log_name} reached the limit of {self.settings.max_log_bytes} bytes "
                                "(max_log_bytes), so it was stopped")
        elif self.settings.max_cpu_seconds is not None and code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            reason = f"it used up its CPU time limit of {self.settings.max_cpu_seconds:g} seconds (max_cpu_seconds)"
        elif self.settings.max_memory_mb is not None and code != 0 and any(s in stderr.tail for s in _OUT_OF_MEMORY):
            reason = f"it ran out of memory under its limit of {self.settings.max_memory_mb:g} MB (max_memory_mb)"
        if reason and run.stop_reason in (None, "log") and failure is None and not stderr.cut:
            stderr.write_line(f"syft_job: {reason}\n")
        return code, reason, failure

    def say_finished(self, run: _Run, result: JobResult, failed_to_log: bool) -> None:
        name, code, reason = _printable(run.job.name), result.return_code, result.reason
        if run.stop_reason == "timeout":
            self.console.say(f"⏰ Job {name} timed out after {run.timeout:g} seconds (return code -1)")
        elif run.stop_reason == "cancelled":
            self.console.say(f"🛑 Job {name} was cancelled (return code -1)")
        elif reason and not failed_to_log:
            self.console.say(f"❌ Job {name} failed: {reason} (return code {code})")
        elif code == 0:
            self.console.say(f"✅ Job {name} completed successfully", f"📄 Output written to {STDOUT_FILE}")
        elif not failed_to_log:
            self.console.say(f"❌ Job {name} failed with return code {code}",
                             f"📄 Output written to {STDOUT_FILE} and {STDERR_FILE}")

    def share_and_report(self, job: _Job, share_outputs: bool, share_logs: bool) -> None:
        if job.state != "finished" and _coarse_state(job.layout, job.folder, job.results) != "finished":
            raise JobError(f"job {job.label} is not finished yet; there is nothing to share")
        _share(job, share_outputs, share_logs)
        self.site.audit("share", job, self.config.email, files=_result_hashes(job, share_outputs, share_logs))
        what = " and ".join(w for w, on in (("outputs", share_outputs), ("logs", share_logs)) if on)
        if what:
            self.console.say(f"🔓 Shared {what} of {job.label} with {_printable(job.submitter)}")

    def mark_finished(self, job: _Job, claim: _Claim, copy: str, result: JobResult, approval: str,
                       results_fd: int | None = None, held_back: Sequence[str] = ()) -> bool:
        """Write that the job is finished (it never runs again), its claim becoming the record
        of the run; False when even that fails (the job is left alone until restart)."""
        record = {"status": result.status, "return_code": result.return_code, "reason": result.reason,
                  "started_at": result.started_at.isoformat().replace("+00:00", "Z"),
                  "finished_at": result.finished_at.isoformat().replace("+00:00", "Z"),
                  "duration_s": round(result.duration, 3), "isolation": self.settings.isolation,
                  "launcher": self.settings.launcher or "local", "slurm_job_id": _slurm_job_id(self.site, job),
                  "approval": approval, "held_back": list(held_back[:100]),
                  "held_back_count": len(held_back)}
        told = {"review_reason": "cancelled by the data owner"} if result.reason == "cancelled" else {}
        try:
            if not job.protocol.markers:
                _write_state(job, status=result.status, completed_at=record["finished_at"],
                             return_code=result.return_code, **told)
            else:
                with contextlib.ExitStack() as stack:
                    fd = results_fd if results_fd is not None else stack.enter_context(_folder(job.folder))
                    done = _create_at(fd, DONE_MARKER)
                    stack.callback(os.close, done)
                    _write_all(done, json.dumps({**{k: record[k] for k in ("status", "return_code", "finished_at")},
                                                 **told}).encode())
            record["results"] = _or_none(_result_hashes, job)  # what release checks a file against
            _add_to_claim(claim, **record)
            self.site.audit("finish", job, self.config.email, host=socket.gethostname(), **{
                key: record[key] for key in ("status", "return_code", "reason", "duration_s", "isolation")})
            self.emit("finished" if result.succeeded else "failed", job, result.status, result.return_code,
                       result.reason)
            _held_claims.discard(claim.path)  # kept: the record of the run
            return True
        except (OSError, SyftJobError) as exc:
            self.console.say(f"❌ Cannot mark job {job.label} as finished ({exc}); skipping it until restart")
            self.abandoned.add(job.folder)
            return False
        finally:
            _discard(claim, copy)

    def finish_unrun(self, job: _Job, claim: _Claim, copy: str, reason: str, approval: str) -> JobResult:
        """Finish as failed a job that could not run: the reason goes to its stderr.txt."""
        now = datetime.datetime.now(datetime.timezone.utc)
        result = JobResult(job.submitter, job.name, "failed", -1, now, now, 0.0, reason)
        with contextlib.suppress(OSError, SyftJobError):  # no results folder: the record says it all the same
            os.makedirs(job.results, exist_ok=True)
            with _folder(job.results) as fd:
                datasite = str(self.config.get_user_dir(self.config.email))
                said = f"syft_job: {_relative(reason, datasite)}\n"
                for name, data in ((STDERR_FILE, said), (RETURNCODE_FILE, "-1")):
                    fd_out = _create_at(fd, name)
                    _write_all(fd_out, data.encode())
                    os.close(fd_out)
        self.mark_finished(job, claim, copy, result, approval)
        return result


# ---------------------------------------------------------------------------
# Submission: the data scientist's side, creating jobs and reading them back
# ---------------------------------------------------------------------------

CLIENT_SOURCE_ENV_VAR = "SYFT_CLIENT_INSTALL_SOURCE"
_DEFAULT_BASE_PACKAGES = ("syft-client",)
_PYTHON_VERSION = "3.12"
_NOT_SUBMITTED = frozenset({".venv", "__pycache__", ".git"})  # in a folder of code


def _double_quoted(word: str) -> str:
    """``"word"`` as the docs write packages, or shell-safe quoting when that is unsafe."""
    return shlex.quote(word) if re.search(r'["$`\\\n!]', word) else f'"{word}"'


def _python_run_script(layout: _Layout, entry: str, project_dir: str | None, has_pyproject: bool,
                       packages: Sequence[str]) -> str:
    """The run.sh of a Python job, exactly as each layout's client writes it. ``entry`` is relative to the
    job folder (legacy) or to code/; ``project_dir``: legacy only, the submitted folder's name."""
    install = ["uv pip install " + " ".join(_double_quoted(p) for p in packages)] if packages else []
    lines = ["#!/bin/bash", "set -euo pipefail", "export UV_SYSTEM_PYTHON=false"]
    if not layout.markers:
        lines += [f"cd {CODE_DIR}", f"uv venv --python {_PYTHON_VERSION}", "source .venv/bin/activate",
                  *([f"uv sync --python {_PYTHON_VERSION}"] if has_pyproject else []), *install,
                  "export PYTHONPATH=.:${PYTHONPATH:-}"]
    elif project_dir is not None and has_pyproject:
        project = shlex.quote(project_dir)
        lines += [f"cd {project} && uv sync --python {_PYTHON_VERSION} && cd ..",
                  f"source {project}/.venv/bin/activate", *install, f"export PYTHONPATH={project}:${{PYTHONPATH:-}}"]
    else:
        lines += [f"uv venv --python {_PYTHON_VERSION}", "source .venv/bin/activate", *install]
        if project_dir is not None:
            lines.append(f"export PYTHONPATH={shlex.quote(project_dir)}:${{PYTHONPATH:-}}")
    return "\n".join(lines + [f"python {shlex.quote(entry)}"]) + "\n"


def _folder_entrypoint(folder: Path, entrypoint: str | None) -> str:
    """The script to run in a submitted folder: ``entrypoint``, else main.py, else its only .py file."""
    if entrypoint:
        target = (folder / entrypoint).resolve()
        if not target.is_file() or folder.resolve() not in target.parents:
            raise JobError(f"entrypoint {entrypoint!r} is not a file inside {folder}")
        return target.relative_to(folder.resolve()).as_posix()
    if (folder / "main.py").is_file():
        return "main.py"
    scripts = sorted(p.name for p in folder.glob("*.py") if p.is_file())
    if len(scripts) != 1:
        raise JobError(f"cannot tell which script to run in {folder}: no main.py and {len(scripts)} .py "
                       f"files at its root ({', '.join(scripts) or 'none'}); pass entrypoint=...")
    return scripts[0]


class JobClient:
    """Submits jobs into data owners' datasites and lists them, as the SyftBox clients do.

    :param config: the data scientist's configuration (its email is the submitter).
    :param layout: ``"legacy"``, ``"v0"`` or ``"v1"`` (see ``LAYOUTS``); None: the
        layout the owner's job folder already uses, else ``"v0"``, which every current
        owner's client reads.
    """

    def __init__(self, config: SyftJobConfig, layout: str | None = None) -> None:
        if layout is not None and layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)} or None, got {layout!r}")
        self.config = config
        self.layout = layout

    def submit_bash_job(self, user: str, script: str, job_name: str = "") -> Path:
        """Submit a shell script as a job for ``user`` to review.

        :param user: the data owner.
        :param script: the text of run.sh (legacy: a ``#!/bin/bash`` line is added).
        :param job_name: the job's name; empty gives ``Job - <8 hex chars>``.
        :returns: the new job folder.
        """
        layout = self._layout_for(user)
        if layout.markers:
            script = ("" if script.startswith("#!") else "#!/bin/bash\n") + script + (
                "" if script.endswith("\n") else "\n")
            return self._create_job(user, job_name, layout, script, {}, lambda folder: None)

        def copy(folder: Path) -> None:
            (folder / CODE_DIR).mkdir()
            (folder / CODE_DIR / "script.sh").write_text(script, encoding="utf-8")
        return self._create_job(user, job_name, layout, script, {"type": "bash", "files": ["script.sh"]}, copy)

    def submit_python_job(self, user: str, code_path: str | os.PathLike, job_name: str = "",
                          dependencies: Sequence[str] | None = None, entrypoint: str | None = None,
                          base_packages: Sequence[str] | None = None) -> Path:
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
        layout = self._layout_for(user)
        source = Path(code_path).expanduser().absolute()
        dependencies = [str(d) for d in (dependencies or [])]
        if base_packages is None:
            from_env = os.environ.get(CLIENT_SOURCE_ENV_VAR, "").strip()
            base_packages = [from_env] if from_env else list(_DEFAULT_BASE_PACKAGES)
        packages = list(dict.fromkeys([*base_packages, *dependencies]))
        is_folder = source.is_dir()
        if is_folder:
            entry = _folder_entrypoint(source, entrypoint)
            project = _check_folder_name(source.name, "code folder name") if layout.markers else None
        elif source.is_file() and source.suffix == ".py":
            entry, project = _check_folder_name(source.name, "code file name"), None
        else:
            raise JobError(f"code not found: {source}" if not source.exists()
                           else f"{source} is not a .py file: submit a Python script, or a folder of code")
        if (project or entry) in layout.runner_names | {CONFIG_FILE, RUN_SCRIPT}:
            raise JobError(f"the code is named {project or entry!r}, a name the runner uses; rename it")

        def copy(folder: Path) -> None:
            where = folder / (project or ("" if layout.markers else CODE_DIR))
            if is_folder:
                shutil.copytree(source, where, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SUBMITTED))
            else:
                where.mkdir(exist_ok=True)
                shutil.copy2(source, where / entry)
        has_pyproject = is_folder and (source / "pyproject.toml").is_file()
        script = _python_run_script(layout, f"{project}/{entry}" if project else entry, project, has_pyproject,
                                    packages)
        extra = {"type": "python", "code_path": str(source), "is_folder_submission": is_folder}
        if layout.markers:
            extra.update(entry_point=entry, dependencies=dependencies)
        else:
            extra.update(entrypoint=entry, dependencies=packages,
                         files=sorted(p.relative_to(source).as_posix() for p in source.rglob("*")
                                      if p.is_file() and not _NOT_SUBMITTED & set(p.parts))
                         if is_folder else [entry])
        return self._create_job(user, job_name, layout, script, extra, copy)

    def _layout_for(self, owner: str) -> _Layout:
        job_dir = self.config.get_job_dir(owner)  # checks the email first
        if self.layout is not None:
            return _LAYOUTS[self.layout]
        for layout in _LAYOUTS.values():
            if layout.level and (job_dir / "inbox" / self.config.email / layout.level).is_dir():
                return layout
        if not (job_dir / "inbox").is_dir() and not (job_dir / "review").is_dir() \
                and (job_dir / self.config.email).is_dir():
            return _LAYOUTS["legacy"]
        return _LAYOUTS["v0"]

    def _create_job(self, user: str, job_name: str, layout: _Layout, script: str, extra: dict,
                    copy_code: Callable[[Path], None]) -> Path:
        """Make the job folder; config.yaml comes last, so a runner never sees half a job."""
        name = _check_folder_name(job_name or f"Job - {secrets.token_hex(4)}", "job name")
        if not layout.markers and _VERSION_FOLDER.match(name):
            raise JobError(f"the job name {name!r} is reserved for protocol folders (v1, v2, ...); rename it")
        if not self.config.get_user_dir(user).is_dir():
            raise JobError(f"no datasite for {user} in {self.config.syftbox_folder} (is the SyftBox folder synced?)")
        folder = layout.paths(self.config.get_job_dir(user), self.config.email, name)[0]
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
        except FileExistsError:
            raise JobError(f"a job named {name!r} already exists at {folder}") from None
        try:
            copy_code(folder)
            _atomic_write(folder / RUN_SCRIPT, script.encode("utf-8"), mode=0o755)
            if layout.markers:
                config = {"name": name, "submitted_by": self.config.email,
                          "submitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), **extra}
            else:
                config = {"name": name, "type": "bash", "submitted_at": _utc_now(), "entrypoint": None,
                          "dependencies": [], "files": [], "is_folder_submission": False, "code_path": None,
                          "job_type": "local", "datasets": None, "headers": {}, **extra}
                if layout.versioned:
                    config.update(canonical_name="JobSubmissionMetadata", version="1")
            _atomic_write(folder / CONFIG_FILE, dump_yaml(config).encode("utf-8"))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    @property
    def jobs(self) -> JobsList:
        """This data scientist's jobs at every datasite in the SyftBox folder, newest first, as its
        own SyftBox would show them: logs and outputs only where the owner shared them."""
        found = []
        for site in _subfolders(self.config.syftbox_folder):
            job_dir = Path(site.path) / "app_data" / "job"
            found += [_job_info(job, self.config.syftbox_folder, site.name, self.config.email)
                      for job in _JobScanner(job_dir).scan() if job.submitter == self.config.email]
        return JobsList(sorted(found, key=lambda info: info._when, reverse=True))


@dataclasses.dataclass
class JobInfo:
    """One job as its submitter sees it (``JobClient.jobs``). ``stdout``, ``stderr`` and
    ``outputs`` are None until the owner shares them."""

    name: str
    owner: str
    submitted_by: str
    status: str
    reason: str | None
    return_code: int | None
    stdout: str | None
    stderr: str | None
    outputs: list[Path] | None
    submitted_at: str | None
    layout: str
    folder: Path
    _when: float = dataclasses.field(default=0.0, repr=False, compare=False)

    _COLUMNS = (("NAME", "name"), ("OWNER", "owner"), ("STATUS", "status"), ("SUBMITTED", "submitted_at"),
                ("RC", "return_code"), ("REASON", "reason"), ("SHARED", "shared"))

    @property
    def shared(self) -> str:
        return " ".join(what for what, value in (("logs", self.stdout), ("outputs", self.outputs))
                        if value is not None)

    def _cells(self) -> list[str]:
        return ["" if getattr(self, key) is None else _printable(str(getattr(self, key))) for _, key in self._COLUMNS]

    def __str__(self) -> str:
        text = "\n".join(f"{title.lower():>9}: {cell}" for (title, _), cell in zip(self._COLUMNS, self._cells()))
        for label, value in (("stdout", self.stdout), ("stderr", self.stderr)):
            if value:
                text += f"\n--- {label} ---\n" + _printable(value.rstrip("\n")).replace("\\n", "\n")
        return text

    def _repr_html_(self) -> str:
        return JobsList([self])._repr_html_()


class JobsList(list):
    """A list of :class:`JobInfo` that prints as a table, in a terminal and in Jupyter."""

    def __str__(self) -> str:
        if not self:
            return "No jobs."
        return _table([[title for title, _ in JobInfo._COLUMNS]] + [job._cells() for job in self])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in JobInfo._COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in job._cells()) + "</tr>" for job in self)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table(rows: list[list[str]]) -> str:
    widths = [max(map(len, column)) for column in zip(*rows)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _job_info(job: _Job, syftbox: Path, owner: str, viewer: str) -> JobInfo:
    """A job as ``viewer`` sees it: only what SyftBox's rules let it read. Its own SyftBox holds
    only that and no permission files: there, a file that is present is one it may read."""
    datasite = os.path.join(syftbox, owner)
    steps = os.path.relpath(job.results, datasite).split(os.sep)
    synced = not any(os.path.lexists(os.path.join(datasite, *steps[:depth], PERMISSION_FILE))
                     for depth in range(len(steps) + 1))

    def readable(name: str) -> str | None:
        path = os.path.join(job.results, name)
        if not os.path.lexists(path) or not (synced or _may(syftbox, owner, viewer, path, "read")):
            return None
        data = _or_none(_read_file, path, 16 * 1024 * 1024, truncate=True)
        return None if data is None else data.decode("utf-8", "replace")

    status, return_code, reason = dataclasses.astuple(_status(job, read=readable))
    outputs = os.path.join(job.results, OUTPUTS_DIR)
    files = sorted(p for p in Path(outputs).rglob("*") if p.is_file() and p.name != PERMISSION_FILE) \
        if os.path.isdir(outputs) and not os.path.islink(outputs) else []
    released = [p for p in files if synced or _may(syftbox, owner, viewer, str(p), "read")]  # all, or some
    shared = released or (files == [] and _may(syftbox, owner, viewer, os.path.join(outputs, "f"), "read"))
    try:
        submitted = job.read_config().get("submitted_at")
        when = datetime.datetime.fromisoformat(str(submitted).replace("Z", "+00:00")).timestamp()
    except (SyftJobError, ValueError, OverflowError):
        submitted, when = None, os.lstat(job.folder).st_mtime
    return JobInfo(job.name, owner, job.submitter, status, reason, return_code,
                   readable(STDOUT_FILE), readable(STDERR_FILE), released if shared else None,
                   None if submitted is None else str(submitted), job.layout,
                   Path(job.folder), when)


# ---------------------------------------------------------------------------
# Runner: the poll loop, announcements, review commands and queries
# ---------------------------------------------------------------------------

def _script_preview(path: str, max_lines: int | None = 5, max_bytes: int = 16 * 1024 * 1024) -> str:
    """The lines of a script as bash reads them (only ``\n`` ends a line), control
    characters escaped: what the owner reviews is what runs.

    :param max_bytes: read no more of it (with ``max_lines``: 64 kB).
    """
    if not os.path.lexists(path):
        return f"(no {RUN_SCRIPT})"
    max_bytes = 64 * 1024 if max_lines else max_bytes
    try:
        head = _read_file(path, max_bytes, truncate=True)
    except SyftJobError as exc:
        return f"❌ {exc}"
    lines = head.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    shown = [f"{i}: {_printable(line)}" for i, line in enumerate(lines[:max_lines], 1)]
    if (max_lines and len(lines) > max_lines) or len(head) == max_bytes:
        shown.append("... (more lines)")
    return "\n".join(shown) if shown else "(empty)"


def _is_text(path: str) -> bool:
    """Whether a file reads as UTF-8 text (its first 8 kB: no NUL, nothing undecodable
    but a character cut at the end)."""
    try:
        head = _read_file(path, 8192, truncate=True)
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return b"\0" not in head and exc.start >= len(head) - 3 and len(head) == 8192
    except (OSError, SyftJobError):
        return False
    return b"\0" not in head


def _config_items(config: dict) -> list[tuple[str, str]]:
    """A job's settings to show, escaped: name, submitter and time first."""
    first = [k for k in ("name", "submitted_by", "submitted_at") if k in config]
    items = []
    for key in first + sorted((k for k in config if k not in first), key=str):
        value = config[key]
        if isinstance(value, list):
            shown = ", ".join(map(str, value))
        elif value is None or isinstance(value, (bool, int)):
            shown = "" if value is None else _dump_scalar(value)
        else:
            shown = str(value)
        items.append((_printable(str(key)), _printable(shown)))
    return items


def _check_settings(config: SyftJobConfig, isolation: str, allow_read: Any, network: bool | None, run_as: str | None,
                    work_dir: Any, max_concurrent_jobs: int, launcher: str | None, slurm_args: Any,
                    require_approval_digest: bool, env_passthrough: Any, max_memory_mb: float | None,
                    max_cpu_seconds: float | None, max_log_bytes: int | None, max_output_bytes: int,
                    max_output_files: int, output_checks: dict | None, allow_source_builds: bool) -> _Settings:
    """SyftJobRunner's keywords, checked. :raises ConfigError: naming the one that is wrong."""
    resolved = _resolve_isolation(isolation)
    why_no_sandbox = "isolation 'none' was asked for" if isolation == "none" else "bubblewrap is not installed or " \
        "cannot create namespaces here (Debian/Ubuntu: apt install bubblewrap)"
    if network is False and resolved != "sandbox":
        raise ConfigError(f"network=False (--no-network) needs the sandbox, and jobs run without one here ({why_no_sandbox})")
    account = _job_account(run_as)
    work = Path(work_dir).expanduser().resolve() if work_dir else _default_work_dir()
    if work == config.syftbox_folder or config.syftbox_folder in work.parents:
        raise ConfigError(f"work_dir {work} is inside the SyftBox folder: jobs and submitters could reach it")
    existing = next(p for p in (work, *work.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"work_dir {work}: {existing} is not a folder this runner can write in")
    if account and resolved == "none" and not account.can_reach(str(existing)):
        raise ConfigError(f"work_dir {work}: jobs run as {account.name} in copies inside it, and {account.name} cannot "
                          f"go through {existing}'s folders; choose one it can (the default for root is /var/lib/syft-job)")
    if launcher not in (None, "slurm"):
        raise ConfigError(f"launcher must be None or 'slurm', got {launcher!r}")
    passthrough = tuple([env_passthrough] if isinstance(env_passthrough, str) else env_passthrough)
    for name in passthrough:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ConfigError(f"env_passthrough: {name!r} is not an environment variable name")
    runs_as = f"a uid of their own, with the groups of {account.name}" if account else \
        f"you ({_printable(os.environ.get('USER') or str(os.getuid()))})"
    return _Settings(
        resolved, why_no_sandbox, resolved != "sandbox" if network is None else bool(network), account, runs_as, work,
        tuple(_readable_path(path, config, work) for path in (
            [allow_read] if isinstance(allow_read, (str, os.PathLike)) else allow_read)),
        _positive(max_concurrent_jobs, "max_concurrent_jobs", int), launcher,
        tuple(map(str, [slurm_args] if isinstance(slurm_args, str) else slurm_args)), bool(require_approval_digest),
        passthrough, None if max_memory_mb is None else _positive(max_memory_mb, "max_memory_mb"),
        None if max_cpu_seconds is None else _positive(max_cpu_seconds, "max_cpu_seconds"),
        None if max_log_bytes is None else _positive(max_log_bytes, "max_log_bytes", int),
        _positive(max_output_bytes, "max_output_bytes", int), _positive(max_output_files, "max_output_files", int),
        bool(allow_source_builds), _output_checks(output_checks))


def _readable_path(path: str | os.PathLike, config: SyftJobConfig, work_dir: Path) -> str:
    """An allow_read path, resolved. :raises ConfigError: missing, or holding what
    jobs must never read: a job tree, the runner's state, the owner's home."""
    resolved = str(Path(path).expanduser().resolve())
    if not os.path.exists(resolved):
        raise ConfigError(f"allow_read: {path} does not exist")
    trees = [os.path.join(site.path, "app_data", "job") for site in _subfolders(config.syftbox_folder)]
    for what, folder in [*(("a job tree", tree) for tree in trees), ("the runner's work_dir", str(work_dir)),
                         ("your home", os.path.expanduser("~"))]:
        if _within(folder, resolved) or (what != "your home" and _within(resolved, folder)):
            raise ConfigError(f"allow_read: {path} would let jobs read {what} ({folder}); name a folder of data")
    return resolved


def _job_named(job_dir: Path, job_name: str, user: str | None = None) -> _Job:
    """The one job named ``job_name`` (of ``user``, or of any submitter), in any layout.
    It may be written as the runner prints it: ``submitter/name``, escaped, with its
    layout after it (``ds@x.io/count (v1)``)."""
    name, layout = job_name, None
    match = re.fullmatch(r"(.+) \((v0|v1)\)", name) if isinstance(name, str) else None
    if match:
        name, layout = match.groups()
    submitter, _, rest = name.partition("/") if isinstance(name, str) else ("", "", "")
    if rest and _EMAIL_RE.match(submitter) and user in (None, submitter):
        name, user = rest, submitter
    _check_folder_name(name, "job name")
    if user is not None:
        _check_email(user)
    scanned = _JobScanner(job_dir).scan()
    jobs = [job for job in scanned if name in (job.name, _printable(job.name))
            and user in (None, job.submitter) and layout in (None, job.layout)]
    if not jobs:
        where = f"from {user}" if user else "from any submitter"
        close = difflib.get_close_matches(name, sorted({_printable(job.name) for job in scanned}), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise JobNotFoundError(f"no job named {_printable(repr(job_name))} {where} in {job_dir}{hint}")
    if len(jobs) > 1:
        raise JobError(f"several jobs are named {_printable(repr(job_name))}: "
                       f"{', '.join(job.label for job in jobs)}; pass user=... (--user)")
    return jobs[0]


def _job_in(job: _Job, site: _Site, statuses: Sequence[str], why: str) -> str:
    """The job's status, if it is one of ``statuses``. :raises JobError: naming the job, its
    status and ``why``."""
    status = _status(job, site).status
    if status not in statuses:
        raise JobError(f"job {job.label} is {status}{why}")
    return status


def _state_problem(job: _Job) -> str:
    """Why a job's state.yaml cannot be used."""
    try:
        _read_state(job.results)
    except (OSError, SyftJobError) as exc:
        return str(exc)
    return "unknown"


def _orphaned_reviews(scanner: _JobScanner, job_dir: Path, jobs: list[_Job]) -> Iterator[str]:
    """The review/ folders with a state.yaml whose submission is gone from inbox/."""
    known = {job.results for job in jobs}
    for _, path in scanner.folders(os.path.join(job_dir, "review")):
        for name, folder in scanner.folders(path):
            for results in ([f for _, f in scanner.folders(folder)] if name in _LEVELS else [folder]):
                if results not in known and os.path.lexists(os.path.join(results, STATE_FILE)):
                    yield results


def _seen_key(job: _Job) -> str:
    """A job's identity for announcements: a submission made again is new again."""
    st = _or_none(os.lstat, job.folder)
    return f"{job.layout}/{job.key}" + (f"/{st.st_ino}" if st else "")


def _announcement(job: _Job) -> list[str]:
    """What the owner reads of a new job: where it is, its script and its settings."""
    try:
        config = [f"{key}: {value}" for key, value in _config_items(job.read_config())]
    except SyftJobError as exc:
        config = [f"❌ {exc}"]
    return [f"🔔 NEW JOB DETECTED: {job.label}", f"📁 Location: {_printable(job.folder)}", "📝 Script preview:",
            _script_preview(os.path.join(job.folder, RUN_SCRIPT)), "⚙️ Config:", *config, _THIN_RULE]


def _record_approval(site: _Site, owner: str, job: _Job, files: dict[str, str], reason: str | None,
                     method: str) -> str:
    """Record the approval of exactly ``files`` ("manual", or "auto": trusted code); its digest."""
    now, recorded = _utc_now(), _digest(files)
    record = {"approved_by": owner, "approved_at": now, "digest": recorded, "files": files, "approval_method": method}
    if reason:
        record["review_reason"] = reason
    data = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    _atomic_write(site.path("approvals", job, create=True), data, 0o600)  # what --strict trusts
    _atomic_write(_approval_path(job), data)
    if not job.protocol.markers:
        _write_state(job, status="approved", approved_by=owner, approved_at=now, approval_method=method,
                     review_reason=reason)
    site.audit("approve", job, owner, digest=recorded, reason=reason, method=method)
    site.poke()
    return recorded


class _Trust:
    """The code digests the owner trusts, by submitter: work_dir/trust.json, out of every
    submitter's reach. A submitter is matched exactly (KIM@, or a look-alike K, is another
    folder and another person)."""

    def __init__(self, site: _Site) -> None:
        self.site = site

    def load(self) -> dict[str, list[str]]:
        trusted = _read_json(str(self.site.root / "trust.json"))
        return {k: [d for d in v if isinstance(d, str)] for k, v in trusted.items() if isinstance(v, list)} \
            if isinstance(trusted, dict) else {}

    def change(self, submitter: str, digest: str, trust: bool) -> None:
        """:raises JobError: not an email, not a whole sha256, or untrusting what is not trusted."""
        if not _EMAIL_RE.match(submitter.strip()):
            raise JobError(f"{_printable(submitter)!r} is not a submitter's email")
        if not re.fullmatch(r"[0-9a-f]{64}", digest.strip().lower()):
            raise JobError(f"give the whole code digest that show printed (64 hex digits), not {_printable(digest)!r}")
        submitter, digest = submitter.strip(), digest.strip().lower()
        trusted = self.load()
        digests = trusted.setdefault(submitter, [])
        if trust and digest not in digests:
            digests.append(digest)
        elif not trust and digest in digests:
            digests.remove(digest)
        elif not trust:
            raise JobError(f"the code digest {digest} is not trusted for {_printable(submitter)}")
        self.site.save("trust.json", json.dumps({k: v for k, v in trusted.items() if v}, indent=1,
                                                sort_keys=True).encode())


class _Events:
    """What happens to jobs, told to ``on_event``: a callable (a failure is said in one
    line, and forgotten), or a shell command run by _Hooks."""

    def __init__(self, on_event: Callable[[dict], Any] | str | None, console: _Console) -> None:
        if on_event is not None and not callable(on_event) and not isinstance(on_event, str):
            raise ConfigError(f"on_event must be a callable or a shell command, got {on_event!r}")
        self.on_event, self.console = on_event, console
        self.hooks = _Hooks(on_event, console) if isinstance(on_event, str) else None
        self.states: dict[str, str] | None = None  # job folder -> its state at the last poll of run()

    def emit(self, event: str, job: _Job, status: str, return_code: int | None = None,
             reason: str | None = None) -> None:
        if self.on_event is None:
            return
        record = {"event": event, "job": job.name, "submitter": job.submitter, "status": status,
                  "return_code": return_code, "reason": None if reason is None else reason[:2000], "at": _utc_now()}
        if self.hooks is not None:
            self.hooks.add(record)
            return
        try:
            self.on_event(record)
        except Exception as exc:
            self.console.say(f"⚠️ on_event failed for {event} of {job.label}: {type(exc).__name__}: {exc}")

    def note_decisions(self, jobs: list[_Job], site: _Site) -> None:
        """Tell of the approvals and rejections made since the last poll, by whoever."""
        if self.states is not None:
            for job in jobs:
                if job.state in ("approved", "rejected") and self.states.get(job.folder) != job.state:
                    self.emit(job.state, job, job.state, reason=_status(job, site).reason)
        self.states = {job.folder: job.state for job in jobs}


def _job_row(job: _Job, site: _Site, config: SyftJobConfig, isolation: str) -> dict:
    """A job as a row of :meth:`SyftJobRunner.list_jobs`."""
    record = site.record(job)
    state = (_or_none(_read_state, job.results) if not job.protocol.markers else None) or {}
    try:
        submitted = job.read_config().get("submitted_at")
    except SyftJobError:
        submitted = None
    status, code, reason = dataclasses.astuple(_status(job, site))
    finished, running = status in ("done", "failed"), status == "running"
    started = record.get({"done": "started_at", "failed": "started_at", "running": "claimed_at"}.get(status, ""))
    elapsed = None
    if running and isinstance(started, str):
        since = _or_none(datetime.datetime.fromisoformat, started.replace("Z", "+00:00"))
        elapsed = None if since is None else time.time() - since.timestamp()
    slurm_id = record.get("slurm_job_id") if finished else None
    if running:
        slurm_id = _slurm_job_id(site, job)
    return {"submitter": job.submitter, "name": job.name, "layout": job.layout, "status": status,
            "submitted_at": None if submitted is None else str(submitted), "started_at": started,
            "elapsed_s": None if elapsed is None else round(elapsed, 3),
            "finished_at": (record.get("finished_at") or state.get("completed_at")) if finished else None,
            "duration_s": record.get("duration_s") if finished else None, "return_code": code, "reason": reason,
            "shared": _what_is_shared(job, config.syftbox_folder, config.email) if finished else [],
            "isolation": record.get("isolation") if finished else isolation, "slurm_job_id": slurm_id,
            "folder": job.folder, "results": job.results}


def _checked_results(job: _Job, record: dict, checks: dict, overrides: dict | None) -> list[dict]:
    """The checked reports of a finished job's result files, each flagged
    ``changed-after-run`` when it no longer has the sha256 recorded at its end.

    :param overrides: checks named here replace the runner's (``checks``).
    """
    if overrides:
        checked = _output_checks(overrides)
        checks = {**checks, **{name: checked[name] for name in overrides}}
    recorded = record.get("results") if isinstance(record.get("results"), dict) else {}
    reports = _result_reports(job, checks)
    for report in reports:
        if recorded.get(report["path"]) != report["sha256"]:
            report["flags"].append("changed-after-run")
    return reports


def _review_copy(job: _Job, executor: _Executor) -> dict:
    """What describe_job shows of a submission, from one private copy of it: each file read
    once, so what is shown is what was hashed."""
    with tempfile.TemporaryDirectory(prefix="syft-job-review-") as copy:
        with _folder(copy) as fd:
            files = _submission(job, fd)
        sizes = {rel: os.lstat(os.path.join(copy, rel)).st_size if os.path.lexists(os.path.join(copy, rel)) else 0
                 for rel in files}
        code = {rel: _script_preview(os.path.join(copy, rel), None, 1 << 20) for rel in files
                if rel not in (RUN_SCRIPT, CONFIG_FILE) and _is_text(os.path.join(copy, rel))}
        kind = files.get(RUN_SCRIPT, "")
        run_sh = f"❌ {RUN_SCRIPT} is a {kind}; it never runs" if kind in ("symlink", "not a regular file") \
            else _script_preview(os.path.join(copy, RUN_SCRIPT), None)
        try:
            config: Any = dataclasses.replace(job, folder=copy).read_config()
        except SyftJobError as exc:
            config = f"❌ {exc}".replace(copy, job.folder)
        try:
            packages, python, _ = _python_plan(copy)
            python_note = executor.no_python(job, python)
        except JobError as exc:
            packages, python, python_note = [], None, f"it is not run in the sandbox: {exc}"
    return {"run_sh": run_sh, "config": config, "code": code, "digest": _digest(files),
            "code_digest": _code_digest(files), "packages": packages, "python": python, "python_note": python_note,
            "files": [{"path": rel, "size": sizes[rel], "sha256": sha} for rel, sha in files.items()],
            "submitted": files}


def _approval_shown(job: _Job) -> dict:
    """Who approved a job, when and how, from its approval record and its state.yaml."""
    approval = _read_json(_approval_path(job)) or {}
    if not job.protocol.markers:
        approval = {**approval, **{k: v for k, v in (_or_none(_read_state, job.results) or {}).items()
                                   if k in ("approved_by", "approved_at", "approval_method") and v}}
    return {"approved_by": approval.get("approved_by"), "approved_at": approval.get("approved_at"),
            "approval_method": approval.get("approval_method") or ("manual" if approval.get("approved_at") else None)}


def _to_release(job: _Job, reports: dict[str, dict], paths: Sequence[str] | None,
             include_flagged: bool) -> tuple[list[str], dict[str, list[str]]]:
    """Which result files to release, and which are held back with their flags.
    :raises JobError: a path that is not a result of the job."""
    unknown = [p for p in paths or () if p not in reports]
    if unknown:
        raise JobError(f"job {job.label} has no result {', '.join(map(repr, unknown))}; its results: "
                       f"{', '.join(reports) or 'none'}")
    chosen = [r for r in reports.values() if (paths is None and (include_flagged or not r["flags"]))
              or r["path"] in (paths or ())]
    released = [r["path"] for r in chosen if "changed-after-run" not in r["flags"]]
    held = {p: r["flags"] for p, r in reports.items() if p not in released and (paths is None or p in paths)}
    return released, held


def _release_lines(job: _Job, reports: dict[str, dict], released: list[str], held: dict[str, list[str]]) -> list[str]:
    """What the owner is told of a release."""
    lines = []
    for path, flags in held.items():
        why = "changed after the run: not what was checked" if "changed-after-run" in flags else \
            f"flagged {', '.join(flags)}: name it, or release --all"
        lines.append(f"⚠️ Not released: {_printable(path)} of {job.label} ({why})")
    lines += [f"⚑ {_printable(path)}: {', '.join(reports[path]['flags'])} (released: you named it)"
              for path in released if reports[path]["flags"]]
    if released:
        lines.append(f"🔓 Released {len(released)} file(s) of {job.label} to {_printable(job.submitter)}: "
                     + ", ".join(_printable(p) for p in released))
    return lines


def _follow(job: _Job, site: _Site, path: str, follow: bool) -> Iterator[bytes]:
    """A job's log at ``path``, in chunks; with ``follow``, more as the job writes it, until
    the job ends (a new run is read from its start)."""
    position, identity = 0, None
    while True:
        now = dataclasses.replace(job, state=_coarse_state(job.layout, job.folder, job.results))
        running = follow and _status(now, site).status in ("running", "approved")
        current = _file_identity(path)
        if current and current[0] != identity:
            position, identity = 0, current[0]
        with contextlib.suppress(SyftJobError, OSError):  # not there yet, or gone: look again
            with os.fdopen(_open_regular(path), "rb") as f:
                f.seek(position)
                for chunk in iter(lambda: f.read(_READ_SIZE), b""):
                    position += len(chunk)
                    yield chunk
        if not running:
            return
        time.sleep(0.2)


def _watched_folders(config: SyftJobConfig, site: _Site, scanner: _JobScanner) -> list[str]:
    """Where a change means news: the job directory, its submitters' and protocols'
    folders, every job not finished (and where its state is written), the runner's
    own state (commands poke it)."""
    job_dir = config.get_job_dir(config.email)
    datasite = config.get_user_dir(config.email)
    folders = [str(datasite), str(datasite / "app_data"), str(job_dir), str(site.root),
               *(entry.path for entry in _subfolders(job_dir))]
    for root in (job_dir / "inbox", job_dir / "review"):
        for submitter in _subfolders(root):
            folders += [submitter.path, *(os.path.join(submitter.path, level) for level in _LEVELS)]
    watched: dict[str, int] = {}  # by submitter: one with thousands of jobs cannot crowd the others out
    for submitter, folder in scanner.open:
        watched[submitter] = watched.get(submitter, 0) + 1
        if watched[submitter] <= _MAX_WATCHED_PER_SUBMITTER:  # past that: the safety scan sees them
            folders.append(folder)
    return folders


def _banner(runner: SyftJobRunner) -> list[str]:
    """The lines run() starts with: what runs jobs here, and how."""
    settings = runner.settings
    filtered = "seccomp filter" if _seccomp_filter() else f"no seccomp filter on {os.uname().machine}"
    sandbox = f"sandbox (bubblewrap, {filtered}, " + ("network on" if settings.network else "no network") + ")"
    srun = "".join(" " + arg for arg in settings.slurm_args)
    return [f"🚀 SyftJob Runner started: version: {__version__}", f"👤 Monitoring jobs for: {runner.config.email}",
            f"📂 Job directory: {runner.job_dir}", f"⏱️ Poll interval: {runner.poll_interval:g} seconds",
            f"🛡️ Isolation: {sandbox if settings.isolation == 'sandbox' else 'none'}; jobs run as {settings.runs_as}",
            *([f"⚠️ Jobs run without a sandbox ({settings.why_no_sandbox})"] if settings.isolation == "none" else []),
            f"🐍 Pythons for jobs: {_pythons_text(runner._executor.pythons)}",
            *([f"⚙️ Jobs at once: {settings.max_concurrent_jobs}"] if settings.max_concurrent_jobs > 1 else []),
            *([f"🖥️ Launcher: slurm (srun{srun})"] if settings.launcher else []),
            "⏹️ Press Ctrl+C to stop", _RULE]


def _existing_jobs(jobs: list[_Job]) -> list[str]:
    """What run() says of the jobs it finds at its start."""
    if not jobs:
        return ["📭 No existing jobs found"]
    states = [{"unreceived": "inbox", "broken": "inbox"}.get(job.state, job.state) for job in jobs]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("inbox", "approved", "running", "finished", "rejected")
                       if states.count(s) or s != "rejected")
    return [f"📋 Found {len(jobs)} existing job(s): {counts}",
            *(f"- {job.label} (waiting for review)" for job in jobs if job.state == "inbox")]


def _reset_lines(job_dir: Path, owner: str, by_status: dict[str, list[_Job]], count: int) -> tuple[list[str], list[str]]:
    """What reset_all_jobs says before deleting, and after."""
    before = [f"🔄 RESETTING ALL JOBS for {owner}", f"📁 Target directory: {job_dir}"]
    for status, of_status in by_status.items():
        if of_status:
            before += [f"📋 Found {len(of_status)} jobs in {status}:", *(f"- {job.label}" for job in of_status)]
    before += [f"⚠️ WARNING: This will permanently delete {count} jobs!", "This action cannot be undone.",
               f"🗑️ Deleting {count} jobs and their share rules in {job_dir}"]
    after = ["✅ Job reset completed successfully!", "📊 Summary:", f"- Deleted {count} jobs total",
             *(f"- {status}: {len(of_status)} jobs deleted" for status, of_status in by_status.items() if of_status)]
    return before, after


def _files_to_approve(job: _Job, digest: str | None) -> dict[str, str]:
    """The submitted files and their sha256, if they still hash to ``digest`` (when given).
    :raises JobError: a digest that is not one, or that no longer matches."""
    given = None if digest is None else digest.strip().lower()
    if given is not None and not re.fullmatch(r"[0-9a-f]{32,64}", given):
        raise JobError(f"job {job.label} was not approved: give the whole digest that show printed (64 hex "
                       f"digits; a prefix shorter than 32 is cheap to collide), not {_printable(digest)!r}")
    files = _submission(job)
    recorded = _digest(files)
    if given is not None and not recorded.startswith(given):
        raise JobError(f"job {job.label} was not approved: the digest {given} does not match its files, which "
                       f"hash to {recorded}; look again (syft-job show)")
    return files


def _submitter_folders(job_dir: Path, email: str) -> list[tuple[Path, list]]:
    """The folders a new submitter submits into and reads from, with their rules: today's
    inbox/review, or the legacy folder where the job directory holds only legacy ones."""
    legacy = [entry for entry in _subfolders(job_dir) if entry.name not in _LAYOUT_FOLDERS]
    if legacy and not any(os.path.isdir(job_dir / f) for f in ("inbox", "review")):
        return [(job_dir / email, [("**", [], [email])] + _protections(_LAYOUTS["legacy"], email))]
    return [(job_dir / "inbox" / email, [("**", [], [email])]),
            (job_dir / "review" / email, _protections(_LAYOUTS["v0"], email))]


class _Intake:
    """What each scan of the job directory brings in: new inbox/review jobs received
    (refused when malformed), submitters' folders and legacy job folders protected, a
    broken state.yaml or a review folder without its submission said once."""

    def __init__(self, config: SyftJobConfig, site: _Site, console: _Console) -> None:
        self.config, self.site, self.console = config, site, console
        self.job_dir = config.get_job_dir(config.email)
        self.scanner = _JobScanner(self.job_dir)
        self.poked_at = 0
        self.protected: set[tuple[bool, str]] = set()  # (markers?, submitter) whose folders are protected
        self.protected_jobs: set[str] = set()  # legacy job folders given rules of their own

    def jobs(self) -> list[_Job]:
        if self.site.poked_at() != self.poked_at:  # a command changed a job by hand
            self.poked_at = self.site.poked_at()
            self.scanner.forget()
        jobs = [self._take_in(job) for job in self.scanner.scan()]
        for results in _orphaned_reviews(self.scanner, self.job_dir, jobs):
            self.console.say_once(results, f"⚠️ {_printable(results)} has no job in inbox/ (the submission is gone); "
                                           "it is left as it is")
        return jobs

    def _take_in(self, job: _Job) -> _Job:
        try:
            if job.state == "unreceived":
                refused = _receive(job, self.config.email, str(self.config.get_user_dir(self.config.email)))
                job = dataclasses.replace(job, state=_coarse_state(job.layout, job.folder, job.results))
                if refused:
                    self.console.say_once(job.folder, f"🚫 Job {job.label} was rejected on receipt: {refused}")
            if job.state == "broken":
                self.console.say_once(job.results, f"⚠️ Job {job.label} is not run: its {STATE_FILE} cannot be used ("
                                                   f"{_state_problem(job)})")
            if (job.protocol.markers, job.submitter) not in self.protected:
                self.protected.add((job.protocol.markers, job.submitter))
                self.site.note_protected(_protect(job))
            if job.protocol.markers and job.state == "inbox" and job.folder not in self.protected_jobs:
                self.protected_jobs.add(job.folder)  # a job folder with a syft.pub.yaml of its own
                self.site.note_protected(_protect(job, own_folder=True))
        except (OSError, SyftJobError) as exc:
            self.console.say_once(job.folder, f"⚠️ Cannot receive or protect {job.label}: {exc}")
        return job


def _jobs_to_reset(job_dir: Path, site: _Site) -> tuple[list[_Job], dict[str, list[_Job]]]:
    """Every job, and the jobs by status. :raises SyftJobError: a job runs, or a job
    folder cannot be read (a reset deletes all or nothing)."""
    jobs = _JobScanner(job_dir).scan()
    statuses = {job.folder: _status(job, site).status for job in jobs}
    running = [job.label for job in jobs if statuses[job.folder] == "running"]
    if running:
        raise SyftJobError(f"a runner is running {', '.join(running)} in {job_dir}; stop it before a reset")
    for job in jobs:
        try:
            with os.scandir(job.folder):
                pass
        except OSError as exc:
            raise SyftJobError(f"cannot read the job folder {_printable(job.folder)} ({exc.strerror}); "
                               "nothing was deleted") from None
    return jobs, {s: [job for job in jobs if statuses[job.folder] == s] for s in STATUSES}


class SyftJobRunner:
    """Watches an owner's job directory, runs approved jobs and shares their results.

    :param config: the owner's configuration.
    :param poll_interval: seconds between two polls in :meth:`run`.
    The other keywords (the settings: isolation, network, limits, ...) are those of
    :func:`create_runner`, which says what each one does.
    """

    def __init__(self, config: SyftJobConfig, poll_interval: float = 5, *, console: Any = None,
                 isolation: str = "auto", allow_read: Sequence[str | os.PathLike] = (), network: bool | None = None,
                 run_as: str | None = None, work_dir: str | os.PathLike | None = None, max_concurrent_jobs: int = 1,
                 launcher: str | None = None, slurm_args: Sequence[str] = (),
                 require_approval_digest: bool = False, env_passthrough: Sequence[str] = (),
                 max_memory_mb: float | None = None, max_cpu_seconds: float | None = None,
                 max_log_bytes: int | None = 1 << 30, max_output_bytes: int = 1 << 30,
                 max_output_files: int = 10_000, output_checks: dict | None = None,
                 allow_source_builds: bool = False, on_event: Callable[[dict], Any] | str | None = None) -> None:
        self.config = config
        self.poll_interval = _positive(poll_interval, "poll_interval")
        self.console = _Console(console)
        self._events = _Events(on_event, self.console)
        self.settings = _check_settings(
            config, isolation, allow_read, network, run_as, work_dir, max_concurrent_jobs, launcher, slurm_args,
            require_approval_digest, env_passthrough, max_memory_mb, max_cpu_seconds, max_log_bytes,
            max_output_bytes, max_output_files, output_checks, allow_source_builds)
        self.job_dir = config.get_job_dir(config.email)
        self._site = _Site(self.settings.work_dir, self.job_dir)
        self._intake = _Intake(config, self._site, self.console)
        self._scanner = self._intake.scanner
        self._hooks = self._events.hooks
        self._trust = _Trust(self._site)
        self._executor = _Executor(config, self.settings, self._site, self.console, self._events.emit, self._hooks)
        self._seen: set[str] | None = None  # inbox jobs announced, by anyone running here (seen.json)
        self._stop: _StopSignals | None = None  # while run() polls
        self._stopped_by: int | None = None  # the signal that ended run()
        self._watcher: _Watcher | None = None  # while run() waits on inotify
        self._scan_seconds = 0.0  # what the last poll's scan took

    def _find_job(self, job_name: str, user: str | None = None) -> _Job:
        return _job_named(self.job_dir, job_name, user)

    # -- announcements ---------------------------------------------------------

    def _jobs(self) -> list[_Job]:
        return self._intake.jobs()  # one scan of the job directory: a poll makes one and passes it on

    def check_for_new_jobs(self) -> list[str]:
        """Print every inbox job not announced before, with its script and config. Jobs
        announced are remembered in ``work_dir``, across runs.

        :returns: the jobs announced now, as ``submitter/name``.
        """
        return self._announce(self._jobs())

    def _announce(self, jobs: list[_Job]) -> list[str]:
        seen = self._seen_jobs()
        new = [job for job in jobs if job.state == "inbox" and _seen_key(job) not in seen]
        trusted = self.trusted()
        for job in new:
            self.console.say(*_announcement(job))
            seen.add(_seen_key(job))
            self._events.emit("submitted", job, "inbox")
            if job.submitter in trusted:
                self._approve_if_trusted(job, trusted[job.submitter])
        if new:
            current = {_seen_key(job) for job in jobs}
            _quietly(self._site.save, "seen.json", json.dumps(sorted(seen & current)).encode())
        return [job.key for job in new]

    def _seen_jobs(self) -> set[str]:
        if self._seen is None:
            seen = _or_none(json.loads, _or_none(_read_file, self._site.root / "seen.json", _MAX_RECORD_BYTES) or b"[]")
            self._seen = {key for key in seen if isinstance(key, str)} if isinstance(seen, list) else set()
        return self._seen

    def _approve_if_trusted(self, job: _Job, digests: list[str]) -> None:
        """Approve a new job whose code the owner trusts from its submitter."""
        try:
            files = _submission(job)
            if _code_digest(files) in digests:
                _record_approval(self._site, self.config.email, job, files, "trusted code: approved by itself", "auto")
                self.console.forget(job.folder)
                self.console.say(f"✅ Job {job.label} approved by itself: you trust its code from "
                                 f"{_printable(job.submitter)} (code digest {_code_digest(files)})")
                self._events.emit("approved", job, "approved", reason="trusted code")
                if self._events.states is not None:
                    self._events.states[job.folder] = "approved"
        except (OSError, SyftJobError) as exc:
            self.console.say_once(job.folder, f"⚠️ Cannot approve {job.label} as trusted code: {exc}")

    # -- execution -----------------------------------------------------------

    def process_approved_jobs(self, stream_output: bool = True, timeout: float | None = None,
                              skip_job_names: Sequence[str] | None = None,
                              share_outputs_with_submitter: bool = False,
                              share_logs_with_submitter: bool = False) -> list[JobResult]:
        """Run every approved job that is not done yet, ``max_concurrent_jobs`` at once.
        Ctrl+C or SIGTERM stops them all (they stay approved) and raises
        KeyboardInterrupt.

        :param stream_output: print the jobs' output live, prefixed per line.
        :param timeout: seconds per job; default $SYFT_DEFAULT_JOB_TIMEOUT_SECONDS or 300.
        :param skip_job_names: job names, or ``submitter/name``, to leave alone.
        :param share_outputs_with_submitter: share ``outputs/`` after each job.
        :param share_logs_with_submitter: share the logs after each job.
        :returns: one :class:`JobResult` per job that ran (or could not run).
        """
        options = _RunOptions.make(stream_output, timeout, skip_job_names,
                                   share_outputs_with_submitter, share_logs_with_submitter)
        return self._executor.run_round(self._jobs(), options)

    # -- review ----------------------------------------------------------------

    def approve_job(self, job_name: str, user: str | None = None, reason: str | None = None,
                    digest: str | None = None) -> str:
        """Approve a job (again, after a change): the sha256 of each submitted file is
        recorded, and the job runs only while they stay the same. In the inbox/review
        layouts, state.yaml says approved, as the real clients write it.

        :param job_name: the job's name (its folder name).
        :param user: the submitter; None searches every submitter's folder.
        :param reason: why, shown to the submitter (inbox/review layouts).
        :param digest: approve only if the submission still hashes to this (what
            ``describe_job`` showed): nothing changed between the review and now.
        :returns: the digest recorded.
        :raises JobNotFoundError: no such job. :raises JobError: several, finished,
            running, rejected, or changed since ``digest``.
        """
        job = self._find_job(job_name, user)
        if job.state == "unreceived":
            _receive(job, self.config.email, str(self.config.get_user_dir(self.config.email)))
            job = self._find_job(job_name, job.submitter)
        status = _status(job, self._site).status
        if status not in ("inbox", "approved", "changed", "interrupted"):
            hint = {"done": "to run it again: syft-job rerun", "failed": "to run it again: syft-job rerun",
                    "rejected": "to review it again: syft-job reopen"}.get(status)
            raise JobError(f"job {job.label} is {status}" + (f"; {hint} {shlex.quote(job.name)}" if hint else ""))
        files = _files_to_approve(job, digest)
        self.console.forget(job.folder)
        return _record_approval(self._site, self.config.email, job, files, reason, "manual")

    def trust(self, submitter: str, digest: str) -> None:
        """Approve by itself every later submission of ``submitter`` whose code digest
        (``describe_job()["code_digest"]``, ``show``) is ``digest``: the same reviewed
        code, sent again. :raises JobError: not a whole sha256, or not an email."""
        self._trust.change(submitter, digest, trust=True)

    def untrust(self, submitter: str, digest: str) -> None:
        """Stop approving ``submitter``'s code with this digest by itself.
        :raises JobError: it was not trusted."""
        self._trust.change(submitter, digest, trust=False)

    def trusted(self) -> dict[str, list[str]]:
        """The code digests trusted, by submitter."""
        return self._trust.load()

    def reject_job(self, job_name: str, reason: str, user: str | None = None) -> None:
        """Reject a job, with the reason its submitter will read; no runner of ours ever
        runs it. :raises JobError: no reason, or the job already ran or runs."""
        if not isinstance(reason, str) or not reason.strip():
            raise JobError("a rejection needs a reason, for the data scientist")
        job = self._find_job(job_name, user)
        _job_in(job, self._site, ("inbox", "approved", "changed", "rejected"),
                "; only a job waiting to run can be rejected")
        if job.protocol.markers:
            _atomic_write(os.path.join(job.folder, REJECTED_MARKER), reason.strip().encode() + b"\n")
            _remove_path(os.path.join(job.folder, APPROVED_MARKER))
        else:
            _write_state(job, status="rejected", rejected_by=self.config.email, rejected_at=_utc_now(),
                         review_reason=reason.strip())
            _remove_path(_approval_path(job))
        self._site.audit("reject", job, self.config.email, reason=reason.strip())
        self._forget(job, "approvals")

    def reopen_job(self, job_name: str, user: str | None = None) -> None:
        """Put a rejected job back in the inbox, to be reviewed again: its rejection and
        reason are cleared (and recorded in the audit trail). :raises JobError: not rejected."""
        job = self._find_job(job_name, user)
        _job_in(job, self._site, ("rejected",), ", not rejected; only a rejected job can be reopened")
        if job.protocol.markers:
            _remove_path(os.path.join(job.folder, REJECTED_MARKER))
        else:
            _write_state(job, status="pending", rejected_by=None, rejected_at=None, review_reason=None)
        self._site.audit("reopen", job, self.config.email)
        self._forget(job, "approvals")

    def rerun_job(self, job_name: str, user: str | None = None) -> None:
        """Run a finished job again at the next poll; its old results are replaced.
        :raises JobError: the job is not finished."""
        job = self._find_job(job_name, user)
        _job_in(job, self._site, ("done", "failed", "interrupted"), "; only a finished job can run again")
        for name in (*_LOG_FILES, OUTPUTS_DIR, DONE_MARKER if job.protocol.markers else None):
            if name:
                _remove_path(os.path.join(job.results, name))
        if not job.protocol.markers:
            _write_state(job, status="approved", completed_at=None, return_code=None)
        self._site.audit("rerun", job, self.config.email)
        self._forget(job, "jobs")

    def cancel_job(self, job_name: str, user: str | None = None, wait: float = 30.0) -> str:
        """Stop a running job and all its processes, from any process on this machine:
        it ends failed, with the reason "cancelled".

        :param wait: seconds to wait for the runner running it to stop it.
        :returns: the job's status afterwards.
        :raises JobError: it is not running.
        """
        job = self._find_job(job_name, user)
        _job_in(job, self._site, ("running",), ", not running")
        Path(self._site.path("jobs", job, ".cancel", create=True)).touch()
        self._site.audit("cancel", job, self.config.email)
        deadline = time.monotonic() + wait
        while _status(job, self._site).status == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        return _status(self._find_job(job_name, job.submitter), self._site).status

    def add_submitter(self, email: str) -> Path:
        """Let ``email`` submit jobs here: its folders, with syft.pub.yaml files that let
        it submit and read its status, and keep results private until shared.

        :returns: the folder it submits into.
        """
        email = _check_email(email)
        folders = _submitter_folders(self.job_dir, email)
        for folder, rules in folders:
            folder.mkdir(parents=True, exist_ok=True)
            _edit_permissions(str(folder / PERMISSION_FILE), email, rules)
        self._intake.protected.update((folder.parent.name not in _LAYOUT_FOLDERS, email) for folder, _ in folders)
        return folders[0][0]

    def share_job_results(self, job_name: str, share_outputs: bool = True, share_logs: bool = True,
                          user: str | None = None) -> None:
        """Let the submitter read the results of a finished job.

        :param job_name: the job's name (its folder name).
        :param share_outputs: grant read on the job's ``outputs/``.
        :param share_logs: grant read on ``stdout.txt``, ``stderr.txt``, ``returncode.txt``.
        :param user: the submitter; None searches every submitter's folder.
        :raises JobNotFoundError: no such job. :raises JobError: several, or not finished.
        """
        self._executor.share_and_report(self._find_job(job_name, user), share_outputs, share_logs)

    def unshare_job_results(self, job_name: str, user: str | None = None) -> None:
        """Take back what :meth:`share_job_results` gave: the submitter reads the job's
        status again, no more."""
        job = self._find_job(job_name, user)
        _share(job, True, True, undo=True)
        self._site.audit("unshare", job, self.config.email)

    def release_results(self, job_name: str, paths: Sequence[str] | None = None, user: str | None = None,
                        reason: str | None = None, include_flagged: bool = False,
                        output_checks: dict | None = None) -> list[str]:
        """Let the submitter read exactly these result files of a finished job, each
        only if it still has the sha256 recorded when the job ended (what ``show``
        prints). Flagged files (see ``show``) are released only when named, or with
        ``include_flagged``; a file changed after the run never is.

        :param paths: ``stdout.txt``, ``stderr.txt``, ``outputs/...``; None: all of them.
        :param reason: why, for the audit trail.
        :returns: the paths released. :raises JobError: an unknown path, or not finished.
        """
        job = self._find_job(job_name, user)
        if _status(job, self._site).status not in ("done", "failed"):
            raise JobError(f"job {job.label} is not finished yet; there is nothing to release")
        checked = _checked_results(job, self._site.record(job), self.settings.output_checks, output_checks)
        reports = {report["path"]: report for report in checked}
        released, held = _to_release(job, reports, paths, include_flagged)
        if released:
            _grant_files(job, released)
            self._site.audit("release", job, self.config.email, reason=reason,
                             files={p: reports[p]["sha256"] for p in released})
            self._events.emit("released", job, _status(job, self._site).status, reason=reason)
        self.console.say(*_release_lines(job, reports, released, held))
        return released

    def delete_job(self, job_name: str, user: str | None = None) -> None:
        """Delete one job: its submission, its results, its share rules, its records."""
        job = self._find_job(job_name, user)
        if _status(job, self._site).status == "running":
            raise JobError(f"job {job.label} is running; cancel it first")
        self._delete(job)
        self._site.audit("delete", job, self.config.email)

    def _delete(self, job: _Job) -> None:
        with os.scandir(job.folder):
            pass  # a folder that cannot be read is named here, before anything is deleted
        _quietly(_share, job, True, True, undo=True)
        for folder in dict.fromkeys((job.results, job.folder)):
            _remove_path(folder)
        self._forget(job, "jobs", "approvals")

    def _forget(self, job: _Job, *kinds: str) -> None:
        """Remove this runner's records of a job ("jobs": its last run, "approvals")."""
        for kind in kinds:
            _quietly(os.unlink, self._site.path(kind, job))
        self._site.poke()

    def reset_all_jobs(self) -> None:
        """Delete every job of every submitter, with the share rules this runner wrote
        for them. Submitter folders and their syft.pub.yaml stay, so submitters can
        still submit. Cannot be undone.

        :raises SyftJobError: a job runs, or a job folder cannot be read (then nothing
            is deleted).
        """
        jobs, by_status = _jobs_to_reset(self.job_dir, self._site)
        before, after = _reset_lines(self.job_dir, self.config.email, by_status, len(jobs))
        self.console.say(*before)
        for job in jobs:
            self._delete(job)
            self._site.audit("reset", job, self.config.email)
        self.console.say(*after)

    # -- queries ---------------------------------------------------------------

    def audit_trail(self, job_name: str | None = None, user: str | None = None) -> tuple[list[dict], str | None]:
        """Every decision and run, oldest first (``audit.jsonl`` in the work dir), and
        None if the trail checks out, else what was edited, removed or reordered.

        :param job_name: only this job's lines (a name, or ``submitter/name``).
        :param user: only the lines of this submitter's jobs, or made by this user.
        """
        entries, problem = self._site.audit_lines()
        keep = [e for e in entries if isinstance(e, dict) and job_name in (None, e.get("job"),
                                                                           str(e.get("job")).partition("/")[2])
                and user in (None, e.get("by"), str(e.get("job")).partition("/")[0])]
        return keep, problem

    def list_jobs(self, status: str | None = None, submitter: str | None = None) -> list[dict]:
        """Every job, as JSON-ready rows: submitter, name, layout, status (STATUSES),
        submitted_at, started_at, finished_at, duration_s, return_code, reason, shared,
        isolation. Reads only; creates nothing."""
        if status is not None and status not in STATUSES:
            raise JobError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        rows = (_job_row(job, self._site, self.config, self.settings.isolation)
                for job in _JobScanner(self.job_dir).scan() if submitter in (None, job.submitter))
        return [row for row in rows if status in (None, row["status"])]

    def describe_job(self, job_name: str, user: str | None = None, output_checks: dict | None = None) -> dict:
        """Everything the owner needs to review a job: its row (see :meth:`list_jobs`),
        the whole run.sh, its config, every submitted file with size and sha256, the
        submission ``digest`` (for ``approve_job(digest=...)``), who approved it when,
        and what changed since."""
        job = self._find_job(job_name, user)
        row = _job_row(job, self._site, self.config, self.settings.isolation)
        shown = _review_copy(job, self._executor)
        submitted, approved, record = shown.pop("submitted"), _approval(job)[0], self._site.record(job)
        results = _checked_results(job, record, self.settings.output_checks, output_checks) \
            if row["status"] in ("done", "failed") else []
        return {**row, **shown, **_approval_shown(job), "results": results,
                "pythons": [f"{v} ({p})" for v, p in self._executor.pythons],
                "held_back": record.get("held_back") or [], "held_back_count": record.get("held_back_count") or 0,
                "changes": _changes(approved, submitted) if approved is not None else None}

    def follow_log(self, job_name: str, user: str | None = None, stderr: bool = False,
                   follow: bool = False) -> Iterator[bytes]:
        """A job's stdout.txt (or stderr.txt), in chunks; with ``follow``, more as the job
        writes it, until the job ends."""
        job = self._find_job(job_name, user)
        return _follow(job, self._site, os.path.join(job.results, STDERR_FILE if stderr else STDOUT_FILE), follow)

    # -- the loop ------------------------------------------------------------

    def run(self, stream_output: bool = True, timeout: float | None = None,
            skip_job_names: Sequence[str] | None = None, share_outputs_with_submitter: bool = False,
            share_logs_with_submitter: bool = False) -> None:
        """Poll forever: print new jobs, run approved ones. Returns on Ctrl+C or SIGTERM,
        after stopping the running jobs (they stay approved and run at the next start).
        The arguments are those of :meth:`process_approved_jobs`. Several runners may
        watch one job directory: each job runs in only one of them.

        :raises SyftJobError: a bad timeout.
        """
        options = _RunOptions.make(stream_output, timeout, skip_job_names,
                                   share_outputs_with_submitter, share_logs_with_submitter)
        with _StopSignals() as self._stop:
            self._watcher = _Watcher() if self._stop.fd is not None else None
            if self._watcher is not None and self._watcher.fd is not None:
                self._scanner.full_scan_every = _WATCHED_FULL_SCAN_SECONDS
            try:
                self.console.say(*_banner(self))
                jobs = self._jobs()
                self.console.say(*_existing_jobs(jobs))
                self._seen_jobs().update(_seen_key(job) for job in jobs if job.state == "inbox")
                while not self._stop.requested:
                    try:
                        self._poll(options)
                    except KeyboardInterrupt:
                        break
                    except Exception as exc:  # never let one bad poll end the loop
                        logger.exception("poll failed")
                        self.console.say(f"❌ Poll failed: {type(exc).__name__}: {exc}")
                    self._wait_for_news()
            except KeyboardInterrupt:
                pass
            finally:
                self._stopped_by, self._stop = self._stop.signum, None
                if self._watcher is not None:
                    self._watcher.close()
                    self._watcher = None
                if self._hooks is not None:
                    self._hooks.close()
        self.console.say("", "🛑 SyftJob Runner stopped")

    def _poll(self, options: _RunOptions) -> None:
        """One look at the job directory: tell what is new (approving trusted code), run
        what is approved."""
        started = time.monotonic()
        jobs = self._poll_jobs()
        self._scan_seconds = time.monotonic() - started
        self._executor.run_round(jobs, options, self._stop, self._watcher, self._refresh)

    def _refresh(self) -> list[_Job]:
        """The jobs now, for a round under way: news told, trusted code approved, the
        folders watched kept up to date."""
        jobs = self._poll_jobs()
        if self._watcher is not None:
            self._watcher.watch(_watched_folders(self.config, self._site, self._scanner))
        return jobs

    def _poll_jobs(self) -> list[_Job]:
        """The jobs, after telling what is new and approving trusted code."""
        jobs = self._jobs()
        self._events.note_decisions(jobs, self._site)
        if self._announce(jobs):  # trusted code among the new jobs is approved now, and runs now
            jobs = self._jobs()
            self._events.note_decisions(jobs, self._site)
        return jobs

    def _wait_for_news(self) -> None:
        """Wait until the job directory changes (inotify), a stop is asked for, or the
        next poll is due: every poll_interval, or with inotify, a safety scan every
        max(poll_interval, _SAFETY_SCAN_SECONDS). Hooks still running are looked after."""
        watcher, stop = self._watcher, self._stop
        if watcher is None or watcher.fd is None:
            return stop.wait(self.poll_interval)
        if watcher.watch(_watched_folders(self.config, self._site, self._scanner)):
            return  # a folder just watched may have changed before: look once more
        deadline = time.monotonic() + max(self.poll_interval, _SAFETY_SCAN_SECONDS)
        while not stop.requested and time.monotonic() < deadline:
            seconds = min(deadline - time.monotonic(), 0.1 if self._hooks and self._hooks.running else 3600)
            ready = select.select([stop.fd, watcher.fd], [], [], max(seconds, 0))[0]
            if self._hooks is not None:
                self._hooks.poll()
            if watcher.fd in ready:  # a burst of events (a sync, a busy submitter) is one poll; polls take at most ~20%
                stop.wait(min(max(_EVENT_GAP_SECONDS, 4 * self._scan_seconds), 2.0))
                if watcher.changed():
                    return


def create_runner(syftbox_folder_path: str | os.PathLike, email: str, poll_interval: float = 5, *,
                  console: Any = None, isolation: str = "auto", allow_read: Sequence[str | os.PathLike] = (),
                  network: bool | None = None, run_as: str | None = None, work_dir: str | os.PathLike | None = None,
                  max_concurrent_jobs: int = 1, launcher: str | None = None, slurm_args: Sequence[str] = (),
                  require_approval_digest: bool = False, env_passthrough: Sequence[str] = (),
                  max_memory_mb: float | None = None, max_cpu_seconds: float | None = None,
                  max_log_bytes: int | None = 1 << 30, max_output_bytes: int = 1 << 30, max_output_files: int = 10_000,
                  output_checks: dict | None = None, allow_source_builds: bool = False,
                  on_event: Callable[[dict], Any] | str | None = None) -> SyftJobRunner:
    """Build a :class:`SyftJobRunner` for the datasite of ``email`` in a SyftBox folder
    (``~`` is expanded).

    :param poll_interval: seconds between two polls in :meth:`SyftJobRunner.run`.
    :param console: where the runner's lines go: None is standard output, any object
        with ``write(text)`` receives them, False prints nothing.
    :param isolation: ``"auto"`` (a sandbox where bubblewrap can make one), ``"sandbox"``
        (refuse to start without one) or ``"none"``; see the Isolation section.
    :param allow_read: paths a sandboxed job may also read (the owner's datasets); never
        one holding a job tree, the work_dir or the owner's home.
    :param network: True: sandboxed jobs reach the network (and everything listening on
        this machine's loopback). Default False in the sandbox: each job has only a
        loopback of its own (refused without the sandbox, which alone can take it away).
    :param allow_source_builds: Python packages without a binary wheel for the job may be
        built, which runs their code (see the Isolation section's "Python jobs").
    :param on_event: called with a dict for each event (``submitted``, ``approved``,
        ``rejected``, ``started``, ``finished``, ``failed``, ``released``; keys ``event``,
        ``job``, ``submitter``, ``status``, ``return_code``, ``reason``, ``at``); a string
        is a shell command, run in the background with the dict as JSON on its stdin.
    :param run_as: when the runner is root, the account jobs run as (default
        ``"nobody"``); refused when it is not root (jobs then run as the owner).
    :param work_dir: the runner's private state (claims, run records, working copies),
        outside the SyftBox folder; default $XDG_STATE_HOME/syft-job, else
        ~/.local/state/syft-job (/var/lib/syft-job for root).
    :param max_concurrent_jobs: how many jobs run at once.
    :param launcher: None, or ``"slurm"``: each job runs through ``srun``.
    :param slurm_args: more ``srun`` arguments, last on its line (``--partition=gpu``).
    :param require_approval_digest: strict mode: run only jobs approved through this
        module (:meth:`SyftJobRunner.approve_job`) whose files have not changed since. Otherwise an
        empty ``approved`` marker, or a state.yaml approved by another client, is enough.
    :param env_passthrough: names of environment variables that jobs also get. Jobs
        otherwise get only PATH, HOME, LANG, LC_*, TMPDIR, TZ, USER, UV_* and the
        SyftBox variables.
    :param max_memory_mb: address space limit of each process of a job.
    :param max_cpu_seconds: CPU time limit of each process of a job.
    :param max_log_bytes: size limit of each log (default 1 GiB; None: none); a job that
        writes more is stopped.
    :param max_output_bytes: what one job may publish from outputs/, counting each file
        at its apparent size; files past it are held back, and named in stderr.txt.
    :param max_output_files: how many files one job may publish from outputs/.
    :param output_checks: thresholds of the checks of results before release:
        ``{"min_count": 10, "max_rows": 5000, "max_file_mb": 16, "allowed_types": [...]}``.
    """
    return SyftJobRunner(
        SyftJobConfig.from_syftbox_folder(syftbox_folder_path, email), poll_interval, console=console,
        isolation=isolation, allow_read=allow_read, network=network, run_as=run_as, work_dir=work_dir,
        max_concurrent_jobs=max_concurrent_jobs, launcher=launcher, slurm_args=slurm_args,
        require_approval_digest=require_approval_digest, env_passthrough=env_passthrough, max_memory_mb=max_memory_mb,
        max_cpu_seconds=max_cpu_seconds, max_log_bytes=max_log_bytes, max_output_bytes=max_output_bytes,
        max_output_files=max_output_files, output_checks=output_checks, allow_source_builds=allow_source_builds,
        on_event=on_event)


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
        if _env(_CLIENT_CONFIG_ENV_VAR):  # named on purpose: its absence is a mistake
            raise _UsageError(f"{_CLIENT_CONFIG_ENV_VAR} names {path}, which is not a file")
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _UsageError(f"cannot read the SyftBox client config {path}: {exc}") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), (str, type(None))) for k in ("data_dir", "email")):
        raise _UsageError(f"the SyftBox client config {path}: 'data_dir' and 'email' must be strings")
    folder = data.get("data_dir") or None
    if folder and (Path(folder).expanduser() / "datasites").is_dir():
        folder = str(Path(folder).expanduser() / "datasites")
    return folder, data.get("email") or None


def _runner(args: argparse.Namespace) -> SyftJobRunner:
    """The runner of the datasite the flags, the environment or the SyftBox client config name (an
    existing one, its email matched regardless of case), with the settings of the flags given."""
    folder = getattr(args, "syftbox_folder", None) or _env(_FOLDER_ENV_VAR)
    email = getattr(args, "email", None) or _env(_EMAIL_ENV_VAR)
    if not folder or not email:
        config_folder, config_email = _client_config()
        folder, email = folder or config_folder, email or config_email
    if not folder:
        raise _UsageError(f"no SyftBox folder given: pass --syftbox-folder PATH (or set {_FOLDER_ENV_VAR})")
    if not email:
        raise _UsageError(f"no email given: pass --email EMAIL (or set {_EMAIL_ENV_VAR})")
    config = SyftJobConfig.from_syftbox_folder(folder, email)
    if not config.get_user_dir(email).is_dir():
        sites = [entry.name for entry in _subfolders(config.syftbox_folder) if "@" in entry.name]
        same = [site for site in sites if site.lower() == email.lower()]
        if len(same) != 1:
            raise _UsageError(f"no datasite for {email} in {config.syftbox_folder}; the datasites there: "
                              f"{', '.join(sites) or 'none'}")
        config = SyftJobConfig.from_syftbox_folder(folder, same[0])
    settings = {key: value for key, value in vars(args).items() if key in _RUNNER_KEYWORDS and value is not None}
    if "on_event" in settings:
        if len(settings["on_event"]) > 1:
            raise _UsageError("give --on-event once: one command gets every event (a script can run several)")
        settings["on_event"] = settings["on_event"][0]
    return SyftJobRunner(config, **settings)


def _number_arg(kind: type) -> Callable[[str], Any]:
    """An argparse type: a positive number (``kind`` int: a whole one)."""
    def parse(text: str) -> Any:
        try:
            return _positive(text, "the value", kind)
        except ConfigError:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive {whole}number") from None
    return parse


def _size_arg(text: str) -> int:
    """An argparse type: a size in bytes, with an optional K, M or G (binary units)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)i?B?\s*", text, re.I)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (a number of bytes, or with K, M or G: 500M)")
    return int(float(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " "))


def _cell(row: dict, key: str) -> str:
    """One value of a job's row, as ``list`` and ``show`` print it."""
    value = row[key]
    if value is None:
        return ""
    if key in ("duration_s", "elapsed_s"):
        return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"
    return " ".join(value) if key == "shared" else _printable(str(value))


def _cmd_run(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    runner.poll_interval = args.poll_interval
    runner.run(**_run_arguments(args))
    return 130 if runner._stopped_by == signal.SIGINT else 0  # SIGTERM is how a service is stopped


def _run_arguments(args: argparse.Namespace) -> dict:
    return {"stream_output": not args.no_stream, "timeout": args.timeout, "skip_job_names": args.skip,
            "share_outputs_with_submitter": args.share_outputs, "share_logs_with_submitter": args.share_logs}


def _cmd_once(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    announced = set(runner.check_for_new_jobs())
    waiting = [f"{r['submitter']}/{r['name']}" for r in runner.list_jobs("inbox")
               if f"{r['submitter']}/{r['name']}" not in announced]
    if waiting:
        runner.console.say(f"⏳ Waiting for your review (shown before): {_printable(', '.join(waiting))}")
    results = runner.process_approved_jobs(**_run_arguments(args))
    if not results:
        runner.console.say("📭 No approved jobs to run")
    return 1 if any(not r.succeeded for r in results) else 0


_LIST_COLUMNS = (("JOB", "name"), ("SUBMITTER", "submitter"), ("STATUS", "status"), ("SUBMITTED", "submitted_at"),
                 ("STARTED", "started_at"), ("ELAPSED", "elapsed_s"), ("DURATION", "duration_s"), ("RC", "return_code"),
                 ("SHARED", "shared"))


def _cmd_list(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    rows = runner.list_jobs(args.status, args.submitter)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k not in ("folder", "results")} for r in rows], indent=2))
    elif not rows:
        print(f"📭 No jobs in {runner.job_dir}" + (" matching" if args.status or args.submitter else ""))
    else:
        print(_table([[title for title, _ in _LIST_COLUMNS]]
                     + [[_cell(r, key) for _, key in _LIST_COLUMNS] for r in rows]))


def _checks_args(args: argparse.Namespace) -> dict:
    """The thresholds of the output checks that show and release were given."""
    return {name: getattr(args, name) for name in ("min_count", "max_rows", "max_file_mb")
            if getattr(args, name) is not None}


def _result_lines(results: list[dict]) -> list[str]:
    """The review of a job's result files: what each is, its first lines, its flags."""
    lines = ["--- results (what the data scientist could read once released) ---"] if results else []
    for r in results:
        kind = f"text, {r['lines']} line(s)" if r["text"] else "binary"
        if "csv" in r:
            kind += f", CSV of {r['csv']['rows']} rows x {r['csv']['columns']} columns: {', '.join(r['csv']['header'])}"
        flags = f"  ⚑ {', '.join(r['flags'])}" if r["flags"] else ""
        lines += [f"  {_printable(r['path'])}  {r['size']} bytes  {r['sha256']}  {kind}{flags}",
                  *(f"    | {line}" for line in (r["first_lines"] if r["text"] else []))]
    return lines


def _cmd_show(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    job = runner.describe_job(args.job, args.user, _checks_args(args))
    if args.json:
        print(json.dumps({k: v for k, v in job.items() if k not in ("folder", "results_dir")}, indent=2, default=str))
        return
    lines = [f"Job:        {_printable(job['submitter'])}/{_printable(job['name'])} ({job['layout']} layout)",
             f"Status:     {job['status']}", *([f"Reason:     {_printable(job['reason'])}"] if job["reason"] else []),
             f"Folder:     {_printable(job['folder'])}"]
    for label, key in (("Submitted", "submitted_at"), ("Approved", "approved_at"), ("Started", "started_at"),
                       ("Finished", "finished_at")):
        if job[key]:
            by = f" by {_printable(str(job['approved_by']))}" if key == "approved_at" and job["approved_by"] else ""
            by += " (by itself: trusted code)" if key == "approved_at" and job["approval_method"] == "auto" else ""
            lines.append(f"{label + ':':<11} {_cell(job, key)}{by}")
    for label, key in (("Elapsed", "elapsed_s"), ("Duration", "duration_s"), ("Slurm job", "slurm_job_id"),
                       ("Return code", "return_code")):
        if job[key] is not None:
            lines.append(f"{label + ':':<11} {_cell(job, key)}")
    lines.append(f"Shared:     {' and '.join(job['shared']) or 'nothing (logs and outputs are private)'}")
    if job["held_back_count"]:
        lines.append(f"⚠️ Held back, over the output limits: {job['held_back_count']} output(s): "
                     + ", ".join(_printable(path) for path in job["held_back"][:20]))
    if job["changes"]:
        lines.append(f"⚠️ Changed since approval: {job['changes']}")
    config = job["config"]
    lines += ["--- config.yaml ---", *(f"  {k}: {v}" for k, v in _config_items(config))] if isinstance(config, dict) \
        else ["--- config.yaml ---", f"  {config}"]
    lines += ["--- run.sh ---", job["run_sh"]]
    if job["packages"] or job["python"]:
        lines.append(f"Python:     {_printable(job['python'] or 'any')}; packages: "
                     f"{', '.join(map(_printable, job['packages'])) or 'none'}")
    lines += [f"⚠️ {_printable(job['python_note'])}"] if job["python_note"] else []
    lines.append(f"Pythons for jobs: {', '.join(map(_printable, job['pythons'])) or 'none'}")
    for path, text in job["code"].items():  # the code is what the owner must read: every text file
        shown = text.split("\n")
        keep = len(shown) if args.all_lines else 200
        lines += [f"--- {_printable(path)} ---", *shown[:keep]]
        lines += [f"... ({len(shown) - keep} more lines: --all-lines)"] if len(shown) > keep else []
    lines.append("--- files (size, sha256) ---")
    lines += [f"  {_printable(f['path'])}  {f['size']} bytes  {f['sha256']}" for f in job["files"]]
    lines += [f"digest: {job['digest']}", f"code digest: {job['code_digest']} (the same code sent again: "
              f"syft-job trust {_printable(shlex.quote(job['submitter']))} --digest {job['code_digest']})"]
    if job["status"] in ("inbox", "changed"):
        lines.append(f"(to approve exactly this: syft-job approve {_printable(shlex.quote(job['name']))} "
                     f"--digest {job['digest']})")
    lines += _result_lines(job["results"])
    for stream in ("stdout", "stderr"):
        tail = b"".join(runner.follow_log(args.job, args.user, stderr=stream == "stderr"))[-64 * 1024:]
        text = tail.decode("utf-8", "replace").splitlines()[-args.lines:]
        lines += [f"--- {stream}.txt (last {args.lines} lines) ---", *([_printable(t) for t in text] or ["(none)"])]
    print("\n".join(lines))


def _cmd_logs(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    job = runner._find_job(args.job, args.user)
    log = STDERR_FILE if args.stderr else STDOUT_FILE
    if not os.path.lexists(os.path.join(job.results, log)):
        status = _status(job, runner._site).status
        if not args.follow or status not in ("approved", "running"):
            print(f"syft-job logs: {job.label} has not run (it is {status}): no log yet", file=sys.stderr)
            return 1
        print(f"syft-job logs: {job.label} is {status}: its {log} follows once a runner starts it", file=sys.stderr)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character may be cut between two chunks
    empty = True
    for chunk in runner.follow_log(args.job, args.user, stderr=args.stderr, follow=args.follow):
        empty = False
        if args.raw:
            sys.stdout.buffer.write(chunk)
        else:  # a job's escape sequences never reach the owner's terminal raw
            sys.stdout.write(_printable(decoder.decode(chunk).replace("\r\n", "\n"), lines=True))
        sys.stdout.flush()
    sys.stdout.write(_printable(decoder.decode(b"", final=True), lines=True))
    if empty and os.path.lexists(os.path.join(job.results, log)):  # said apart, so that a pipe gets only the log
        st = None if args.stderr else _or_none(os.lstat, os.path.join(job.results, STDERR_FILE))
        more = f"; its {STDERR_FILE} has {st.st_size} bytes (--stderr)" if st and st.st_size else ""
        print(f"syft-job logs: the {log} of {job.label} is empty{more}", file=sys.stderr)
    return 0


def _cmd_approve(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    digest = runner.approve_job(args.job, args.user, reason=args.reason, digest=args.digest)
    print(f"✅ Approved {_printable(args.job)}: it runs at the next poll of the runner, unless its files change")
    print(f"   digest: {digest}")


def _cmd_reject(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    runner.reject_job(args.job, args.reason, args.user)
    print(f"🚫 Rejected {_printable(args.job)}: {_printable(args.reason)}")


def _cmd_audit(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    entries, problem = runner.audit_trail(args.job, args.user)
    if args.verify:
        print(f"❌ The audit trail was changed: {problem}" if problem else f"✅ The audit trail is whole: "
              f"{len(runner.audit_trail()[0])} line(s), none edited, removed or reordered")
        return 1 if problem else 0
    if args.json:
        print(json.dumps(entries, indent=2))
    for entry in [] if args.json else entries:
        details = ", ".join(f"{key}={_printable(str(value))}" for key, value in sorted(entry.items())
                            if key not in ("at", "event", "job", "by", "prev", "layout") and value not in (None, {}))
        print(f"{entry.get('at')}  {entry.get('event'):<8} {_printable(str(entry.get('job')))}  by "
              f"{_printable(str(entry.get('by')))}" + (f"  ({details})" if details else ""))
    if problem:
        print(f"⚠️ The audit trail was changed: {problem} (syft-job audit --verify)", file=sys.stderr)
    return 0


def _cmd_reopen(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    runner.reopen_job(args.job, args.user)
    print(f"📥 {_printable(args.job)} is back in the inbox, waiting for your review")


def _cmd_rerun(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    runner.rerun_job(args.job, args.user)
    print(f"🔁 {_printable(args.job)} runs again at the next poll of the runner")


def _cmd_cancel(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    status = runner.cancel_job(args.job, args.user)
    print(f"🛑 Cancelled {_printable(args.job)}: it is {status} now" if status != "running"
          else f"🛑 Asked the runner to cancel {_printable(args.job)}; it is still running")
    return 0 if status != "running" else 1


def _cmd_share(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    if not args.outputs and not args.logs:
        raise _UsageError("say what to share: --outputs, --logs, or both")
    for r in runner.describe_job(args.job, args.user)["results"]:  # what the checks found, said before it leaves
        if r["flags"] and ((args.outputs and r["path"].startswith(f"{OUTPUTS_DIR}/"))
                           or (args.logs and r["path"] in _LOG_FILES)):
            print(f"⚑ {_printable(r['path'])}: {', '.join(r['flags'])}")
    runner.share_job_results(args.job, args.outputs, args.logs, user=args.user)


def _cmd_release(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    if not args.paths and not args.all:
        raise _UsageError("name the result files to release (see syft-job show), or pass --all")
    released = runner.release_results(args.job, args.paths or None, args.user, args.reason, include_flagged=args.all,
                                      output_checks=_checks_args(args))
    return 0 if released and (args.all or len(released) == len(set(args.paths))) else 1


def _cmd_trust(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    if args.list:
        print("\n".join(f"{_printable(who)}  {digest}" for who, digests in sorted(runner.trusted().items())
                        for digest in digests) or "Nothing is trusted: every job waits for your review")
        return
    if not args.submitter or not args.digest:
        raise _UsageError("give a submitter and --digest HEX (the code digest show prints), or --list")
    runner.trust(args.submitter, args.digest)
    print(f"🔐 From now on, {_printable(args.submitter)}'s jobs whose code digest is {args.digest.strip().lower()} are "
          "approved by themselves (untrust to stop)")


def _cmd_untrust(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    runner.untrust(args.submitter, args.digest)
    print(f"🔒 {_printable(args.submitter)}'s code {args.digest.strip().lower()} waits for your review again")


def _cmd_unshare(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    runner.unshare_job_results(args.job, args.user)
    print(f"🔒 {_printable(args.job)}: its logs and outputs are private again")


def _confirm(question: str, args: argparse.Namespace) -> bool:
    """Ask on a terminal; no terminal needs --yes; end of input is "no"."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise _UsageError("this deletes for good; without a terminal to confirm, pass --yes")
    try:
        return input(f"{question} Type 'yes' to confirm: ").strip().lower() == "yes"
    except EOFError:
        return False


def _cmd_delete(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    if not _confirm(f"Delete the job {_printable(args.job)}, its results and its share rules?", args):
        print("Nothing deleted.")
        return 1
    runner.delete_job(args.job, args.user)
    print(f"🗑️ Deleted {_printable(args.job)}")
    return 0


def _cmd_add_submitter(runner: SyftJobRunner, args: argparse.Namespace) -> None:
    folder = runner.add_submitter(args.submitter_email)
    print(f"✅ {args.submitter_email} can submit jobs into {folder}")
    print("   (its results stay private until you share them)")


def _cmd_reset(runner: SyftJobRunner, args: argparse.Namespace) -> int:
    count = len(runner.list_jobs())
    if not _confirm(f"Delete all {count} job(s) in {runner.job_dir}, and their share rules?", args):
        print("Nothing deleted.")
        return 1
    runner.reset_all_jobs()
    return 0


_DEMO_OWNER = "do@example.com"
_DEMO_SUBMITTER = "ds@example.com"
_DEMO_ANALYSIS = """\
echo "Counting the words of the owner's private data..."
wc -w < "$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/private/notes.txt" | tr -d ' ' > outputs/word_count.txt
echo "Result written to outputs/word_count.txt"
"""
_DEMO_FAILING = """\
echo "Looking for a file that is not there..."
cat missing.csv
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.folder:
        folder = Path(args.folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise _UsageError(f"the demo needs an empty folder, and {folder} is not empty")
    else:
        folder = Path(tempfile.mkdtemp(prefix="syft-job-demo-"))
        folder.chmod(0o755)  # as root, jobs run as nobody, who must reach the owner's data
    print(f"🧪 Demo SyftBox folder: {folder}")
    print(f"   data owner: {_DEMO_OWNER}   data scientist: {_DEMO_SUBMITTER}\n")
    (folder / _DEMO_OWNER / "private").mkdir(parents=True)
    (folder / _DEMO_OWNER / "private" / "notes.txt").write_text("the quick brown fox\njumps over the lazy dog\n")
    (folder / _DEMO_SUBMITTER).mkdir()
    runner = create_runner(folder, _DEMO_OWNER, poll_interval=1)  # state where later commands look for it
    runner.add_submitter(_DEMO_SUBMITTER)
    client = JobClient(SyftJobConfig.from_syftbox_folder(folder, _DEMO_SUBMITTER))
    client.submit_bash_job(_DEMO_OWNER, _DEMO_ANALYSIS, job_name="word count")
    client.submit_bash_job(_DEMO_OWNER, _DEMO_FAILING, job_name="missing file")
    code = folder / "ds-code" / "hello.py"
    code.parent.mkdir()
    code.write_text('print("hello from a Python job")\n')
    client.submit_python_job(_DEMO_OWNER, code, job_name="python hello", dependencies=["numpy"])
    print("1️⃣  The data scientist submitted 3 jobs. The runner sees them:\n")
    runner.check_for_new_jobs()
    print(f"\n2️⃣  The owner approves two of them and runs them (isolation: {runner.settings.isolation}):\n")
    for name in ("word count", "missing file"):
        runner.approve_job(name, _DEMO_SUBMITTER, reason="reviewed in the demo")
    runner.process_approved_jobs(stream_output=True, timeout=60, share_outputs_with_submitter=True,
                                 share_logs_with_submitter=True)
    site = ["--syftbox-folder", str(folder), "--email", _DEMO_OWNER]
    print("\n3️⃣  What the owner sees: syft-job list\n")
    main(["list", *site])
    print("\n4️⃣  And one finished job: syft-job show 'word count'\n")
    main(["show", "word count", *site, "--lines", "5"])
    print(f"\n5️⃣  What {_DEMO_SUBMITTER} sees (JobClient.jobs):\n")
    print(client.jobs)
    print(f"\n✨ Try: python3 -m syft_job list --syftbox-folder {shlex.quote(str(folder))} --email {_DEMO_OWNER}")
    return 0


# The run/once flags that are SyftJobRunner keywords: (flag, keyword, argparse settings).
_RUNNER_FLAGS = (
    ("--strict", "require_approval_digest", dict(action="store_true", default=None, help="run only jobs approved "
                                                 "with `syft-job approve` whose files have not changed")),
    ("--pass-env", "env_passthrough", dict(action="append", metavar="NAME", help="also give jobs this environment "
                                           "variable of yours (repeatable; by default jobs get only PATH, HOME, LANG, "
                                           "LC_*, TMPDIR, TZ, USER, UV_* and the SyftBox ones)")),
    ("--max-memory", "max_memory_mb", dict(type=_number_arg(float), metavar="MB",
                                           help="limit each job process's address space to this many MB")),
    ("--max-cpu", "max_cpu_seconds", dict(type=_number_arg(float), metavar="SECONDS",
                                          help="limit each job process's CPU time")),
    ("--max-log-size", "max_log_bytes", dict(type=_size_arg, metavar="SIZE",
                                             help="cut each log at this size and stop the job (default: 1G)")),
    ("--isolation", "isolation", dict(choices=ISOLATION_MODES, help="auto (default): a sandbox where bubblewrap can "
                                      "make one; sandbox: refuse to run without; none: no sandbox")),
    ("--allow-read", "allow_read", dict(action="append", metavar="PATH", help="let sandboxed jobs read this path too, "
                                        "e.g. a dataset (repeatable)")),
    ("--network", "network", dict(action="store_true", default=None, help="let sandboxed jobs reach the network and "
                                  "this machine's loopback services (default: none; dependencies still install)")),
    ("--no-network", "network", dict(action="store_false", default=None, help="sandboxed jobs get no network (the "
                                     "default; refused without the sandbox)")),
    ("--allow-source-builds", "allow_source_builds", dict(action="store_true", default=None, help="let Python "
                                                          "packages with no wheel be built (runs their code)")),
    ("--run-as", "run_as", dict(metavar="USER", help="when run as root: the account jobs run as (default: nobody)")),
    ("--max-output-size", "max_output_bytes", dict(type=_size_arg, metavar="SIZE", help="publish at most this much "
                                                   "of a job's outputs/, e.g. 500M or 2G (default: 1G)")),
    ("--max-output-files", "max_output_files", dict(type=_number_arg(int), metavar="N", help="publish at most N "
                                                    "files of a job's outputs/ (default: 10000)")),
    ("--on-event", "on_event", dict(action="append", metavar="CMD", help="run this shell command for each event "
                                    "(submitted, approved, rejected, started, finished, failed, released), the event "
                                    "as JSON on its stdin; once (a script can run several)")),
    ("--jobs", "max_concurrent_jobs", dict(type=_number_arg(int), metavar="N",
                                           help="run up to N jobs at once (default 1)")),
    ("--launcher", "launcher", dict(choices=["slurm"], help="run each job through srun on a Slurm cluster")),
    ("--slurm-arg", "slurm_args", dict(action="append", metavar="ARG", help="pass ARG to srun, after the runner's own "
                                       "(repeatable), e.g. --partition=gpu")),
)
_RUNNER_KEYWORDS = {keyword for _, keyword, _ in _RUNNER_FLAGS} | {"work_dir"}


def _option_groups() -> tuple[argparse.ArgumentParser, ...]:
    """The options several commands share: datasite, running, which job, output checks, confirmation."""
    # The datasite options work before and after the command (SUPPRESS: unset leaves no default to overwrite).
    datasite = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    datasite.add_argument("--syftbox-folder", metavar="PATH",
                          help=f"the SyftBox folder (default: ${_FOLDER_ENV_VAR}, else the SyftBox client config)")
    datasite.add_argument("--email", metavar="EMAIL",
                          help=f"the data owner's email (default: ${_EMAIL_ENV_VAR}, else the SyftBox client config)")
    datasite.add_argument("--work-dir", metavar="PATH", help="the runner's private state, outside the SyftBox folder "
                                                             "(default: $XDG_STATE_HOME/syft-job, else /var/lib/syft-job for root "
                                                             "and ~/.local/state/syft-job for anyone else)")
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--timeout", type=_number_arg(float), metavar="SECONDS",
                         help=f"stop a job after this long (default: ${TIMEOUT_ENV_VAR}, else 300)")
    running.add_argument("--no-stream", action="store_true",
                         help="do not print the jobs' output (logs are still written)")
    running.add_argument("--share-outputs", action="store_true",
                         help="share each finished job's outputs/ with its submitter")
    running.add_argument("--share-logs", action="store_true", help="share each finished job's logs with its submitter")
    running.add_argument("--skip", action="append", metavar="NAME",
                         help="never run this job (a name or SUBMITTER/NAME; repeatable)")
    for flag, keyword, settings in _RUNNER_FLAGS:
        running.add_argument(flag, dest=keyword, **settings)
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("job", metavar="JOB", help="the job's name, or SUBMITTER/NAME as the runner prints it")
    which.add_argument("--user", metavar="EMAIL", help="the submitter, when several have a job of that name")
    checks = argparse.ArgumentParser(add_help=False)
    for flag, help_text in (("--min-count", "flag CSV cells holding a count below this (default 10)"),
                            ("--max-rows", "flag CSVs with more rows (default 5000)"),
                            ("--max-file-mb", "flag files larger than this (default 16)")):
        checks.add_argument(flag, type=_number_arg(float), metavar="N", help=help_text)
    confirm = argparse.ArgumentParser(add_help=False)
    confirm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return datasite, running, which, checks, confirm


def _build_parser() -> argparse.ArgumentParser:
    datasite, running, which, checks, confirm = _option_groups()
    parser = _ArgumentParser(prog="syft-job", description="The job runner of a SyftBox datasite.", parents=[datasite])
    parser.add_argument("--version", action="version", version=f"syft-job {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser, required=True)

    def command(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=list(parents))

    run = command("run", "poll for jobs and run approved ones until Ctrl+C", datasite, running)
    run.add_argument("--poll-interval", type=_number_arg(float), default=5.0, metavar="SECONDS",
                     help="seconds between two polls (default: 5)")
    command("once", "run the approved jobs once and exit (status 1 if a job failed)", datasite, running)
    listing = command("list", "list the jobs: status, times, return code, what is shared", datasite)
    listing.add_argument("--status", choices=STATUSES, help="only jobs with this status")
    listing.add_argument("--submitter", metavar="EMAIL", help="only this submitter's jobs")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    show = command("show", "review a job: its whole run.sh, code, config, digest, status, results and their checks",
                   datasite, which, checks)
    show.add_argument("--lines", type=_number_arg(int), default=20, metavar="N", help="log lines to show (default: 20)")
    show.add_argument("--json", action="store_true", help="print JSON for scripts (the results too)")
    show.add_argument("--all-lines", action="store_true", help="every line of each submitted text file (default: the "
                                                                "first 200)")
    logs = command("logs", "print a job's output", datasite, which)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--stderr", action="store_true", help="stderr.txt instead of stdout.txt")
    logs.add_argument("--raw", action="store_true", help="the bytes as the job wrote them (escape sequences included; "
                                                        "by default control characters are shown escaped)")
    _add_decision_commands(command, datasite, which, checks, confirm)
    command("version", "print the version")
    command("demo", "run a self-contained demo in a throwaway SyftBox folder").add_argument(
        "--folder", metavar="PATH", help="an empty folder to use (default: a new temp folder)")
    return parser


def _add_decision_commands(command: Callable[..., argparse.ArgumentParser], datasite: argparse.ArgumentParser,
                           which: argparse.ArgumentParser, checks: argparse.ArgumentParser,
                           confirm: argparse.ArgumentParser) -> None:
    """The owner's decisions: approve, reject, trust, share, release, delete, ..."""
    approve = command("approve", "approve a job (the runner then runs it)", datasite, which)
    approve.add_argument("--reason", metavar="TEXT", help="why, for the data scientist")
    approve.add_argument("--digest", metavar="HEX", help="approve only if the files still hash to this (from show)")
    reject = command("reject", "reject a job, with a reason the data scientist reads", datasite, which)
    reject.add_argument("--reason", metavar="TEXT", required=True, help="why it is rejected, for the data scientist")
    command("reopen", "put a rejected job back in the inbox, to review it again", datasite, which)
    audit = command("audit", "every decision and run, from the tamper-evident audit trail", datasite)
    audit.add_argument("--job", metavar="NAME", help="only this job (a name or SUBMITTER/NAME)")
    audit.add_argument("--user", metavar="EMAIL", help="only this submitter's jobs, or what this user did")
    audit.add_argument("--json", action="store_true", help="print JSON for scripts")
    audit.add_argument("--verify", action="store_true", help="check that no line was edited, removed or reordered "
                                                             "(exit 1 naming the first that was)")
    command("rerun", "run a finished job again (its old results are replaced)", datasite, which)
    command("cancel", "stop a running job and all its processes", datasite, which)
    share = command("share", "let the submitter read a finished job's outputs and/or logs", datasite, which)
    share.add_argument("--outputs", action="store_true", help="share the job's outputs/ folder")
    share.add_argument("--logs", action="store_true", help="share stdout.txt, stderr.txt and returncode.txt")
    release = command("release", "let the submitter read exactly these result files, checked (see show)", datasite,
                      which, checks)
    release.add_argument("paths", nargs="*", metavar="PATH", help="stdout.txt, stderr.txt, outputs/... (from show)")
    release.add_argument("--all", action="store_true", help="every result file, the flagged ones too")
    release.add_argument("--reason", metavar="TEXT", help="why, for the audit trail")
    release.add_argument("--on-event", dest="on_event", action="append", metavar="CMD",
                         help="run this shell command for the release event (see run --on-event)")
    trust = command("trust", "approve by itself a submitter's code you reviewed, each time it is sent again", datasite)
    trust.add_argument("submitter", nargs="?", metavar="SUBMITTER", help="the data scientist's email")
    trust.add_argument("--digest", metavar="HEX", help="the job's code digest, as show prints it")
    trust.add_argument("--list", action="store_true", help="print what is trusted")
    untrust = command("untrust", "stop approving this code by itself", datasite)
    untrust.add_argument("submitter", metavar="SUBMITTER", help="the data scientist's email")
    untrust.add_argument("--digest", metavar="HEX", required=True, help="the code digest trusted")
    command("unshare", "take back what share and release gave", datasite, which)
    command("delete", "delete one job, its results and its share rules (asks first)", datasite, which, confirm)
    add = command("add-submitter", "let a data scientist submit jobs to this datasite", datasite)
    add.add_argument("submitter_email", metavar="EMAIL", help="the data scientist's email")
    command("reset", "delete every job and the share rules made for them (asks first)", datasite, confirm)


_COMMANDS: dict[str, Callable[[SyftJobRunner, argparse.Namespace], int | None]] = {  # None: exit status 0
    "run": _cmd_run, "once": _cmd_once, "list": _cmd_list, "show": _cmd_show, "logs": _cmd_logs,
    "approve": _cmd_approve, "reject": _cmd_reject, "reopen": _cmd_reopen, "audit": _cmd_audit,
    "release": _cmd_release, "rerun": _cmd_rerun, "cancel": _cmd_cancel, "trust": _cmd_trust, "untrust": _cmd_untrust,
    "share": _cmd_share, "unshare": _cmd_unshare, "delete": _cmd_delete, "add-submitter": _cmd_add_submitter,
    "reset": _cmd_reset,
}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``syft-job`` command on ``argv`` (default: ``sys.argv[1:]``); returns its exit status."""
    for stream in (sys.stdout, sys.stderr):  # a console that cannot encode a character gets an escape
        with contextlib.suppress(AttributeError, ValueError):  # not a text stream of io's: left as it is
            stream.reconfigure(errors="backslashreplace")
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "version":
            print(f"syft-job {__version__}")
            return 0
        if args.command == "demo":
            return _cmd_demo(args)
        runner = _runner(args)
        try:
            return _COMMANDS[args.command](runner, args) or 0
        finally:
            if runner._hooks is not None:  # the events' commands finish (each within its time) before we exit
                runner._hooks.close()
    except BrokenPipeError:  # `syft-job show JOB | head -1`: the reader has gone; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SyftJobError, OSError) as exc:
        print(f"syft-job {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n🛑 Interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
