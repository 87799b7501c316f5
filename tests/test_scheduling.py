"""The Snakefile's scheduler fix (src/inloop/scheduling.py): Snakemake's scheduling loop otherwise gains one more
re-evaluation timer per job that finishes while others wait, each waking the loop every second.

A real Snakemake run on 2 cores: one job sleeps 4 s while 40 short jobs run one after another on the other core,
all but one of them waiting; the test counts the Snakemake process's threads meanwhile. Without the fix the timer
threads pile up (one more per finished job); with it at most one waits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

SNAKEFILE = textwrap.dedent('''
    import inloop.scheduling

    onstart:
        if config.get("fix"):
            print("fix:", inloop.scheduling.one_reevaluation_timer(workflow))

    rule all:
        input: expand("s{i}", i=range(40)), "long"

    rule short:
        output: "s{i}"
        shell: "sleep 0.05; touch {output}"

    rule long:
        output: "long"
        priority: 10
        shell: "sleep 4; touch {output}"
''')


def _most_threads(tmp_path: Path, fix: bool) -> int:
    """The most threads the Snakemake process had at once (psutil, every 10 ms)."""
    d = tmp_path / ("fixed" if fix else "as-is")
    d.mkdir()
    (d / "Snakefile").write_text(SNAKEFILE)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "all", "--config", f"fix={int(fix)}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    with subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        proc, most = psutil.Process(run.pid), 0
        while run.poll() is None:
            with contextlib.suppress(psutil.Error):
                most = max(most, proc.num_threads())
            time.sleep(0.01)
        out = run.stdout.read()
    assert run.returncode == 0, out
    assert ("at most one timer waiting" in out) == fix, out
    assert len(list(d.glob("s*"))) == 40 and (d / "long").exists()
    return most


def test_the_scheduler_keeps_one_reevaluation_timer(tmp_path):
    fixed = _most_threads(tmp_path, fix=True)
    as_is = _most_threads(tmp_path, fix=False)
    assert fixed <= 8, f"{fixed} threads in Snakemake with the fix"
    assert as_is >= fixed + 10, (f"Snakemake had at most {as_is} threads without the fix ({fixed} with it): it may "
                                 "no longer pile up timers, and inloop.scheduling could go")
