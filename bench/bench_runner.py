"""Benchmarks of syft_job against the reference runner, measured side by side in one run.

Each measurement is a fresh Python process that builds a runner, times one call and
reports. With ``--reference-python``, the reference (PyPI ``syft-job==0.1.24``) runs
the same cases on its own copy of the same jobs, alternating with ours, run after run.
The table gives medians, the ratio to the reference, the physical floor where there
is one (bash alone, after ``setpriv`` to nobody as root; bwrap, setpriv and bash; ``seq`` writing to a
file), and whether each target is met.

    python bench/bench_runner.py                                   # ours and the floors
    python bench/bench_runner.py --reference-python ~/.cache/syft-job-ref/bin/python
    python bench/bench_runner.py --case noop_200 --runs 5          # one case

This script never installs anything. Make the reference's environment once with:

    python3 -m venv ~/.cache/syft-job-ref
    ~/.cache/syft-job-ref/bin/pip install syft-job==0.1.24

Exits 1 if a target is missed (targets that need the reference count only with it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
OWNER = "do@bench.org"
DS = "ds@bench.org"
MILLION = "seq 1 1000000\n"
PARTIAL = "printf 'progress 50%%'\ndate +%s.%N > outputs/printed_at\nsleep 3\necho\n"
GRANDCHILD = "setsid sleep 10 &\necho $! > outputs/escaped.pid\nsleep 10\n"

# What a measurement runs, in the runner's own Python: build a runner, time the call
# the case asks for, report JSON on stderr (stdout is the runner's console).
PROGRAM = textwrap.dedent("""
    import json, resource, statistics, sys, time
    from syft_job import create_runner
    folder, email, call, stream, timeout, settings = sys.argv[1:7]
    runner = create_runner(folder, email, poll_interval=5, **json.loads(settings))

    def poll():
        runner.check_for_new_jobs()
        runner.process_approved_jobs(stream_output=stream == "1", timeout=int(timeout))

    report = {}
    started = time.perf_counter()
    if call == "poll":
        poll()
        report["first"] = time.perf_counter() - started
        time.sleep(1.1)  # as in run(), polls come seconds apart, not right after the jobs were made
        seconds = []
        for _ in range(7):
            started = time.perf_counter()
            poll()
            seconds.append(time.perf_counter() - started)
        report["seconds"] = statistics.median(seconds)
    elif call == "show":
        report["files"] = len(runner.describe_job("results")["results"])
        report["seconds"] = time.perf_counter() - started
    else:
        runner.process_approved_jobs(stream_output=stream == "1", timeout=int(timeout))
        report["seconds"] = time.perf_counter() - started
    sys.stdout.flush()
    try:  # this process's own peak: ru_maxrss also keeps what the bench held when it forked this one
        with open("/proc/self/status") as status:
            report["peak_mb"] = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report["peak_mb"] = peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024
    sys.stderr.write(json.dumps(report) + "\\n")
