"""Tests of syft_job: real processes, real files in tmp_path, no network.

Run with: python -m pytest -q test_syft_job.py
"""

from __future__ import annotations

import datetime
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
import time
from pathlib import Path

import pytest

import syft_job
from syft_job import ConfigError, JobError, JobNotFoundError, SyftJobConfig, YAMLError

HERE = Path(__file__).resolve().parent
OWNER = "do@test.org"
DS = "ds@test.org"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


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


@pytest.fixture
def syftbox(tmp_path: Path) -> Path:
    folder = tmp_path / "SyftBox"
    folder.mkdir()
    return folder


@pytest.fixture
def runner(syftbox: Path) -> syft_job.SyftJobRunner:
    return syft_job.create_runner(syftbox, OWNER, poll_interval=0.1)


def make_job(runner: syft_job.SyftJobRunner, name: str, script: str | bytes | None,
             submitter: str = DS, approved: bool = True, config: str | None = None) -> Path:
    """A job folder as other SyftBox clients write it."""
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


RUNNER_SCRIPT = """
import sys, syft_job
runner = syft_job.create_runner(sys.argv[1], sys.argv[2], poll_interval=0.1)
{body}
"""


def start_runner_process(syftbox: Path, body: str, stdout=subprocess.PIPE, env=None) -> subprocess.Popen:
    """A runner in its own Python process, to send it signals and watch its console."""
    code = RUNNER_SCRIPT.format(body=body)
    return subprocess.Popen([sys.executable, "-u", "-c", code, str(syftbox), OWNER],
                            stdout=stdout, stderr=subprocess.STDOUT, cwd=HERE, env=env)


