"""Benchmarks of the runner, as ratios measured in one run.

Each case runs in a fresh Python process, once with this syft_job and, when it can be
installed, once with the reference runner (PyPI syft-job==0.1.24, installed into a
cache venv on first use), on the same jobs. A baseline gives the cost of the work
itself (bash started directly, output to a file) so the runner's own cost shows.

    python3 bench/bench_runner.py                 # ours, the reference, the baselines
    python3 bench/bench_runner.py --no-reference  # ours and the baselines only

Cases (the reference's defects in SPEC.md):
  stream_1m   a job prints 1,000,000 lines, streamed to the console (to a file here)
  noop_200    200 approved jobs that do nothing, per job
  poll_10k    one check + process over 10,000 finished jobs
  mem_200mb   200 MB of output in captured mode: peak memory of the runner process
  timeout     a 1 s timeout, streamed, while a grandchild in another session holds
              the pipes (the reference's captured mode returns at once, but never
              finishes the job: it re-runs on every poll)

Exits 1 if ours is not better than the reference in a case (or, without the
reference, not better than the reference's figures in SPEC.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWNER = "do@bench.org"
DS = "ds@bench.org"
REFERENCE = "syft-job==0.1.24"
REFERENCE_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "syft-job-bench" / "ref-venv"
# SPEC.md: the reference measured on this kind of machine.
SPEC_FIGURES = {"stream_1m": 9.1, "noop_200": 0.255, "poll_10k": 0.69, "mem_200mb": 627_000, "timeout": None}

# The program each measurement runs: build a runner, time one call, print JSON.
PROGRAM = textwrap.dedent("""
    import json, re, sys, time
    from syft_job import create_runner
    folder, email, call, stream, timeout = sys.argv[1:6]
    runner = create_runner(folder, email, poll_interval=5)
    started = time.perf_counter()
    if call == "poll":
        runner.check_for_new_jobs()
    runner.process_approved_jobs(stream_output=stream == "1", timeout=int(timeout))
    seconds = time.perf_counter() - started
    with open("/proc/self/status") as f:
        peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1))
    sys.stderr.write(json.dumps({"seconds": seconds, "peak_kb": peak_kb}) + "\\n")