""")


@dataclasses.dataclass
class Runner:
    label: str
    python: str
    pythonpath: str | None  # ours: the repository; the reference: its own install


@dataclasses.dataclass
class Measurement:
    value: float
    extra: dict


def make_job(job_dir: Path, name: str, script: str, done: bool = False) -> Path:
    folder = job_dir / DS / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {name}\nsubmitted_by: {DS}\n")
    (folder / "run.sh").write_text(script)
    (folder / "approved").touch()
    if done:
        (folder / "done").touch()
    return folder


class Site:
    """A SyftBox folder of its own for one measurement."""

    count = 0

    def __init__(self, root: Path) -> None:
        Site.count += 1
        self.folder = root / f"site-{Site.count}"
        self.job_dir = self.folder / OWNER / "app_data" / "job"
        self.job_dir.mkdir(parents=True)


def run_program(runner: Runner, site: Site, call: str = "process", stream: bool = False, timeout: int = 300,
                on_console: Callable[[bytes, float], None] | None = None, **settings: object) -> dict:
    """Run PROGRAM for ``runner`` on ``site``; the runner's console is read as it comes
    (and passed to ``on_console`` with the time it arrived).

    :param settings: SyftJobRunner keywords (ours only; default: isolation "none").
    """
    os.sync()  # the jobs just made are on disk: their writeback does not slow the runner down
    env = {k: v for k, v in os.environ.items() if k not in ("SYFT_DEFAULT_JOB_TIMEOUT_SECONDS", "PYTHONPATH")}
    env["XDG_STATE_HOME"] = str(site.folder.parent / "state")  # each measurement starts with no runner state
    if runner.pythonpath:
        env["PYTHONPATH"] = runner.pythonpath
        settings = {"isolation": "none", **settings}
    proc = subprocess.Popen([runner.python, "-c", PROGRAM, str(site.folder), OWNER, call, "1" if stream else "0",
                             str(timeout), json.dumps(settings)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(site.folder))
    errors = []
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, "out")
        selector.register(proc.stderr, selectors.EVENT_READ, "err")
        while selector.get_map():
            for key, _ in selector.select(600):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.data == "err":
                    errors.append(chunk)
                elif on_console is not None:
                    on_console(chunk, time.time())
    proc.wait()
    stderr = b"".join(errors).decode(errors="replace")
    reports = [line for line in stderr.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not reports:
        raise RuntimeError(f"{runner.label}: measurement failed ({proc.returncode}): {stderr[-2000:]}")
    return json.loads(reports[-1])


def bash_alone(job: Path, repeat: int, stdout_file: bool, prefix: tuple[str, ...] = ()) -> float:
    """Seconds per run of the job's run.sh started directly (after ``prefix``): the floor."""
    os.sync()
    started = time.perf_counter()
    for _ in range(repeat):
        with open(job / "stdout.txt", "wb") if stdout_file else open(os.devnull, "wb") as out:
            subprocess.run([*prefix, "bash", "run.sh"], cwd=job, stdout=out, check=True)
    return (time.perf_counter() - started) / repeat


# -- the cases ---------------------------------------------------------------------
# Each measures one runner once; floor() measures the physical floor once.