class LineReader:
    """Reads a process's output in the background so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        import threading
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


# ---------------------------------------------------------------------------
# Configuration
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


def test_create_runner_makes_the_job_directory(syftbox):
    runner = syft_job.create_runner(str(syftbox), OWNER, poll_interval=7)
    assert runner.job_dir == syftbox.resolve() / OWNER / "app_data" / "job"
    assert runner.job_dir.is_dir()
    assert runner.poll_interval == 7
    same = syft_job.SyftJobRunner(SyftJobConfig.from_syftbox_folder(syftbox, OWNER))
    assert same.poll_interval == 5
    with pytest.raises(ConfigError, match="poll_interval"):
        syft_job.create_runner(syftbox, OWNER, poll_interval=0)


def test_public_names_version_and_quick_start(tmp_path, monkeypatch, capsys):
    assert re.match(r"^\d+\.\d+\.\d+$", syft_job.__version__)
    for name in syft_job.__all__:
        assert hasattr(syft_job, name), name
    # The module docstring's quick start runs as written (all but the blocking run()).
    doc = syft_job.__doc__
    block = doc.split("Quick start", 1)[1].split("::\n", 1)[1].split("\nFrom the shell", 1)[0]
    code = textwrap.dedent(block)
    assert "runner.run()" in code
    code = code.replace("runner.run()", "pass")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "SyftBox").mkdir()
    exec(compile(code, "quick start", "exec"), {})
    job = tmp_path / "SyftBox" / "owner@example.com" / "app_data" / "job" / "ds@example.com" / "hello"
    assert (job / "outputs" / "hello.txt").read_text() == "hello\n"
    assert (job / "done").exists()
    assert "NEW JOB DETECTED: ds@example.com/hello" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------


def test_check_for_new_jobs_prints_each_inbox_job_once(runner, capsys):
    script = "#!/bin/bash\n" + "".join(f"echo line{i}\n" for i in range(2, 9))
    make_job(runner, "Data Processing", script, approved=False)
    make_job(runner, "approved one", "echo hi", approved=True)
    (runner.job_dir / DS / "not a job").mkdir()  # no config.yaml: not a job
    runner.check_for_new_jobs()
    out = capsys.readouterr().out
    job_path = runner.job_dir / DS / "Data Processing"
    expected = (
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
    assert out == expected
    runner.check_for_new_jobs()
    assert capsys.readouterr().out == ""
    make_job(runner, "second", "echo 2", approved=False)
    runner.check_for_new_jobs()
    out = capsys.readouterr().out
    assert "NEW JOB DETECTED: ds@test.org/second" in out and "Data Processing" not in out


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
    status = syft_job._job_status
    monkeypatch.setattr(syft_job, "_job_status", lambda folder: looked_at.append(Path(folder).name) or status(folder))

    assert len(runner._jobs()) == 6 and sorted(looked_at) == sorted(["waiting"] + [j.name for j in finished])
    looked_at.clear()
    runner._jobs()
    assert looked_at == ["waiting"]  # finished jobs are not looked at again

    (waiting / "approved").touch()
    looked_at.clear()
    assert {j.name: j.status for j in runner._jobs()}["waiting"] == "approved"
    new = make_job(runner, "new", "true\n", approved=False)  # changes the submitter folder
    looked_at.clear()
    assert "new" in {j.name for j in runner._jobs()} and sorted(looked_at) == ["new", "waiting"]

    (finished[0] / "done").unlink()  # by hand, to run it again: seen at the next full scan
    assert {j.name: j.status for j in runner._jobs()}["done 0"] == "done"
    runner._scanner.full_scan_at = 0
    assert {j.name: j.status for j in runner._jobs()}["done 0"] == "approved"
    shutil.rmtree(new)
    assert "new" not in {j.name for j in runner._jobs()}


def test_discovery_does_not_follow_symlinks_out(runner, tmp_path, capsys):
    outside = tmp_path / "outside"
    (outside / "job").mkdir(parents=True)
    (outside / "job" / "config.yaml").write_text("name: job\n")
    (outside / "job" / "run.sh").write_text("echo pwned > pwned\n")
    (outside / "job" / "approved").touch()
    (runner.job_dir / "evil@test.org").symlink_to(outside)
    (runner.job_dir / DS).mkdir()
    (runner.job_dir / DS / "linked").symlink_to(outside / "job")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
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
    assert (ok / "returncode.txt").read_text().strip() == "0"
    assert (ok / "outputs" / "r.txt").read_text() == "result\n"
    assert (ok / "done").exists()
    assert (bad / "returncode.txt").read_text().strip() == "3"
    assert (bad / "stderr.txt").read_bytes() == b"oops\n"
    assert not (inbox / "done").exists() and not (inbox / "stdout.txt").exists()
    assert "📋 Found 2 job(s) in approved directory\n" + "=" * 50 + "\n" in out
    assert f"🚀 Executing job: Data Analysis\n📁 Job directory: {ok}\n" in out
    assert f"[{OWNER}][Data Analysis] Running analysis...\n" in out
    assert "✅ Job Data Analysis completed successfully\n📄 Output written to stdout.txt\n" in out
    assert f"[{OWNER}][failing] STDERR: oops\n" in out
    assert "❌ Job failing failed with return code 3" in out
    assert out.endswith("=" * 50 + "\n✅ Processed 2 job(s)\n")
    # Done jobs never run again.
    runner.process_approved_jobs()
    assert capsys.readouterr().out == ""


def test_skip_job_names_by_name_or_submitter_and_name(runner, capsys):
    a = make_job(runner, "a", "true")
    b = make_job(runner, "b", "true")
    c = make_job(runner, "c", "true", submitter="other@test.org")
    runner.process_approved_jobs(skip_job_names=["a", "other@test.org/c"])
    assert not (a / "done").exists() and (b / "done").exists() and not (c / "done").exists()
    assert "Found 1 job(s)" in capsys.readouterr().out


def test_job_environment_is_the_documented_one_without_runner_secrets(runner, syftbox, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    job = make_job(runner, "env", "env\n")
    runner.process_approved_jobs(stream_output=False)
    env = dict(line.split("=", 1) for line in (job / "stdout.txt").read_text().splitlines() if "=" in line)
    assert env["SYFTBOX_FOLDER"] == str(syftbox.resolve())
    assert env["SYFTBOX_EMAIL"] == OWNER
    assert env["SYFT_IS_IN_JOB"] == "true"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PWD"] == str(job)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "hunter2" not in (job / "stdout.txt").read_text()


EXACT_BYTES = b"caf\xc3\xa9 \xff\xfe invalid\r\n10%\r50%\r100%\nno newline at end"


@pytest.mark.parametrize("stream", [True, False])
def test_logs_keep_the_exact_bytes(runner, tmp_path, capsys, stream):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(EXACT_BYTES)
    job = make_job(runner, "bytes", f"cat '{payload}'\ncat '{payload}' >&2\n")
    runner.process_approved_jobs(stream_output=stream)
    assert (job / "stdout.txt").read_bytes() == EXACT_BYTES
    assert (job / "stderr.txt").read_bytes() == EXACT_BYTES
    assert (job / "returncode.txt").read_text().strip() == "0"
    out = capsys.readouterr().out
    prefix = f"[{OWNER}][bytes] "
    if stream:
        shown = [l[len(prefix):] for l in out.splitlines() if l.startswith(prefix) and "STDERR" not in l]
        assert shown == ["café \ufffd\ufffd invalid", "10%", "50%", "100%", "no newline at end"]
        assert f"{prefix}STDERR: no newline at end\n" in out
    else:
        assert prefix not in out and "invalid" not in out


def test_partial_line_is_shown_before_the_job_goes_on(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER)
    release = tmp_path / "release"
    make_job(runner, "progress", f"printf 'progress 50%%'\nwhile [ ! -e '{release}' ]; do sleep 0.02; done\necho ' finished'\n")
    proc = start_runner_process(syftbox, "runner.process_approved_jobs()")
    reader = LineReader(proc)
    try:
        # No newline was printed and the job is still blocked: the line shows anyway.
        reader.wait_for(f"[{OWNER}][progress] progress 50%\n", timeout=20)
        assert "finished" not in reader.text
        release.touch()
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


def test_a_million_lines_streamed(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "million", "seq 1 1000000\n")
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
def test_memory_stays_flat_for_200_mb_of_output(syftbox, tmp_path, stream):
    runner = syft_job.create_runner(syftbox, OWNER)
    size = 200_000_000
    # Captured mode gets lines; streamed mode gets one endless line (no newline at all).
    produce = "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY" if not stream else "tr '\\0' x < /dev/zero"
    job = make_job(runner, "big", f"{produce} | head -c {size}\n")
    log = tmp_path / "console.txt"
    with open(log, "wb") as f:
        proc = start_runner_process(syftbox, PEAK_MEMORY.format(stream=stream), stdout=f)
        assert proc.wait(timeout=120) == 0
    assert (job / "stdout.txt").stat().st_size == size
    peak_kb = int(re.search(r"PEAK_KB (\d+)", log.read_text(errors="replace")).group(1))
    assert peak_kb < 80_000, f"peak memory {peak_kb} kB"  # the reference needed 627 MB


HOLDER_SCRIPT = f"""
sleep 300 &
echo $! > bg.pid
'{sys.executable}' -c 'import os, time; os.setsid(); time.sleep(300)' &
echo $! > escaped.pid
echo started
echo started-err >&2
sleep 300
"""


@pytest.mark.parametrize("stream", [True, False])
def test_timeout_kills_the_group_and_returns_while_a_grandchild_holds_the_pipes(runner, capsys, stream):
    job = make_job(runner, "slow", HOLDER_SCRIPT)
    started = time.monotonic()
    try:
        runner.process_approved_jobs(stream_output=stream, timeout=1)
        took = time.monotonic() - started
        assert took < 30  # a hang bound: the reference waited for the grandchild (300 s)
        assert (job / "returncode.txt").read_text().strip() == "-1"
        assert (job / "done").exists()
        assert (job / "stdout.txt").read_bytes() == b"started\n--- PROCESS TIMED OUT ---\n"
        assert (job / "stderr.txt").read_bytes() == b"started-err\n--- PROCESS TIMED OUT ---\n"
        bg = int((job / "bg.pid").read_text())
        wait_for(lambda: not pid_alive(bg), 10, "the job's background process to die")
        out = capsys.readouterr().out
        assert "⏰ Job slow timed out after 1 seconds (return code -1)" in out
        runner.process_approved_jobs(timeout=1)  # finished: never re-run by itself
        assert capsys.readouterr().out == ""
    finally:
        escaped = int((job / "escaped.pid").read_text())  # left its session on purpose
        os.kill(escaped, signal.SIGKILL)


def test_timeout_escalates_to_kill_when_term_is_ignored(runner):
    job = make_job(runner, "stubborn", "trap '' TERM\necho $$ > pid\nwhile true; do sleep 0.05; done\n")
    runner.process_approved_jobs(stream_output=False, timeout=0.5)
    assert (job / "returncode.txt").read_text().strip() == "-1"
    wait_for(lambda: not pid_alive(int((job / "pid").read_text())), 10, "the stubborn job to die")


def test_background_processes_do_not_outlive_a_finished_job(runner):
    job = make_job(runner, "leaves", "sleep 300 &\necho $! > bg.pid\necho done-main\n")
    runner.process_approved_jobs(timeout=60)
    assert (job / "returncode.txt").read_text().strip() == "0"
    assert (job / "stdout.txt").read_text() == "done-main\n"
    wait_for(lambda: not pid_alive(int((job / "bg.pid").read_text())), 10, "the leftover to die")


def test_timeout_from_environment_and_bad_value(runner, monkeypatch):
    job = make_job(runner, "sleepy", "sleep 300\n")
    monkeypatch.setenv("SYFT_DEFAULT_JOB_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError, match="SYFT_DEFAULT_JOB_TIMEOUT_SECONDS.*'soon'"):
        runner.process_approved_jobs()
    assert not (job / "stdout.txt").exists()
    monkeypatch.setenv("SYFT_DEFAULT_JOB_TIMEOUT_SECONDS", "0.5")
    runner.process_approved_jobs()
    assert (job / "returncode.txt").read_text().strip() == "-1"
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
        assert (job / "done").exists() and (job / "returncode.txt").read_text().strip() == "-1"
    assert "❌ job ds@test.org/no script has no run.sh" in out
    assert "config.yaml, line 2" in out
    assert (fine / "stdout.txt").read_text() == "fine\n"
    runner.process_approved_jobs()
    assert capsys.readouterr().out == ""  # not retried on every poll


def test_a_runner_side_error_finishes_the_job_and_the_others_still_run(runner, tmp_path, monkeypatch, capsys):
    first = make_job(runner, "first", "echo one")
    second = make_job(runner, "second", "echo two")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bash-here"))  # bash cannot be started
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    for job in (first, second):
        assert (job / "done").exists()
        assert "runner error" in (job / "stderr.txt").read_text()
    assert out.count("runner error in job") == 2 and "Processed 2 job(s)" in out


def test_planted_symlinks_are_replaced_not_written_through(runner, tmp_path):
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
echo $$ > pid
if [ -e second-run ]; then exit 0; fi
touch second-run
sleep 300 &
echo $! > child.pid
wait
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_the_job_and_leaves_it_approved(syftbox, signum):
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "long", STOPPABLE_JOB)
    proc = start_runner_process(syftbox, "runner.run()")
    reader = LineReader(proc)
    try:
        reader.wait_for("🚀 Executing job: long")
        wait_for(lambda: (job / "child.pid").exists() and (job / "child.pid").read_text().strip())
        pid, child = int((job / "pid").read_text()), int((job / "child.pid").read_text())
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 0
        reader.thread.join(10)
        assert "SyftJob Runner stopped" in reader.text
        assert "Traceback" not in reader.text
        wait_for(lambda: not pid_alive(pid) and not pid_alive(child), 10, "the job to be stopped")
        assert (job / "approved").exists() and not (job / "done").exists()
        assert not (job / syft_job.CLAIM_FILE).exists()  # a normal stop leaves nothing claimed
    finally:
        proc.kill()
    # It runs again at the next start.
    runner.process_approved_jobs(timeout=60)
    assert (job / "returncode.txt").read_text().strip() == "0"


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
    text = reader.text
    banner = (
        f"🚀 SyftJob Runner started: version: {syft_job.__version__}\n"
        f"👤 Monitoring jobs for: {OWNER}\n"
        f"📂 Job directory: {runner.job_dir}\n"
        "⏱️ Poll interval: 0.1 seconds\n"
        "⏹️ Press Ctrl+C to stop\n"
        + "=" * 50 + "\n"
        "📋 Found 2 existing job(s): 1 inbox, 0 approved, 0 running, 1 done\n"
        f"- {DS}/waiting (waiting for review)\n"
    )
    assert text.startswith(banner)
    assert "NEW JOB DETECTED: ds@test.org/waiting" not in text  # reported in the banner


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
# Reset
# ---------------------------------------------------------------------------


def test_reset_counts_the_real_layout_and_keeps_submitter_folders(runner, tmp_path, capsys):
    runner.add_submitter(DS)
    for name in ("Job 1", "Job 2", "Job 3"):
        make_job(runner, name, "true", approved=False)
    make_job(runner, "Job 4", "true", approved=True)
    make_job(runner, "Job 5", "true", approved=True, submitter="other@test.org")
    done = make_job(runner, "Job 6", "true", approved=True)
    (done / "done").touch()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (runner.job_dir / DS / "link").symlink_to(outside)
    (runner.job_dir / "syft.pub.yaml").write_text("rules: []\n")
    capsys.readouterr()
    runner.reset_all_jobs()
    out = capsys.readouterr().out
    assert out == (
        f"🔄 RESETTING ALL JOBS for {OWNER}\n"
        f"📁 Target directory: {runner.job_dir}\n"
        "📋 Found 3 jobs in inbox:\n- ds@test.org/Job 1\n- ds@test.org/Job 2\n- ds@test.org/Job 3\n"
        "📋 Found 2 jobs in approved:\n- ds@test.org/Job 4\n- other@test.org/Job 5\n"
        "📋 Found 1 jobs in done:\n- ds@test.org/Job 6\n"
        "⚠️ WARNING: This will permanently delete 6 jobs!\n"
        "This action cannot be undone.\n"
        f"🗑️ Deleting job directory: {runner.job_dir}\n"
        "📁 Recreating job folder structure...\n"
        "✅ Job reset completed successfully!\n"
        "📊 Summary:\n"
        "- Deleted 6 jobs total\n"
        "- inbox: 3 jobs deleted\n"
        "- approved: 2 jobs deleted\n"
        "- done: 1 jobs deleted\n"
        "- Clean job directory recreated\n"
    )
    assert sorted(os.listdir(runner.job_dir)) == [DS, "other@test.org", "syft.pub.yaml"]
    assert os.listdir(runner.job_dir / DS) == ["syft.pub.yaml"]
    assert os.listdir(runner.job_dir / "other@test.org") == []
    assert (outside / "keep.txt").read_text() == "keep"


def test_reset_recreates_a_missing_job_directory(runner, capsys):
    runner.job_dir.rmdir()
    runner.reset_all_jobs()
    assert runner.job_dir.is_dir()
    assert "Deleted 0 jobs total" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------

FIXTURES = sorted((HERE / "tests" / "fixtures" / "yaml").glob("*.yaml"))


def test_fixtures_are_there():
    assert len(FIXTURES) == 15


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_reader_gives_what_pyyaml_gives(path):
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    value = syft_job.load_yaml(path.read_text(encoding="utf-8"), str(path))
    assert value == expected
    assert syft_job.load_yaml(syft_job.dump_yaml(value)) == value


def test_writer_matches_pyyaml_byte_for_byte_on_the_fixtures():
    # These fixtures were written by yaml.dump(..., default_flow_style=False).
    for stem in ("config_bash_job", "config_python_job", "config_quoting", "config_unicode",
                 "config_no_deps", "config_long_deps", "perm_ds_folder", "perm_multi"):
        path = HERE / "tests" / "fixtures" / "yaml" / f"{stem}.yaml"
        value = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert syft_job.dump_yaml(value) == path.read_text(encoding="utf-8"), stem


@pytest.mark.parametrize("text, expected", [
    ("a: yes\nb: No\nc: on\nd: ~\ne: null\nf: ''\ng:\n", {"a": True, "b": False, "c": True, "d": None, "e": None, "f": "", "g": None}),
    ("a: 0123\nb: 0x1F\nc: -7\nd: 1_000\ne: 1:30\nf: 0b101\n", {"a": 83, "b": 31, "c": -7, "d": 1000, "e": 90, "f": 5}),
    ("a: 2.5\nb: 1e5\nc: 1.0e+5\nd: .5\ne: -.inf\n", {"a": 2.5, "b": "1e5", "c": 100000.0, "d": 0.5, "e": float("-inf")}),
    ("a: '0123'\nb: 'yes'\nc: \"1.5\"\n", {"a": "0123", "b": "yes", "c": "1.5"}),
    ("a: 2026-03-02\n", {"a": datetime.date(2026, 3, 2)}),
    ("---\n# comment\nlist: [a, 'b c', \"d\", 1, [x]]\nmap: {k: v, n: 1}\nempty: []\nnone: {}\n",
     {"list": ["a", "b c", "d", 1, ["x"]], "map": {"k": "v", "n": 1}, "empty": [], "none": {}}),
    ("s: \"\\x41\\u00e9\\U0001F600\\n\\t\\\\ \\\"q\\\"\"\n", {"s": "A\u00e9\U0001F600\n\t\\ \"q\""}),
    ("s: 'it''s'\n", {"s": "it's"}),
    ("s: \"folded \\\n  \\ line\"\n", {"s": "folded  line"}),
    ("plain: a long plain\n  scalar folded\n\n  with a blank line\n", {"plain": "a long plain scalar folded\nwith a blank line"}),
    ("url: http://x.org/a#b\nc: a#b # comment\n", {"url": "http://x.org/a#b", "c": "a#b"}),
    ("- a\n- - b\n  - c\n- k: v\n  k2: [1]\n-\n", ["a", ["b", "c"], {"k": "v", "k2": [1]}, None]),
    ("rules:\n  - pattern: '**'\n    access:\n      read: ['*']\n", {"rules": [{"pattern": "**", "access": {"read": ["*"]}}]}),
    ("", None),
    ("# only a comment\n", None),
    ("just text\n", "just text"),
])
def test_reader_cases(text, expected):
    assert syft_job.load_yaml(text) == expected


@pytest.mark.parametrize("text, line, message", [
    ("a: &anchor 1\n", 1, "anchors"),
    ("a: 1\nb: *alias\n", 2, "aliases"),
    ("a: !!str 1\n", 1, "tags"),
    ("a: 1\n---\nb: 2\n", 2, "several YAML documents"),
    ("a: 1\n...\n", 2, "document end marker"),
    ("...\n", 1, "document end marker"),
    ("--- text\n", 1, "content on the '---' line"),
    ("a:\n\tb: 1\n", 2, "tab"),
    ("a: 1\n  b: 2\n", 2, ""),
    ("a: 'unclosed\n", 1, "not closed"),
    ("a: [1, 2\n", 1, "not closed"),
    ("a: |\n  text\n", 1, "block scalars"),
    ("a: b: c\n", 1, "quote the value"),
    ("a: 1\nnot a mapping line\n", 2, "expected 'key: value'"),
    ("a: \"\\q\"\n", 1, "unknown escape"),
    ("? complex\n: key\n", 1, "complex mapping keys"),
    ("a: @x\n", 1, "cannot start with '@'"),
    ("- a\nb: 1\n", 2, ""),
    ("a: \x07\n", 1, "not allowed"),
])
def test_reader_refuses_what_it_does_not_support_naming_file_and_line(text, line, message):
    with pytest.raises(YAMLError) as caught:
        syft_job.load_yaml(text, "jobs/config.yaml")
    assert str(caught.value).startswith(f"jobs/config.yaml, line {line}: ")
    assert message in str(caught.value)


ODD_CHARS = list("abcXYZ019 _-.:#'\"!&*@%`?,[]{}|>\\/\t\n\r~=<") + [
    "é", "—", "✓", "日", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\U0001F600", "\xa0", "\ufeff"]
ODD_WORDS = ["yes", "no", "null", "~", "true", "0123", "1.5", "1e5", "0x1F", "2026-03-02",
             "2026-03-02T10:30:00+00:00", "-", "- x", "--- x", "...", "=", "<<", ".inf", "1_000",
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


def test_writer_output_reads_back_equal_property():
    for seed in range(3000):
        rng = random.Random(seed)
        value = {random_string(rng): random_value(rng) for _ in range(rng.randint(1, 6))}
        text = syft_job.dump_yaml(value)
        assert syft_job.load_yaml(text) == value, (seed, text)


def test_console_lines_across_chunk_boundaries(capsys):
    console = syft_job._Console("[o][j] ")
    for chunk in (b"a\r", b"\nb\r\n", b"c", b"d\n", b"\xc3", b"\xa9\n"):
        console.feed("stdout", chunk)
    console.feed("stderr", b"partial")
    console.flush_stale(0)
    assert capsys.readouterr().out == "[o][j] a\n[o][j] b\n[o][j] cd\n[o][j] \u00e9\n[o][j] STDERR: partial\n"


def test_writer_refuses_unknown_types():
    with pytest.raises(TypeError, match="set"):
        syft_job.dump_yaml({"a": {1, 2}})


def test_writer_output_reads_back_in_pyyaml_when_available():
    yaml = pytest.importorskip("yaml")  # a cross-check on machines that have PyYAML
    for seed in range(2000):
        rng = random.Random(seed)
        value = {random_string(rng): random_value(rng) for _ in range(rng.randint(1, 6))}
        assert yaml.safe_load(syft_job.dump_yaml(value)) == value, seed


# ---------------------------------------------------------------------------
# Submitting jobs
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


@pytest.fixture
def client(runner) -> syft_job.JobClient:
    return syft_job.JobClient(SyftJobConfig.from_syftbox_folder(runner.config.syftbox_folder, DS))


def test_python_run_sh_is_the_documented_text(client, tmp_path, monkeypatch):
    monkeypatch.delenv("SYFT_CLIENT_INSTALL_SOURCE", raising=False)
    script = tmp_path / "script.py"
    script.write_text("print('hi')\n")
    job = client.submit_python_job(OWNER, script, job_name="single", dependencies=["numpy", "pandas"])
    assert (job / "run.sh").read_bytes() == SEED_SCRIPT.encode()
    assert os.access(job / "run.sh", os.X_OK)
    assert (job / "script.py").read_text() == "print('hi')\n"
    project = tmp_path / "project_dir"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "main.py").write_text("print('main')\n")
    (project / "helper.py").write_text("")
    job = client.submit_python_job(OWNER, project, job_name="folder", dependencies=["numpy"])
    assert (job / "run.sh").read_bytes() == SEED_PROJECT_SCRIPT.encode()
    assert (job / "project_dir" / "main.py").exists()


def test_python_job_config_holds_the_documented_keys(client, tmp_path):
    project = tmp_path / "analysis"
    project.mkdir()
    (project / "only.py").write_text("print(1)\n")
    job = client.submit_python_job(OWNER, project, job_name="Data Processing", dependencies=["pandas==2.2.0"])
    config = syft_job.load_yaml((job / "config.yaml").read_text())
    assert set(config) == {"name", "submitted_by", "submitted_at", "type", "code_path",
                           "entry_point", "dependencies", "is_folder_submission"}
    assert config["name"] == "Data Processing" and config["submitted_by"] == DS
    assert config["type"] == "python" and config["is_folder_submission"] is True
    assert config["entry_point"] == "only.py" and config["dependencies"] == ["pandas==2.2.0"]
    assert config["code_path"] == str(project)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00$", config["submitted_at"])
    assert "python analysis/only.py\n" in (job / "run.sh").read_text()


def test_folder_entrypoint_rules(client, tmp_path):
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


def test_base_packages_by_argument_and_environment(client, tmp_path, monkeypatch):
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


def test_bash_job_and_default_name(client, runner):
    job = client.submit_bash_job(OWNER, "echo hello")
    assert re.match(r"^Job - [0-9a-f]{8}$", job.name)
    assert job.parent == runner.job_dir / DS
    assert (job / "run.sh").read_text() == "#!/bin/bash\necho hello\n"
    config = syft_job.load_yaml((job / "config.yaml").read_text())
    assert config["name"] == job.name and config["submitted_by"] == DS and "type" not in config
    with pytest.raises(JobError, match="already exists"):
        client.submit_bash_job(OWNER, "echo again", job_name=job.name)
    assert (job / "run.sh").read_text() == "#!/bin/bash\necho hello\n"  # never overwritten


@pytest.mark.parametrize("name", [".", "..", "a/b", "a\0b", "   ", "x" * 256, "é" * 128])
def test_bad_job_names_are_refused(client, name):
    with pytest.raises(JobError, match="job name"):
        client.submit_bash_job(OWNER, "true", job_name=name)


def test_submitting_to_an_unknown_datasite_is_a_clear_error(client):
    with pytest.raises(JobError, match="no datasite for nobody@test.org"):
        client.submit_bash_job("nobody@test.org", "true", job_name="x")
    with pytest.raises(ConfigError, match="email"):
        client.submit_bash_job("not-an-email", "true", job_name="x")


FAKE_UV = """#!/bin/bash
# A stand-in for uv: records what the job asked for, makes an activate script.
case "$1" in
  venv) mkdir -p .venv/bin && echo 'export FAKE_VENV=1' > .venv/bin/activate ;;
  sync) mkdir -p .venv/bin && echo 'export FAKE_VENV=1' > .venv/bin/activate ;;
  pip)  shift 2; printf '%s\\n' "$@" > "$PWD/installed.txt" ;;