""")


def make_job(job_dir: Path, name: str, script: str, approved: bool = True, done: bool = False) -> Path:
    folder = job_dir / DS / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {name}\nsubmitted_by: {DS}\n")
    (folder / "run.sh").write_text(script)
    if approved:
        (folder / "approved").touch()
    if done:
        (folder / "done").touch()
    return folder


def fresh_site(root: Path, tag: str) -> tuple[Path, Path]:
    site = root / tag
    job_dir = site / OWNER / "app_data" / "job"
    job_dir.mkdir(parents=True)
    return site, job_dir


def measure(python: str, pythonpath: str | None, site: Path, call: str = "process",
            stream: bool = False, timeout: int = 300, deadline: float = 600) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SYFT_DEFAULT_JOB_TIMEOUT_SECONDS"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.run([python, "-c", PROGRAM, str(site), OWNER, call, "1" if stream else "0", str(timeout)],
                              stdout=devnull, stderr=subprocess.PIPE, env=env, timeout=deadline, cwd=str(site))
    lines = [l for l in proc.stderr.decode(errors="replace").splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measurement failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(lines[-1])


def reference_python(install: bool) -> str | None:
    python = REFERENCE_VENV / "bin" / "python"
    if python.exists():
        return str(python)
    if not install:
        return None
    print(f"installing the reference ({REFERENCE}) into {REFERENCE_VENV} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", REFERENCE], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"  could not install the reference: {exc}; comparing with SPEC.md's figures")
        shutil.rmtree(REFERENCE_VENV, ignore_errors=True)
        return None
    return str(python)


def each_runner(root: Path, runners: dict, tag: str, add_jobs, key: str = "seconds", **options) -> dict:
    """Measure every runner on its own copy of the same jobs: ``{label: figure}``."""
    result = {}
    for label, (python, path) in runners.items():
        site, job_dir = fresh_site(root, f"{tag}-{label}")
        add_jobs(job_dir)
        result[label] = measure(python, path, site, **options)[key]
    return result


# -- the cases: each returns {"ours": x, "reference": y (if run), "baseline": z} --------


def case_stream_1m(root: Path, runners: dict) -> dict:
    result = each_runner(root, runners, "stream", lambda d: make_job(d, "million", "seq 1 1000000\n"), stream=True)
    site, job_dir = fresh_site(root, "stream-baseline")
    job = make_job(job_dir, "million", "seq 1 1000000\n")
    started = time.perf_counter()
    with open(job / "stdout.txt", "wb") as out:
        subprocess.run(["bash", "run.sh"], cwd=job, stdout=out, check=True)
    result["baseline"] = time.perf_counter() - started
    return result


def case_noop_200(root: Path, runners: dict) -> dict:
    def add_jobs(job_dir: Path) -> None:
        for i in range(200):
            make_job(job_dir, f"noop {i:03d}", "true\n")

    result = {label: seconds / 200 for label, seconds in each_runner(root, runners, "noop", add_jobs).items()}
    site, job_dir = fresh_site(root, "noop-baseline")
    job = make_job(job_dir, "noop", "true\n")
    started = time.perf_counter()
    for _ in range(200):
        subprocess.run(["bash", "run.sh"], cwd=job, stdout=subprocess.DEVNULL, check=True)
    result["baseline"] = (time.perf_counter() - started) / 200
    return result


def case_poll_10k(root: Path, runners: dict) -> dict:
    site, job_dir = fresh_site(root, "poll")
    for i in range(10_000):
        make_job(job_dir, f"done {i:05d}", "true\n", done=True)
    result = {label: measure(python, path, site, call="poll")["seconds"] for label, (python, path) in runners.items()}
    started = time.perf_counter()
    for _dirpath, _dirs, _files in os.walk(job_dir):  # the baseline: just listing the tree
        pass
    result["baseline"] = time.perf_counter() - started
    return result


def case_mem_200mb(root: Path, runners: dict) -> dict:
    script = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 200000000\n"
    result = each_runner(root, runners, "mem", lambda d: make_job(d, "big", script), key="peak_kb")
    ours = {"ours": runners["ours"]}  # the baseline: ours, with no output
    result["baseline"] = each_runner(root, ours, "mem-baseline", lambda d: make_job(d, "small", "true\n"), key="peak_kb")["ours"]
    return result


def case_timeout(root: Path, runners: dict) -> dict:
    script = "setsid sleep 20 &\necho $! > escaped.pid\nsleep 20\n"
    try:
        result = each_runner(root, runners, "timeout", lambda d: make_job(d, "holder", script),
                             stream=True, timeout=1, deadline=120)
    finally:
        for pid_file in root.glob("timeout-*/*/app_data/job/*/holder/escaped.pid"):
            try:
                os.kill(int(pid_file.read_text()), 9)
            except (OSError, ValueError):
                pass
    result["baseline"] = 1.0  # the timeout itself
    return result


CASES = [
    ("stream_1m", "s", case_stream_1m),
    ("noop_200", "s/job", case_noop_200),
    ("poll_10k", "s", case_poll_10k),
    ("mem_200mb", "kB peak", case_mem_200mb),
    ("timeout", "s to return", case_timeout),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-reference", action="store_true", help="do not install or run the reference")
    parser.add_argument("--case", action="append", help="run only this case (repeatable)")
    args = parser.parse_args()
    runners = {"ours": (sys.executable, str(REPO))}
    ref = None if args.no_reference else reference_python(install=True)
    if ref:
        runners["reference"] = (ref, None)
    failed = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="syft-job-bench-") as tmp:
        for name, unit, case in CASES:
            if args.case and name not in args.case:
                continue
            print(f"running {name} ...", flush=True)
            result = case(Path(tmp), runners)
            ours, baseline = result["ours"], result["baseline"]
            versus = result.get("reference") or SPEC_FIGURES[name]
            source = "reference" if "reference" in result else "SPEC.md"
            rows.append((name, unit, ours, result.get("reference"), baseline, versus, source))
            if versus is not None and ours >= versus:
                failed.append(name)
    print()
    print(f"{'case':<10} {'unit':<12} {'ours':>10} {'reference':>10} {'baseline':>10} {'ours/ref':>9} {'ours/base':>9}")
    for name, unit, ours, reference, baseline, versus, source in rows:
        ref_text = f"{reference:.4g}" if reference is not None else "-"
        ratio_ref = f"{ours / versus:.3f}" + ("" if source == "reference" else "*") if versus else "-"
        print(f"{name:<10} {unit:<12} {ours:>10.4g} {ref_text:>10} {baseline:>10.4g} {ratio_ref:>9} {ours / baseline:>9.2f}")
    if any(row[6] == "SPEC.md" and row[5] for row in rows):
        print("* against the reference's figure in SPEC.md (the reference was not run)")
    if failed:
        print(f"NOT better than the reference in: {', '.join(failed)}")
        return 1
    print("better than the reference in every case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