def stream_1m(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    make_job(site.job_dir, "million", MILLION)
    return Measurement(run_program(runner, site, stream=True, on_console=lambda chunk, at: None)["seconds"], {})


def captured_1m(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    make_job(site.job_dir, "million", MILLION)
    return Measurement(run_program(runner, site)["seconds"], {})


def floor_1m(root: Path) -> float:
    site = Site(root)
    return bash_alone(make_job(site.job_dir, "million", MILLION), 3, stdout_file=True)


def noop_200(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    for i in range(200):
        make_job(site.job_dir, f"noop {i:03d}", "true\n")
    return Measurement(run_program(runner, site)["seconds"] / 200, {})


def floor_noop(root: Path) -> float:
    """bash alone, after the switch to the account a root owner's jobs run as (setpriv): the floor."""
    sys.path.insert(0, str(REPO))
    import syft_job
    site = Site(root)
    prefix = tuple(syft_job._switch_to(syft_job._job_account(None)))
    return bash_alone(make_job(site.job_dir, "noop", "true\n"), 200, stdout_file=False, prefix=prefix)


def noop_200_sandbox(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    for i in range(200):
        make_job(site.job_dir, f"noop {i:03d}", "true\n")
    return Measurement(run_program(runner, site, isolation="sandbox")["seconds"] / 200, {})


def floor_noop_sandbox(root: Path) -> float:
    """bwrap as the runner calls it, the switch to the jobs' account inside (as root), and
    bash alone: the sandbox's floor."""
    sys.path.insert(0, str(REPO))
    import syft_job
    site = Site(root)
    job = make_job(site.job_dir, "noop", "true\n")
    argv = syft_job._sandbox_argv(str(job), site.folder, (), False, syft_job._job_account(None), None)  # no network, the default
    return bash_alone(job, 200, stdout_file=False, prefix=tuple(argv))


def sleep_32x8(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    for i in range(32):
        make_job(site.job_dir, f"sleep {i:02d}", "sleep 0.5\n")
    return Measurement(run_program(runner, site, isolation="auto", max_concurrent_jobs=8)["seconds"], {})


def noop_400x4(runner: Runner, root: Path) -> Measurement:
    """Throughput of 4 jobs at once over 1 at a time, on 400 no-op jobs each."""
    seconds = {}
    for jobs in (1, 4):
        site = Site(root)
        for i in range(400):
            make_job(site.job_dir, f"noop {i:03d}", "true\n")
        seconds[jobs] = run_program(runner, site, isolation="auto", max_concurrent_jobs=jobs)["seconds"]
    return Measurement(seconds[1] / seconds[4], {"1 at once": seconds[1] / 400 * 1000, "4 at once": seconds[4] / 400 * 1000})


def mem_8x50mb(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    for i in range(8):
        make_job(site.job_dir, f"big {i}", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 50000000\n")
    return Measurement(run_program(runner, site, isolation="auto", max_concurrent_jobs=8)["peak_mb"] / 1.048576, {})


def poll_10k(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    for i in range(10_000):
        make_job(site.job_dir, f"done {i:05d}", "true\n", done=True)
    report = run_program(runner, site, call="poll")
    return Measurement(report["seconds"], {"first poll": report["first"]})


def mem_200mb(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    make_job(site.job_dir, "big", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 200000000\n")
    return Measurement(run_program(runner, site)["peak_mb"], {})


def floor_mem(root: Path) -> float:
    """The same measurement with ours on a job with no output: the interpreter's own."""
    site = Site(root)
    make_job(site.job_dir, "small", "true\n")
    return run_program(OURS, site)["peak_mb"]


def partial_line(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    job = make_job(site.job_dir, "progress", PARTIAL)
    seen: list[float] = []
    console = bytearray()

    def on_console(chunk: bytes, at: float) -> None:
        console.extend(chunk)
        if not seen and b"progress 50%" in console:
            seen.append(at)

    run_program(runner, site, stream=True, on_console=on_console)
    printed_at = float((job / "outputs" / "printed_at").read_text())
    return Measurement(seen[0] - printed_at if seen else float("inf"), {})


def timeout_grandchild(runner: Runner, root: Path) -> Measurement:
    site = Site(root)
    job = make_job(site.job_dir, "holder", GRANDCHILD)
    try:
        seconds = run_program(runner, site, stream=True, timeout=1)["seconds"]
    finally:
        try:
            os.kill(int((job / "outputs" / "escaped.pid").read_text()), 9)
        except (OSError, ValueError):
            pass
    return Measurement(seconds, {})


@dataclasses.dataclass
class Case:
    name: str
    what: str
    unit: str
    measure: Callable[[Runner, Path], Measurement]
    floor: Callable[[Path], float] | None
    target: str
    met: Callable[[float, float | None, float | None], bool | None]  # (ours, reference, floor)
    runs: int = 0  # 0: --runs; -1: --runs, for this runner only (the reference cannot do it)


def faster(times: float) -> Callable[[float, float | None, float | None], bool | None]:
    return lambda ours, ref, floor: None if ref is None else ref / ours >= times


def finished_with_results(root: Path) -> tuple[Site, Path]:
    """A finished job whose outputs/ holds 10,000 files, 1 GB in all: text and binary."""
    site = Site(root)
    job = make_job(site.job_dir, "results", "true\n", done=True)
    outputs = job / "outputs"
    block = os.urandom(1 << 16)
    for i in range(10_000):
        folder = outputs / f"part{i // 1000}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 2:
            data = (b"".join(b"%d,%d\n" % (i, k) for k in range(12_000)))[:100_000]
            (folder / f"table{i}.txt").write_bytes(data)
        else:
            (folder / f"blob{i}.bin").write_bytes((block * 2)[:100_000])
    return site, job


def show_results(runner: Runner, root: Path) -> Measurement:
    site, _ = finished_with_results(root)
    report = run_program(runner, site, call="show")
    assert report["files"] == 10_000, report  # the outputs (the job never ran: no logs)
    return Measurement(report["seconds"], {})


def floor_show(root: Path) -> float:
    """sha256sum over the same 10,000 files: the floor of a listing that hashes them."""
    outputs = finished_with_results(root)[1] / "outputs"
    os.sync()
    started = time.perf_counter()
    subprocess.run(f"find {outputs} -type f -print0 | xargs -0 sha256sum > /dev/null", shell=True, check=True)
    return time.perf_counter() - started


class RunningRunner:
    """``syft-job run --poll-interval 60`` of ours on ``site``, its console lines noted
    with the time each arrived."""

    def __init__(self, site: Site, *flags: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=str(REPO), XDG_STATE_HOME=str(site.folder.parent / "state"))
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "syft_job", "run", "--poll-interval", "60",
                                      "--isolation", "none", "--no-stream", "--syftbox-folder", str(site.folder),
                                      "--email", OWNER, *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace")))

    def wait_for(self, text: str, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            time.sleep(0.005)
        raise RuntimeError(f"the runner never printed {text!r}: {''.join(l for _, l in self.lines)[-2000:]}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def approval_latency(runner: Runner, root: Path) -> Measurement:
    """From an approval (the legacy marker written) to its job's start, the runner polling
    every 60 s: the median of 20, one after the other."""
    site = Site(root)
    running = RunningRunner(site)
    delays = []
    try:
        running.wait_for("Press Ctrl+C")
        for i in range(20):
            folder = make_job(site.job_dir, f"job {i:02d}", "true\n")
            (folder / "approved").unlink()
            running.wait_for(f"NEW JOB DETECTED: {DS}/job {i:02d}")
            approved_at = time.monotonic()
            (folder / "approved").touch()
            delays.append(running.wait_for(f"Executing job: job {i:02d}") - approved_at)
    finally:
        running.stop()
    return Measurement(statistics.median(delays), {"slowest": max(delays)})


def idle_100k(runner: Runner, root: Path) -> Measurement:
    """The CPU an idle ``run`` uses over 60 s, over 100,000 finished jobs of 10 submitters."""
    site = Site(root)
    for i in range(100_000):
        folder = site.job_dir / f"ds{i % 10}@bench.org" / f"done {i:06d}"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(f"name: done {i:06d}\n")
        (folder / "run.sh").write_text("true\n")
        (folder / "done").touch()
    os.sync()
    running = RunningRunner(site)
    try:
        running.wait_for("Found 100000 existing job(s)")
        time.sleep(1)
        before = running.cpu_seconds()
        time.sleep(60)
        used = running.cpu_seconds() - before
    finally:
        running.stop()
    return Measurement(used / 60, {})


PY_JOB = "import alpha, gamma, delta\nprint(alpha.VERSION, gamma.VERSION, delta.VERSION)\n"


def python_site(root: Path, names: dict[str, list[str]], python: str = "3.12") -> tuple[Site, object]:
    """Python jobs made by JobClient.submit_python_job (approved; asking for ``python``),
    and a local PEP 503 index with their three dependencies (and one of theirs), served
    on 127.0.0.1."""
    sys.path[:0] = [str(REPO)]
    import syft_job
    from test_syft_job import PackageIndex, write_wheel
    index = PackageIndex(root / "index")
    for name, requires in (("alpha", ["beta"]), ("beta", []), ("gamma", []), ("delta", [])):
        index.add(write_wheel, name, "1.0", requires)
    site = Site(root)
    (site.folder / DS).mkdir()
    client = syft_job.JobClient(syft_job.SyftJobConfig.from_syftbox_folder(site.folder, DS))
    code = root / "main.py"
    code.write_text(PY_JOB)
    for name, dependencies in names.items():
        job = client.submit_python_job(OWNER, code if dependencies else root / "plain.py", job_name=name,
                                       dependencies=dependencies, base_packages=[])
        (job / "run.sh").write_text((job / "run.sh").read_text().replace("--python 3.12", f"--python {python}"))
    runner = syft_job.create_runner(site.folder, OWNER, console=False, work_dir=root / "approver")
    for name in names:
        runner.approve_job(name)
    return site, index


def syft_job_rows(site: Site) -> list[dict]:
    import syft_job
    runner = syft_job.create_runner(site.folder, OWNER, console=False, work_dir=site.folder.parent / "state" / "syft-job")
    return runner.list_jobs()


def durations(site: Site) -> dict[str, float]:
    rows = syft_job_rows(site)
    failed = [row for row in rows if row["status"] != "done"]
    if failed:
        raise RuntimeError(f"jobs did not succeed: {failed[:2]}")
    return {row["name"]: row["duration_s"] for row in rows}


def python_10(runner: Runner, root: Path) -> Measurement:
    """The 2nd to 10th of 10 sandboxed Python jobs with the same 3 dependencies, each over
    the same job with none (the median of 3): what installing from the cache costs."""
    (root / "plain.py").write_text("print('no dependencies')\n")
    names = {**{f"plain {i}": [] for i in range(3)}, **{f"py {i:02d}": ["alpha", "gamma", "delta"] for i in range(10)}}
    site, index = python_site(root, names)
    env = {"UV_DEFAULT_INDEX": index.url}
    os.environ.update(env)
    run_program(runner, site, isolation="sandbox", timeout=300)
    index.server.shutdown()
    seconds = durations(site)
    plain = statistics.median(seconds[f"plain {i}"] for i in range(3))
    later = [seconds[f"py {i:02d}"] - plain for i in range(1, 10)]
    return Measurement(max(later), {"first_over_plain": seconds["py 00"] - plain,
                                    "median_later_over_plain": statistics.median(later)})


def python_first(runner: Runner, root: Path) -> Measurement:
    """A first Python job (3 dependencies, empty caches) in the sandbox, less the same job
    without it (the job's own uv, with an empty cache of its own). As root, jobs run as
    an account of their own: both use the system's Python and a uv that account can run."""
    python = subprocess.run(["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    (root / "bin").mkdir()
    subprocess.run(["cp", shutil.which("uv"), str(root / "bin" / "uv")], check=True)
    saved = dict(os.environ)
    times = {}
    for isolation in ("none", "sandbox"):
        site, index = python_site(root / isolation, {"first": ["alpha", "gamma", "delta"]}, python)
        os.environ.update(UV_DEFAULT_INDEX=index.url, UV_CACHE_DIR=str(root / isolation / "uv-cache"),
                          PATH=f"{root / 'bin'}:/usr/bin:/bin")
        os.makedirs(os.environ["UV_CACHE_DIR"], mode=0o777)
        os.chmod(os.environ["UV_CACHE_DIR"], 0o777)
        run_program(runner, site, isolation=isolation, timeout=300)
        index.server.shutdown()
        row = [r for r in syft_job_rows(site) if r["name"] == "first"][0]
        if row["status"] != "done":
            raise RuntimeError(f"python_first ({isolation}): the job did not succeed: {row}")
        times[isolation] = row["duration_s"]
        os.environ.clear()
        os.environ.update(saved)
    return Measurement(times["sandbox"] - times["none"], {"sandbox_s": times["sandbox"], "none_s": times["none"]})


CASES = [
    Case("noop_200", "200 approved no-op jobs, captured", "ms/job", noop_200, floor_noop,
         "<= floor + 5 ms, >= 50x faster",
         lambda ours, ref, floor: ours - floor <= 5 and (ref is None or ref / ours >= 50)),
    Case("noop_sandbox", "200 approved no-op jobs, each in the sandbox", "ms/job", noop_200_sandbox, floor_noop_sandbox,
         "<= floor + 5 ms", lambda ours, ref, floor: ours - floor <= 5, runs=-1),
    Case("sleep_32x8", "32 jobs of sleep 0.5, 8 at once (ideal 2.0 s)", "s", sleep_32x8, None,
         "<= 2.6 s", lambda ours, ref, floor: ours <= 2.6, runs=-1),
    Case("noop_400x4", "400 no-op jobs: throughput of 4 at once over 1 at once", "x", noop_400x4, None,
         ">= 1.3x", lambda ours, ref, floor: ours >= 1.3, runs=-1),
    Case("mem_8x50mb", "peak memory, 8 jobs at once each printing 50 MB, captured", "MiB", mem_8x50mb, None,
         "<= 60 MiB", lambda ours, ref, floor: ours <= 60, runs=-1),
    Case("stream_1m", "1,000,000 lines, streamed to the console", "s", stream_1m, floor_1m,
         ">= 20x faster", faster(20)),
    Case("captured_1m", "1,000,000 lines, captured", "s", captured_1m, floor_1m,
         "no slower", lambda ours, ref, floor: None if ref is None else ours <= ref),
    Case("poll_10k", "a poll (check + process) of a running runner over 10,000 done jobs", "ms", poll_10k, None,
         "<= 50 ms, >= 10x faster", lambda ours, ref, floor: ours <= 50 and (ref is None or ref / ours >= 10)),
    Case("mem_200mb", "peak memory, 200 MB of output captured", "MB", mem_200mb, floor_mem,
         "< 40 MB", lambda ours, ref, floor: ours < 40, runs=1),
    Case("partial_line", "a line without newline reaches the console", "s", partial_line, None,
         "<= 0.5 s", lambda ours, ref, floor: ours <= 0.5),
    Case("timeout", "1 s timeout, a grandchild holds the pipes", "s", timeout_grandchild, None,
         "<= timeout + 2 s", lambda ours, ref, floor: ours <= 3.0, runs=1),
    Case("show_results", "show of a job with 10,000 result files, 1 GB (checked, hashed)", "s", show_results,
         floor_show, "<= 2 x floor (sha256sum)", lambda ours, ref, floor: ours <= 2 * floor, runs=-1),
    Case("approve_start", "approval to start, run polling every 60 s (median of 20)", "s", approval_latency, None,
         "<= 0.3 s", lambda ours, ref, floor: ours <= 0.3, runs=-1),
    Case("idle_100k", "CPU of an idle run over 100,000 finished jobs, over 60 s", "%", idle_100k, None,
         "< 1% of a CPU", lambda ours, ref, floor: ours < 1, runs=1),
    Case("python_10", "10 sandboxed Python jobs, same 3 deps: the worst of 2nd-10th over no deps", "s", python_10,
         None, "<= 1.5 s", lambda ours, ref, floor: ours <= 1.5, runs=-1),
    Case("python_first", "a first Python job (3 deps, empty caches): sandbox less none", "s", python_first, None,
         "measured, no target", lambda ours, ref, floor: True, runs=-1),
]
SCALE = {"ms/job": 1000, "ms": 1000, "%": 100}  # cases report seconds; these show milliseconds
OURS = Runner("ours", sys.executable, str(REPO))


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return "never"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", metavar="PATH",
                        help="a Python with syft-job==0.1.24 installed (see the module docstring)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case per runner (default: 3)")
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES], help="only this case")
    parser.add_argument("--dir", metavar="PATH", help="where to make the SyftBox folders (default: the temp folder)")
    args = parser.parse_args()
    runners = [OURS]
    if args.reference_python:
        runners.append(Runner("reference", args.reference_python, None))
    rows = []
    with tempfile.TemporaryDirectory(prefix="syft-job-bench-", dir=args.dir) as tmp:
        os.chmod(tmp, 0o711)  # a root runner's jobs run as nobody, who goes through it to their copies
        # Each runner is measured as installed, from its bytecode, compiled here once: where
        # PYTHONDONTWRITEBYTECODE is set, every measurement would otherwise compile the
        # module again (13 MB more peak memory for ours).
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "bytecode")
        for runner in runners:
            subprocess.run([runner.python, "-c", "import syft_job"], check=True,
                           env={**os.environ, **({"PYTHONPATH": runner.pythonpath} if runner.pythonpath else {})})
        for case in CASES:
            if args.case and case.name not in args.case:
                continue
            runs = case.runs if case.runs > 0 else args.runs
            case_runners = [OURS] if case.runs < 0 else runners
            print(f"{case.name}: {case.what} ({runs} run(s) each) ...", flush=True)
            values: dict[str, list[float]] = {r.label: [] for r in case_runners}
            extras: dict[str, list[dict]] = {r.label: [] for r in case_runners}
            for _ in range(runs):
                for runner in case_runners:  # alternating: ours, reference, ours, ...
                    case_root = Path(tempfile.mkdtemp(dir=tmp))
                    os.chmod(case_root, 0o711)
                    measurement = case.measure(runner, case_root)
                    values[runner.label].append(measurement.value)
                    extras[runner.label].append(measurement.extra)
            scale = SCALE.get(case.unit, 1)
            ours = statistics.median(values["ours"]) * scale
            ref = statistics.median(values["reference"]) * scale if "reference" in values else None
            floor_root = Path(tempfile.mkdtemp(dir=tmp))
            os.chmod(floor_root, 0o711)
            floor = case.floor(floor_root) * scale if case.floor else None
            met = case.met(ours, ref, floor)
            rows.append((case, ours, ref, floor, met))
            for label, runs_extra in extras.items():
                for key in sorted({k for e in runs_extra for k in e}):
                    median = statistics.median(e[key] for e in runs_extra) * (scale if case.unit != "x" else 1)
                    print(f"  ({label}: {key} {fmt(median)} {case.unit if case.unit != 'x' else 'ms/job'})")
    print()
    header = f"{'case':<13} {'unit':<7} {'ours':>8} {'reference':>10} {'ref/ours':>9} {'floor':>8}  target"
    print(header)
    print("-" * (len(header) + 24))
    for case, ours, ref, floor, met in rows:
        ratio = f"{ref / ours:.1f}x" if ref is not None and ours > 0 and ref != float("inf") else "-"
        verdict = {True: "met", False: "MISSED", None: "needs the reference"}[met]
        print(f"{case.name:<13} {case.unit:<7} {fmt(ours):>8} {fmt(ref):>10} {ratio:>9} {fmt(floor):>8}  "
              f"{case.target}: {verdict}")
    if not args.reference_python:
        print("(run with --reference-python to measure the reference; see --help)")
    return 1 if any(met is False for *_, met in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