esac
"""


@pytest.fixture
def fake_uv(tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV)
    (bin_dir / "uv").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize("odd", ["my project", "it's $HOME", 'say "hi"', "plain"])
def test_submitted_python_jobs_run_end_to_end_with_odd_names(client, runner, tmp_path, fake_uv, odd):
    project = tmp_path / odd
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "helper.py").write_text("VALUE = 42\n")
    (project / f"{odd}.py").write_text(
        "import helper, os\nopen('outputs/result.txt', 'w').write(str(helper.VALUE))\n"
        "print('venv', os.environ.get('FAKE_VENV'))\n")
    job = client.submit_python_job(OWNER, project, job_name=f"job {odd}",
                                   dependencies=["numpy>=1; python_version >= '3.9'", "we$ird`dep"],
                                   entrypoint=f"{odd}.py")
    (job / "approved").touch()
    runner.process_approved_jobs(stream_output=False, timeout=60)
    assert (job / "stderr.txt").read_text() == ""
    assert (job / "returncode.txt").read_text().strip() == "0"
    assert (job / "outputs" / "result.txt").read_text() == "42"
    assert (job / "stdout.txt").read_text() == "venv 1\n"
    installed = (job / "installed.txt").read_text().splitlines()
    assert installed == ["syft-client", "numpy>=1; python_version >= '3.9'", "we$ird`dep"]


def test_single_file_python_job_runs_end_to_end(client, runner, tmp_path, fake_uv):
    script = tmp_path / "hello world.py"
    script.write_text("print('hello from python')\n")
    job = client.submit_python_job(OWNER, script, job_name="single")
    (job / "approved").touch()
    runner.process_approved_jobs(stream_output=False, timeout=60)
    assert (job / "stdout.txt").read_text() == "hello from python\n"
    assert (job / "done").exists()


def test_bash_job_submitted_with_job_client_runs_to_done(client, runner, capsys):
    job = client.submit_bash_job(OWNER, "echo from-client > outputs/o.txt\necho hi", job_name="Data Analysis")
    runner.check_for_new_jobs()
    out = capsys.readouterr().out
    assert f"NEW JOB DETECTED: {DS}/Data Analysis" in out
    assert f"name: Data Analysis\nsubmitted_by: {DS}\nsubmitted_at: 20" in out
    (job / "approved").touch()
    runner.process_approved_jobs()
    assert (job / "outputs" / "o.txt").read_text() == "from-client\n"
    assert (job / "done").exists()


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
    """May ``user`` ``level`` (read/write/admin) ``path``, as SyftBox decides."""
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
    return any(user_listed(access.get(lvl), user) for lvl in _LEVELS[_LEVELS.index(level):])


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
    # terminal: true (perm_multi) stops the descent: the deeper file does not count.
    (site / "sub").mkdir()
    (site / "sub" / "syft.pub.yaml").write_text("rules:\n- pattern: '**'\n  access: {read: [z@z.org]}\n")
    assert can(tmp_path, "ds@test.org", path("sub/f"), "write")  # the upper file's '**'
    assert can(tmp_path, "anyone@else.org", path("sub/f"), "read")
    # Without it, the nearest file decides alone: no merging with the one above.
    (site / "syft.pub.yaml").write_text(
        (HERE / "tests/fixtures/yaml/perm_multi.yaml").read_text().replace("terminal: true", "terminal: false"))
    assert can(tmp_path, "z@z.org", path("sub/f"), "read")
    assert not can(tmp_path, "anyone@else.org", path("sub/f"), "read")
    assert not can(tmp_path, "ds@test.org", path("sub/f"), "write")


SUBMISSION = ("config.yaml", "run.sh", "code/main.py")
STATUS = ("approved", "done")
LOGS = ("stdout.txt", "stderr.txt", "returncode.txt")
OUTPUTS = ("outputs/result.csv", "outputs/deep/er.txt")
OTHER = "other@test.org"
COLLEAGUE = "x@company.com"


def ds_folder_with_usual_permissions(runner, extra_read=()) -> Path:
    folder = runner.job_dir / DS
    folder.mkdir(parents=True, exist_ok=True)
    rules = {"rules": [{"pattern": "**", "access": {"admin": [], "read": list(extra_read), "write": [DS]}}],
             "terminal": False}
    (folder / "syft.pub.yaml").write_text(syft_job.dump_yaml(rules))
    return folder


def finished_job(runner, name: str = "test.job") -> Path:
    job = make_job(runner, name, "echo out\necho err >&2\nmkdir -p outputs/deep\necho 1 > outputs/result.csv\necho 2 > outputs/deep/er.txt\n")
    (job / "code").mkdir()
    (job / "code" / "main.py").write_text("")
    runner.process_approved_jobs(stream_output=False)
    assert (job / "done").exists()
    return job


def access_table(syftbox: Path, job: Path, user: str) -> dict:
    return {(name, level): can(syftbox, user, job / name, level)
            for name in SUBMISSION + STATUS + LOGS + OUTPUTS for level in ("read", "write")}


def expected_table(read: tuple, write: tuple) -> dict:
    return {(name, level): name in (read if level == "read" else write)
            for name in SUBMISSION + STATUS + LOGS + OUTPUTS for level in ("read", "write")}


def test_usual_layout_results_stay_private_until_shared(runner, syftbox):
    ds_folder_with_usual_permissions(runner, extra_read=["*@company.com"])
    job = finished_job(runner)
    root = syftbox.resolve()
    submitter_before = expected_table(read=SUBMISSION + STATUS, write=SUBMISSION)
    assert access_table(root, job, DS) == submitter_before
    assert access_table(root, job, OTHER) == expected_table((), ())
    # A '*@company.com' reader keeps its grant on the submission, and gets no results.
    assert access_table(root, job, COLLEAGUE) == expected_table(read=SUBMISSION, write=())
    runner.share_job_results("test.job", share_outputs=False, share_logs=True)
    assert access_table(root, job, DS) == expected_table(read=SUBMISSION + STATUS + LOGS, write=SUBMISSION)
    runner.share_job_results("test.job", share_outputs=True, share_logs=False, user=DS)
    after = expected_table(read=SUBMISSION + STATUS + LOGS + OUTPUTS, write=SUBMISSION)
    assert access_table(root, job, DS) == after
    assert access_table(root, job, OTHER) == expected_table((), ())
    assert access_table(root, job, COLLEAGUE) == expected_table(read=SUBMISSION, write=())
    assert all(can(root, OWNER, job / name, "write") for name in SUBMISSION + STATUS + LOGS + OUTPUTS)
    # Sharing twice changes nothing; another job of the same submitter stays private.
    permission_file = runner.job_dir / DS / "syft.pub.yaml"
    before = permission_file.read_bytes()
    runner.share_job_results("test.job", share_outputs=True, share_logs=True)
    assert permission_file.read_bytes() == before
    second = finished_job(runner, "test.job2")
    assert access_table(root, second, DS) == submitter_before


def test_a_glob_character_in_a_job_name_shares_only_that_job(runner, syftbox):
    ds_folder_with_usual_permissions(runner)
    starred = finished_job(runner, "a*b")
    lookalike = finished_job(runner, "axb")
    runner.share_job_results("a*b", share_outputs=True, share_logs=True)
    root = syftbox.resolve()
    assert can(root, DS, starred / "stdout.txt", "read")
    assert not can(root, DS, lookalike / "stdout.txt", "read")
    assert not can(root, DS, lookalike / "outputs/result.csv", "read")


def test_no_permission_file_layout_shares_only_what_was_shared(runner, syftbox):
    job = finished_job(runner)
    root = syftbox.resolve()
    nothing = expected_table((), ())
    assert access_table(root, job, DS) == nothing
    assert not (runner.job_dir / DS / "syft.pub.yaml").exists()  # nothing to protect
    runner.share_job_results("test.job", share_outputs=True, share_logs=True)
    assert access_table(root, job, DS) == expected_table(read=LOGS + OUTPUTS, write=())
    assert access_table(root, job, OTHER) == nothing


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
    assert not can(root, DS, job / "approved", "write")  # the job-level file got the protections
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
    for rule in original_rules:
        assert rule in rules
    root = syftbox.resolve()
    assert can(root, "alice@example.com", folder / "test.job" / "data.csv", "read")
    assert can(root, DS, folder / "test.job" / "outputs" / "result.csv", "read")


def test_rules_written_by_others_between_two_shares_are_kept(runner, syftbox):
    runner.add_submitter(DS)
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


def test_sharing_a_job_that_never_made_outputs(runner):
    job = make_job(runner, "no script", None)
    runner.process_approved_jobs()
    assert (job / "done").exists() and not (job / "outputs").exists()
    runner.share_job_results("no script", share_outputs=True, share_logs=True)


def test_sharing_a_missing_or_unfinished_job_writes_nothing(runner):
    folder = ds_folder_with_usual_permissions(runner)
    before = (folder / "syft.pub.yaml").read_bytes()
    make_job(runner, "pending", "true", approved=False)
    runner.check_for_new_jobs()  # adds the protections once
    protected = (folder / "syft.pub.yaml").read_bytes()
    assert protected != before
    with pytest.raises(JobNotFoundError, match="no job named 'nope'"):
        runner.share_job_results("nope", True, True)
    with pytest.raises(JobError, match="not done yet"):
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


def test_add_submitter_protects_jobs_before_the_runner_sees_them(runner, syftbox):
    folder = runner.add_submitter(DS)
    assert folder == runner.job_dir / DS
    client = syft_job.JobClient(SyftJobConfig.from_syftbox_folder(syftbox, DS))
    job = client.submit_bash_job(OWNER, "echo hi", job_name="fresh")
    for name in LOGS:
        (job / name).write_text("planted by nobody")  # files nobody should see yet
    root = syftbox.resolve()
    assert can(root, DS, job / "run.sh", "write") and can(root, DS, job / "config.yaml", "read")
    assert can(root, DS, job / "approved", "read") and not can(root, DS, job / "approved", "write")
    assert not can(root, DS, job / "done", "write")
    assert not any(can(root, DS, job / name, "read") for name in LOGS + OUTPUTS)
    assert not can(root, DS, folder / "syft.pub.yaml", "write")
    # Idempotent, and keeps what the owner added.
    data = syft_job.load_yaml((folder / "syft.pub.yaml").read_text())
    data["rules"].append({"pattern": "notes/**", "access": {"admin": [], "read": [OTHER], "write": []}})
    (folder / "syft.pub.yaml").write_text(syft_job.dump_yaml(data))
    runner.add_submitter(DS)
    again = syft_job.load_yaml((folder / "syft.pub.yaml").read_text())
    assert again == data


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


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


COMMAND_OPTIONS = {
    "run": ["--poll-interval", "--timeout", "--no-stream", "--share-outputs", "--share-logs", "--skip",
            "--strict", "--pass-env", "--max-memory", "--max-cpu", "--max-log-size", "--syftbox-folder", "--email"],
    "once": ["--timeout", "--no-stream", "--share-outputs", "--share-logs", "--skip",
             "--strict", "--pass-env", "--max-memory", "--max-cpu", "--max-log-size"],
    "list": ["--json"], "show": ["JOB", "--user", "--lines"], "approve": ["JOB", "--user"],
    "share": ["JOB", "--outputs", "--logs", "--user"], "add-submitter": ["EMAIL"],
    "reset": ["--yes"], "version": [], "demo": ["--folder"],
}


@pytest.mark.parametrize("command", sorted(COMMAND_OPTIONS))
def test_help_of_each_command_explains_its_options(command):
    result = cli(command, "--help", env=cli_env())
    assert result.returncode == 0, result.stderr
    entries: list[str] = []  # "  --option METAVAR  explanation", joined over its lines
    for line in result.stdout.splitlines():
        if re.match(r"^  \S", line):
            entries.append(line.strip())
        elif re.match(r"^   +\S", line) and entries:
            entries[-1] += " " + line.strip()
    for option in COMMAND_OPTIONS[command]:
        entry = next(e for e in entries if e.split()[0] == option)
        explanation = [w for w in entry.split()[1:] if not re.fullmatch(r"[A-Z_]+", w)]
        assert len(explanation) >= 3, (command, option, entry)
    assert command in cli("--help").stdout


def test_which_datasite_flags_then_environment_then_client_config(syftbox, tmp_path):
    syft_job.create_runner(syftbox, OWNER)
    assert cli("list", *site_args(syftbox)).returncode == 0
    env = cli_env(SYFTBOX_FOLDER=str(syftbox), SYFTBOX_EMAIL=OWNER)
    result = cli("list", env=env)
    assert result.returncode == 0 and "No jobs in" in result.stdout
    # Empty variables count as unset; then the client config decides.
    data_dir = tmp_path / "client-data"
    (data_dir / "datasites").mkdir(parents=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": str(data_dir), "email": OWNER}))
    env = cli_env(SYFTBOX_FOLDER="", SYFTBOX_EMAIL="", SYFTBOX_CLIENT_CONFIG_PATH=str(config))
    result = cli("list", env=env)
    assert result.returncode == 0, result.stderr
    assert str(data_dir / "datasites" / OWNER) in result.stdout
    shutil.rmtree(data_dir / "datasites")
    result = cli("list", env=env)
    assert str(data_dir / OWNER / "app_data") in result.stdout
    # The default location of the client config is ~/.syftbox/config.json.
    home = tmp_path / "home"
    (home / ".syftbox").mkdir(parents=True)
    (home / ".syftbox" / "config.json").write_text(json.dumps({"data_dir": str(syftbox), "email": OWNER}))
    assert cli("list", env=cli_env(HOME=str(home))).returncode == 0
    # Nothing anywhere: the message says which flag to pass.
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    result = cli("list", env=cli_env(HOME=str(empty_home)))
    assert result.returncode == 2
    assert result.stderr.strip() == "syft-job list: error: no SyftBox folder given: pass --syftbox-folder PATH (or set SYFTBOX_FOLDER)"
    result = cli("list", "--syftbox-folder", str(syftbox), env=cli_env(HOME=str(empty_home)))
    assert result.returncode == 2 and "pass --email EMAIL" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["show", "no such job"], "no job named 'no such job'"),
    (["approve", "nope"], "no job named 'nope'"),
    (["list", "--syftbox-folder", "/does/not/exist"], "SyftBox folder not found: /does/not/exist"),
    (["list", "--email", "not-an-email"], "does not look like an email"),
    (["once", "--timeout", "soon"], "'soon' is not a positive number of seconds"),
    (["run", "--poll-interval", "-1"], "'-1' is not a positive number of seconds"),
    (["share", "x"], "say what to share"),
    (["show", "x", "--lines", "0"], "'0' is not a positive whole number"),
    (["reset"], "without a terminal to confirm, pass --yes"),
    (["frobnicate"], "invalid choice"),
])
def test_user_mistakes_print_one_line_and_exit_2(syftbox, args, message):
    syft_job.create_runner(syftbox, OWNER)
    base = site_args(syftbox)
    if "--syftbox-folder" in args:
        base = ["--email", OWNER]
    if "--email" in args:
        base = ["--syftbox-folder", str(syftbox)]
    result = cli(*args, *base, input="")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_once_list_show_approve_share_and_exit_status(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    runner.add_submitter(DS)
    good = make_job(runner, "good job", "echo fine > outputs/f.txt\necho all good\n", approved=False)
    bad = make_job(runner, "bad job", "echo broken >&2\nexit 4\n", approved=True)
    result = cli("approve", "good job", *site_args(syftbox))
    assert result.returncode == 0 and "Approved ds@test.org/good job" in result.stdout
    assert (good / "approved").exists()
    result = cli("once", *site_args(syftbox), "--timeout", "30")
    assert result.returncode == 1  # one job failed
    assert "❌ Job bad job failed with return code 4" in result.stdout
    assert "[do@test.org][good job] all good" in result.stdout
    result = cli("once", *site_args(syftbox))
    assert result.returncode == 0 and "No approved jobs to run" in result.stdout
    listing = cli("list", *site_args(syftbox))
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["JOB", "SUBMITTER", "STATUS", "SUBMITTED", "RC"]
    assert re.search(r"^bad job\s+ds@test\.org\s+done\s+2026-03-02T10:30:00\+00:00\s+4$", listing.stdout, re.M)
    rows = json.loads(cli("list", "--json", *site_args(syftbox)).stdout)
    assert {(r["job"], r["status"], r["returncode"]) for r in rows} == {("bad job", "done", 4), ("good job", "done", 0)}
    show = cli("show", "bad job", *site_args(syftbox))
    assert show.returncode == 0
    assert "Status:    done" in show.stdout and "Return code: 4" in show.stdout and "broken" in show.stdout
    share = cli("share", "good job", "--outputs", "--logs", *site_args(syftbox))
    assert share.returncode == 0 and "Shared outputs and logs of ds@test.org/good job" in share.stdout
    assert can(syftbox.resolve(), DS, good / "outputs" / "f.txt", "read")
    assert not can(syftbox.resolve(), DS, bad / "stdout.txt", "read")
    assert cli("version").stdout.strip() == f"syft-job {syft_job.__version__}"


def test_add_submitter_and_reset_commands(syftbox):
    result = cli("add-submitter", DS, *site_args(syftbox))
    assert result.returncode == 0
    folder = syftbox / OWNER / "app_data" / "job" / DS
    assert (folder / "syft.pub.yaml").is_file()
    runner = syft_job.create_runner(syftbox, OWNER)
    make_job(runner, "j", "true", approved=False)
    result = cli("reset", "--yes", *site_args(syftbox))
    assert result.returncode == 0 and "Deleted 1 jobs total" in result.stdout
    assert os.listdir(folder) == ["syft.pub.yaml"]


def test_reset_asks_on_a_terminal(syftbox):
    import pty
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "keep me", "true", approved=False)
    for answer, status in (("no", 1), ("yes", 0)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "syft_job", "reset", *site_args(syftbox)],
                                stdin=follower, stdout=follower, stderr=follower, env=cli_env())
        os.close(follower)
        seen = b""
        while b"Type 'yes' to confirm" not in seen:
            seen += os.read(leader, 1024)
        os.write(leader, answer.encode() + b"\n")
        assert proc.wait(timeout=30) == status
        os.close(leader)
        assert job.exists() == (answer == "no")


def test_sigterm_during_once_stops_the_job_and_leaves_it_approved(syftbox):
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "long", STOPPABLE_JOB)
    proc = subprocess.Popen([sys.executable, "-m", "syft_job", "once", *site_args(syftbox)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env())
    reader = LineReader(proc)
    try:
        wait_for(lambda: (job / "child.pid").exists() and (job / "child.pid").read_text().strip())
        pid, child = int((job / "pid").read_text()), int((job / "child.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
        reader.thread.join(10)
        assert "Interrupted" in reader.text and "Traceback" not in reader.text
        wait_for(lambda: not pid_alive(pid) and not pid_alive(child), 10, "the job to be stopped")
        assert (job / "approved").exists() and not (job / "done").exists()
    finally:
        proc.kill()


def test_run_command_stops_cleanly_on_sigint(syftbox):
    proc = subprocess.Popen([sys.executable, "-m", "syft_job", "run", "--poll-interval", "0.1", *site_args(syftbox)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env())
    reader = LineReader(proc)
    try:
        reader.wait_for("Press Ctrl+C to stop")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        reader.thread.join(10)
        assert "Traceback" not in reader.text and "stopped" in reader.text
    finally:
        proc.kill()


def test_demo_runs_on_its_own(tmp_path):
    folder = tmp_path / "demo"
    result = cli("demo", "--folder", str(folder), timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    job_dir = folder / "do@example.com" / "app_data" / "job" / "ds@example.com"
    assert (job_dir / "word count" / "outputs" / "word_count.txt").read_text().strip() == "9"
    assert (job_dir / "missing file" / "returncode.txt").read_text().strip() == "1"
    assert not (job_dir / "python hello" / "approved").exists()
    assert "[do@example.com][word count] Result written to outputs/word_count.txt" in out
    assert "read  word count/outputs/**" in out
    assert can(folder.resolve(), "ds@example.com", job_dir / "word count" / "outputs" / "word_count.txt", "read")
    again = cli("demo", "--folder", str(folder))
    assert again.returncode == 2 and "needs an empty folder" in again.stderr


def test_demo_in_a_temp_folder_by_default(tmp_path):
    result = cli("demo", env=cli_env(TMPDIR=str(tmp_path)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"Demo SyftBox folder: {tmp_path}" in result.stdout


# ---------------------------------------------------------------------------
# README: its quick start and its Python examples run as written
# ---------------------------------------------------------------------------

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
    assert "word count" in result.stdout and "Approved ds@example.com/python hello" in result.stdout


def test_readme_test_command_is_the_ci_command():
    command = next(l for l in README.splitlines() if l.startswith("python3 -m venv .venv && "))
    ci = (HERE / ".ci" / "run").read_text()
    assert "grep -m 1 -E '^python3 -m venv \\.venv && .*pytest' README.md" in ci
    assert command.endswith("-m pytest -q")


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks("Python API", "python")
    assert len(blocks) == 4
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "SyftBox").mkdir()
    for block in blocks:
        code = (block.replace("runner.run()", "pass")
                .replace("while True:", "for _ in range(1):")
                .replace("time.sleep(5)", "time.sleep(0)"))
        exec(compile(code, "README.md", "exec"), {})
    job = tmp_path / "SyftBox" / "do@example.com" / "app_data" / "job" / "ds@example.com" / "hi"
    assert (job / "outputs" / "hi.txt").read_text() == "hi\n"
    assert "Shared outputs and logs of ds@example.com/hi" in capsys.readouterr().out


def test_a_submitter_folder_not_named_like_an_email_does_not_break_the_poll(runner, capsys):
    folder = runner.job_dir / "not-an-email"
    folder.mkdir(parents=True)
    (folder / "syft.pub.yaml").write_text("rules:\n- pattern: '**'\n  access: {write: ['*']}\n")
    make_job(runner, "odd", "echo odd-ran", submitter="not-an-email")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
    assert "[do@test.org][odd] odd-ran" in capsys.readouterr().out


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


# ---------------------------------------------------------------------------
# Hardening: crashes, two runners, hostile submissions, secrets, limits, full disks
# ---------------------------------------------------------------------------


def claim_fields(job: Path) -> dict:
    fields: dict = {}
    for line in (job / syft_job.CLAIM_FILE).read_text().splitlines():
        fields.update(json.loads(line))
    return fields


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


CRASHING_JOB = """
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))
echo $n > {counter}
echo "run $n"
echo $n > outputs/run-$n.txt
if [ $n -eq 1 ]; then sleep 300; fi
echo finished
"""


def test_sigkill_mid_job_then_restart_stops_leftovers_and_runs_it_again(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER)
    job = make_job(runner, "crashy", CRASHING_JOB.format(counter=tmp_path / "count"))
    proc = start_runner_process(syftbox, "runner.run()")
    try:
        wait_for(lambda: (job / "stdout.txt").exists() and "run 1" in (job / "stdout.txt").read_text())
        wait_for(lambda: "pgid" in claim_fields(job), what="the process group in the claim")
        rows = json.loads(cli("list", "--json", *site_args(syftbox)).stdout)
        assert [r["status"] for r in rows] == ["running"]
        pgid = claim_fields(job)["pgid"]
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    assert syft_job._group_alive(pgid), "the job outlived the killed runner"
    rows = json.loads(cli("list", "--json", *site_args(syftbox)).stdout)
    assert [r["status"] for r in rows] == ["interrupted"]

    restarted = cli("once", *site_args(syftbox))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"🧹 Stopping processes left running by the interrupted run of {DS}/crashy" in restarted.stdout
    assert "attempt 2 of 3" in restarted.stdout
    assert not syft_job._group_alive(pgid)
    assert (job / "stdout.txt").read_text() == "run 2\nfinished\n"
    assert sorted(p.name for p in (job / "outputs").iterdir()) == ["run-2.txt"]
    assert (job / "returncode.txt").read_text() == "0\n" and (job / "done").exists()
    assert not (job / syft_job.CLAIM_FILE).exists()


def test_a_job_interrupted_three_times_is_finished_with_a_reason(runner, capsys):
    again = make_job(runner, "again", "echo ran\n")
    doomed = make_job(runner, "doomed", "echo never\n")
    for job, attempt in ((again, 2), (doomed, 3)):
        (job / syft_job.CLAIM_FILE).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": dead_pid(), "attempt": attempt}) + "\n")
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert "ds@test.org/again was interrupted (the runner stopped while it ran); attempt 3 of 3" in out
    assert (again / "stdout.txt").read_text() == "ran\n"
    assert (doomed / "returncode.txt").read_text() == "-1\n"
    assert "was interrupted 3 times (the runner was killed or the machine stopped while it ran); " \
           "it is not run again" in (doomed / "stderr.txt").read_text()
    assert "never" not in (doomed / "stdout.txt").read_text() if (doomed / "stdout.txt").exists() else True
    assert not list(runner.job_dir.glob(f"*/*/{syft_job.CLAIM_FILE}*"))


def test_a_planted_claim_cannot_make_the_runner_kill_other_processes(runner, capsys):
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # say, the owner's shell
    try:
        job = make_job(runner, "planted claim", "echo ran\n")
        (job / syft_job.CLAIM_FILE).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": dead_pid(), "attempt": 1, "pgid": bystander.pid}) + "\n")
        runner.process_approved_jobs()
        assert bystander.poll() is None, "a process outside any job was killed"
        assert "they could not be told apart from others, so they were left alone" in capsys.readouterr().out
        assert (job / "stdout.txt").read_text() == "ran\n"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_claim_of_a_live_runner_or_another_host_is_left_alone(runner, capsys):
    here = make_job(runner, "claimed here", "echo no\n")
    there = make_job(runner, "claimed there", "echo no\n")
    (here / syft_job.CLAIM_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": os.getppid(), "attempt": 1}) + "\n")
    (there / syft_job.CLAIM_FILE).write_text(json.dumps(
        {"host": "elsewhere.example", "pid": 4242, "attempt": 1, "claimed_at": "2026-01-01T00:00:00"}) + "\n")
    runner.process_approved_jobs()
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert not (here / "stdout.txt").exists() and not (there / "stdout.txt").exists()
    assert out.count("claimed it at") == 1  # said once, not at every poll
    assert f"a runner on elsewhere.example (pid 4242) claimed it at 2026-01-01T00:00:00; " \
           f"if that runner is gone, delete {there / syft_job.CLAIM_FILE}" in out
    assert [r["status"] for r in syft_job._job_rows(runner)] == ["running", "running"]
    with pytest.raises(syft_job.SyftJobError, match="stop it before a reset"):
        runner.reset_all_jobs()


def test_two_runner_processes_run_each_job_exactly_once(syftbox, tmp_path):
    runner = syft_job.create_runner(syftbox, OWNER)
    log = tmp_path / "ran.log"
    names = [f"job{i:02}" for i in range(30)]
    for name in names:
        script = f"echo {name} $PPID >> {log}\n"
        if name == "job00":  # holds the first runner until the other one has started a job
            script += f"for i in $(seq 1000); do [ $(wc -l < {log}) -ge 2 ] && break; sleep 0.02; done\n"
        make_job(runner, name, script)
    procs = [subprocess.Popen([sys.executable, "-m", "syft_job", "once", "--no-stream", *site_args(syftbox)],
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ran = [line.split() for line in log.read_text().splitlines()]
    assert sorted(name for name, _ in ran) == names  # each job exactly once
    assert {pid for _, pid in ran} == {str(p.pid) for p in procs}  # and both runners worked
    assert all((runner.job_dir / DS / n / "done").exists() for n in names)
    assert not list(runner.job_dir.glob(f"*/*/{syft_job.CLAIM_FILE}*"))


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
    # A job that turns its outputs/ into a link to the owner's folder while it runs.
    swapper = make_job(runner, "swapper", f"rm -rf outputs\nln -s {outside} outputs\n")
    # A job that turns returncode.txt (made while it starts) into a link to the owner's file.
    tamper = make_job(runner, "tamper", f"rm -f returncode.txt stdout.txt\nln -s {secret} returncode.txt\n"
                                        f"ln -s {secret} stdout.txt\nexit 3\n")

    runner.check_for_new_jobs()
    runner.process_approved_jobs(share_outputs_with_submitter=True)
    out = capsys.readouterr().out
    assert "config.yaml: is a symlink; not read" in (linked_config / "stderr.txt").read_text()
    assert "its run.sh is a symlink or not a file" in (linked_script / "stderr.txt").read_text()
    assert "its run.sh is a symlink or not a file" in (fifos / "stderr.txt").read_text()
    assert not (fifo_config / "stdout.txt").exists()
    assert "the outputs/ of job ds@test.org/swapper is not a folder (the job replaced it with a symlink " \
           "or a file?); nothing shared" in out
    assert (outside / "syft.pub.yaml").read_text() == "rules: []\n" and (outside / "keep.txt").exists()
    assert (swapper / "outputs").is_symlink() and (swapper / "done").exists()
    assert (tamper / "returncode.txt").read_text() == "3\n" and not (tamper / "returncode.txt").is_symlink()
    assert "swapper/" not in (runner.job_dir / DS / "syft.pub.yaml").read_text()  # nothing shared for it
    assert secret.read_text() == "0\n"
    rows = {r["job"]: r for r in syft_job._job_rows(runner)}
    assert "fifo config" not in rows
    assert rows["planted"]["returncode"] is None  # returncode.txt -> secret was not read
    shown = cli("show", "planted", *site_args(runner.config.syftbox_folder))
    assert "stdout.txt: is a symlink; not read" in shown.stdout and "Return code" not in shown.stdout
    (runner.job_dir / "linked@test.org").symlink_to(outside)
    with pytest.raises(JobError, match="a folder on the way is a symlink"):
        syft_job._atomic_write(runner.job_dir / "linked@test.org" / "keep.txt", b"overwritten")
    runner.reset_all_jobs()
    assert secret.read_text() == "0\n" and (outside / "keep.txt").read_text() == "keep"


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
    assert f"🚀 Executing job: {long_name}" in out
    assert (runner.job_dir / DS / long_name / "stdout.txt").read_text() == "ok\n"
    listing = cli("list", *site_args(runner.config.syftbox_folder)).stdout
    assert "\x1b" not in listing and "evil\\n✅ Job approved" in listing
    for bad in ("..", "../../etc", "a/b"):
        with pytest.raises(JobError):
            runner.approve_job(bad)
        with pytest.raises(JobError):
            runner.share_job_results(bad)


def test_hostile_configs_are_refused_without_reading_them_whole(runner, capsys):
    huge = make_job(runner, "huge", "echo never\n")
    with open(huge / "config.yaml", "wb") as f:
        f.truncate(100 * 1024 * 1024)  # 100 MB, sparse: a reader that reads it whole would show
    deep = make_job(runner, "deep", "echo never\n", config="a: " + "[" * 5000 + "]" * 5000 + "\n")
    deep_block = make_job(runner, "deep block", "echo never\n",
                          config="".join(" " * i + "k:\n" for i in range(1200)))
    binary = make_job(runner, "binary", "echo never\n", config="")
    (binary / "config.yaml").write_bytes(os.urandom(4096).replace(b"\n", b"") + b"\xff")
    runner.check_for_new_jobs()
    runner.process_approved_jobs()
    out = capsys.readouterr().out
    assert "config.yaml: is larger than 1 MB; not read" in (huge / "stderr.txt").read_text()
    assert "config.yaml, line 1: nested deeper than 100 levels" in (deep / "stderr.txt").read_text()
    assert "config.yaml, line 101: nested deeper than 100 levels" in (deep_block / "stderr.txt").read_text()
    assert "config.yaml: is not UTF-8 text" in (binary / "stderr.txt").read_text()
    assert "Traceback" not in out and "RecursionError" not in out
    assert out.count("📋 Found 4 job(s)") == 1


def test_approval_digest_stops_a_job_changed_after_approval(runner, capsys):
    job = make_job(runner, "reviewed", "echo reviewed\n", approved=False)
    (job / "code").mkdir()
    (job / "code" / "helper.py").write_text("x = 1\n")
    assert runner.approve_job("reviewed") == job
    record = json.loads((job / "approved").read_text())
    assert record["approved_by"] == OWNER
    assert sorted(record["files"]) == ["code/helper.py", "config.yaml", "run.sh"]

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

    result = cli("approve", "reviewed", *site_args(runner.config.syftbox_folder))
    assert "Approved again ds@test.org/reviewed" in result.stdout
    runner.process_approved_jobs()
    assert (job / "stdout.txt").read_text() == "evil\n"


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
               "SYFT_IS_IN_JOB", "PYTHONUNBUFFERED", "PWD", "SHLVL", "_", "OLDPWD"}
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
    with pytest.raises(ConfigError, match="not an environment variable name"):
        syft_job.create_runner(syftbox, OWNER, env_passthrough=["A=B"])


def test_log_size_limit_cuts_the_log_and_stops_the_job(runner, capsys):
    job = make_job(runner, "chatty", "seq 1 100000\nsleep 300\n")
    limited = syft_job.create_runner(runner.config.syftbox_folder, OWNER, max_log_bytes=1001)
    limited.process_approved_jobs(timeout=120)
    out = capsys.readouterr().out
    log = (job / "stdout.txt").read_bytes()
    kept, last = log[:1001], log[1001:]
    assert kept == b"".join(b"%d\n" % i for i in range(1, 400))[:1001]
    assert last == b"\n--- LOG CUT: it reached the limit of 1001 bytes (max_log_bytes); the job was stopped ---\n"
    assert (job / "returncode.txt").read_text() == "-1\n"
    assert "its stdout.txt reached the limit of 1001 bytes (max_log_bytes), so it was stopped" in (
        job / "stderr.txt").read_text()
    assert "❌ Job chatty failed: its stdout.txt reached the limit" in out


def test_cpu_and_memory_limits_finish_the_job_with_the_reason(runner, syftbox, capsys):
    spin = make_job(runner, "spin", "while :; do :; done\n")
    hog = make_job(runner, "hog", f"'{sys.executable}' -c 'b = bytearray(2 * 1024 ** 3)'\n")
    limited = syft_job.create_runner(syftbox, OWNER, max_cpu_seconds=1, max_memory_mb=500)
    limited.process_approved_jobs(timeout=60)
    out = capsys.readouterr().out
    assert int((spin / "returncode.txt").read_text()) != 0
    assert "it used up its CPU time limit of 1 seconds (max_cpu_seconds)" in (spin / "stderr.txt").read_text()
    assert int((hog / "returncode.txt").read_text()) != 0
    assert "MemoryError" in (hog / "stderr.txt").read_text()
    assert "it ran out of memory under its limit of 500 MB (max_memory_mb)" in (hog / "stderr.txt").read_text()
    assert "❌ Job spin failed: it used up its CPU time limit" in out
    bad = cli("once", "--max-cpu", "-1", *site_args(syftbox))
    assert bad.returncode == 2 and "'-1' is not a positive number" in bad.stderr
    with pytest.raises(ConfigError, match="max_log_bytes must be a positive number"):
        syft_job.create_runner(syftbox, OWNER, max_log_bytes=0)


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
runner = syft_job.create_runner(folder, owner)

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
    "full_claim": (full / syft_job.CLAIM_FILE).exists(),
    "fine": (fine / "stdout.txt").read_text(),
    "readonly_files": sorted(p.name for p in readonly.iterdir()),
}))
"""


