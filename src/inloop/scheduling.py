"""Snakemake's job scheduler kept from spinning (the Snakefile's ``onstart``).

Snakemake 9 (seen in 9.27.1, the newest release on 2026-12-07; ``snakemake/scheduling/job_scheduler.py``)
limits job submissions with ``--max-jobs-per-timespan`` (default 100/1s). Each pass of its scheduling loop
that finds jobs ready but no free core ends with ``_schedule_reevalutation``: a new ``threading.Timer`` that
wakes the loop again one timespan later. A pass woken by that timer starts the next one, and every pass woken
by a finished job adds one more, so after N jobs have finished while others waited, N timers wake the loop N
times a second, each pass re-evaluating every ready job's params and resources. In ``make run`` on a 2-core
machine the Snakemake process itself held up to 223 threads, nearly all of them timers, and used 43 % of a core
during the trainings (2026-12-07, a 2-core AVX2 EPYC; ``docs/timings.md``): CPU the jobs did not get.

:func:`one_reevaluation_timer` keeps the limiter and its wake-up but lets at most one timer wait at a time: a
pass that finds one already waiting adds none. Scheduling is otherwise unchanged (a finished job still wakes
the loop at once; the rate limit still holds on a cluster). The timer is a daemon thread, so Snakemake does not
wait for it at exit. Where the scheduler does not have the two attributes this relies on (another Snakemake
version), nothing is changed and the returned text says so.
"""

from __future__ import annotations

import threading
from typing import Any


def one_reevaluation_timer(workflow: Any) -> str:
    """Patch ``workflow.scheduler`` (a Snakemake ``JobScheduler``) as the module docstring says; what was done."""
    scheduler = getattr(workflow, "scheduler", None)
    wake = getattr(scheduler, "_open_jobs", None)
    if scheduler is None or wake is None or not hasattr(scheduler, "_schedule_reevalutation"):
        return "scheduler left as it is (no JobScheduler._schedule_reevalutation in this Snakemake)"
    lock = threading.Lock()
    waiting: list[threading.Timer] = []

    def schedule_reevaluation(delay: float) -> None:
        with lock:
            if waiting and waiting[0].is_alive():
                return  # one wake-up is already on its way
            timer = threading.Timer(delay, wake.release)
            timer.daemon = True
            waiting[:] = [timer]
            timer.start()

    scheduler._schedule_reevalutation = schedule_reevaluation
    return "scheduler re-evaluation: at most one timer waiting"