def test_a_full_disk_or_read_only_job_folder_stops_that_job_and_the_runner_goes_on(syftbox):
    prefix = _mount_namespace()
    if prefix is None:
        pytest.skip("needs a private mount namespace (unshare) to make a small or read-only file system")
    result = subprocess.run(prefix + [sys.executable, "-c", FULL_DISK_DRIVER, str(syftbox), OWNER, DS],
                            capture_output=True, text=True, timeout=120, env=cli_env())
    assert result.returncode == 0, result.stdout + result.stderr
    out, facts = result.stdout.rsplit("\n", 2)[0], json.loads(result.stdout.splitlines()[-1])
    assert "❌ job ds@test.org/fills the disk was stopped: cannot write its stdout.txt: No space left on device" in out
    assert "Cannot mark job ds@test.org/fills the disk as done either" in out
    assert 0 < facts["full_stdout_size"] <= 1024 * 1024
    assert not facts["full_done"] and not facts["full_claim"]
    assert facts["fine"] == "fine\n"
    assert "⏸️ Job ds@test.org/read only is not run: cannot claim it" in out and "Read-only file system" in out
    assert out.count("read only is not run") == 1
    assert facts["readonly_files"] == ["approved", "config.yaml", "run.sh"]
    assert "Traceback" not in result.stdout + result.stderr
