"""What must hold over every task once the faults have healed, and the report of a run."""

from __future__ import annotations

import re
import sqlite3
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError

from benchmarks.run import unended_runs
from chaos.engine import Engine
from chaos.nemesis import Fault
from chaos.stack import BUCKET
from chaos.stream import Submission
from flows.stages import DELIVERED


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    # accepted tasks by how many terminal callbacks the engine took for them
    terminal_per_task: Counter[int] = field(default_factory=Counter)
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    # Tasks whose terminal callback came twice, alike, because the engine's answer to
    # the first was cut on its way back (LOST_ANSWER).
    answers_lost: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.failures.append(line)


def journal_count(path: Path) -> int | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM intake").fetchone()
            return int(count)
    except sqlite3.Error:
        return None


def drained(
    submissions: Sequence[Submission], engine: Engine, prefect_api: str, journal: Path
) -> Callable[[], bool]:
    """True once nothing more can happen: every accepted task has had its terminal
    callback, the journal is empty and Prefect has no run left that is not ended."""

    def check() -> bool:
        return (
            all(engine.terminal(s.task_id) for s in submissions if s.accepted)
            and journal_count(journal) == 0
            and unended_runs(prefect_api) == 0
        )

    return check


def flow_runs_named(prefect_api: str, names: list[str]) -> set[str]:
    """Which of `names` (task ids) Prefect holds a flow run of."""
    found: set[str] = set()
    for start in range(0, len(names), 200):
        response = httpx.post(
            f"{prefect_api}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": names[start : start + 200]}}, "limit": 200},
            timeout=30,
        )
        response.raise_for_status()
        found |= {run["name"] for run in response.json()}
    return found


# A terminal callback the engine took less than this many seconds before its gate cut
# every connection had its answer cut too, as likely as not: the service saw the
# connection drop with no answer, and cannot tell that from a PATCH that never arrived.
# It sends the same outcome again rather than risk none (at least once); the engine then
# has it twice, alike. So it does when the worker waiting for the answer is killed: the
# run is taken back and sends it again. Such a pair is reported apart, not as a failure,
# when the service logged fewer deliveries (flows.stages.DELIVERED) than the engine took
# callbacks, or the gate cut within LOST_ANSWER s; any other second terminal callback
# is one.
LOST_ANSWER = 0.5
_DELIVERED = re.compile(re.escape(DELIVERED) + r": \w+ to \S*/tasks/([0-9a-f-]{36})")


def deliveries(service_log: Path) -> Counter[str]:
    """How many terminal callbacks the service logged as answered 2xx, by task id."""
    with service_log.open("rb") as lines:
        return Counter(
            match.group(1)
            for line in lines
            if (match := _DELIVERED.search(line.decode(errors="replace")))
        )


def judge(
    submissions: Sequence[Submission],
    engine: Engine,
    s3: Any,
    prefect_api: str,
    cuts: Sequence[float] = (),
    start: float = 0.0,
    delivered: Counter[str] | None = None,
) -> Verdict:
    """The checks over every task; `cuts`: when the engine's gate cut its connections;
    `start`: when the stream started (time.monotonic()), the origin of the times a
    failure gives, as of the strikes the run printed; `delivered`: the service's own
    count of each task's terminal callbacks answered 2xx (`deliveries`), if known."""
    verdict = Verdict()
    for s in submissions:
        taken = engine.terminal(s.task_id)
        if not s.accepted:
            if engine.of(s.task_id):
                verdict.fail(f"task {s.task_id} ran after its submission failed ({s.why})")
            continue
        verdict.terminal_per_task[len(taken)] += 1
        if not taken:
            verdict.fail(f"task {s.task_id} accepted, and no terminal callback")
            continue
        if len({callback.outcome() for callback in taken}) > 1:
            outcomes = ", ".join(f"{c.status} {list(c.data_out)}" for c in taken)
            verdict.fail(f"task {s.task_id}: terminal callbacks disagree: {outcomes}")
        elif len(taken) == 2 and (
            any(0 <= cut - taken[0].at <= LOST_ANSWER for cut in cuts)
            or (delivered is not None and delivered[s.task_id] < len(taken))
        ):
            verdict.answers_lost.append(s.task_id)
        elif len(taken) > 1:
            times = ", ".join(f"{callback.at - start:.1f} s" for callback in taken)
            verdict.fail(
                f"task {s.task_id}: {len(taken)} terminal callbacks (agreeing), taken at {times}"
            )
        first = taken[0]
        if first.status == "finished":
            for key in first.data_out:
                if not _exists(s3, key):
                    verdict.fail(f"task {s.task_id}: output {key} is not in S3")
            if not first.data_out:
                verdict.fail(f"task {s.task_id}: finished without outputs")
        else:
            reason = (first.error_message or "").strip()
            if not reason:
                verdict.fail(f"task {s.task_id}: error without a reason")
            verdict.errors_by_reason[reason[:100]] += 1
    refused = [s.task_id for s in submissions if not s.accepted]
    for name in sorted(flow_runs_named(prefect_api, refused)):
        verdict.fail(f"task {name}: a flow run exists, yet its submission failed")
    return verdict


def holding(secret: bytes, roots: Sequence[Path]) -> list[Path]:
    """The files under `roots` (or among them) that hold `secret`."""
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*"))]
    return [path for path in files if path.is_file() and secret in path.read_bytes()]


def _exists(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except ClientError:
        return False


def recovery(fault: Fault, submissions: Sequence[Submission], engine: Engine) -> float | None:
    """Seconds from a fault's healing to the `finished` callback of the first task sent
    after it that was accepted: how long until the service worked again end to end."""
    if fault.healed is None:
        return None
    for s in submissions:
        if s.sent >= fault.healed and s.accepted:
            done = [c.at for c in engine.terminal(s.task_id) if c.status == "finished"]
            if done:
                return done[0] - fault.healed
    return None


def report(
    seed: int,
    duration: float,
    submissions: Sequence[Submission],
    faults: Sequence[Fault],
    engine: Engine,
    verdict: Verdict,
    drain_s: float,
) -> str:
    accepted = [s for s in submissions if s.accepted]
    # "503 51 tasks are already waiting ...": one reason, whatever the count it names.
    refusals = Counter(
        re.sub(r"\d+ tasks", "N tasks", s.why.split(" (")[0])[:80]
        for s in submissions
        if not s.accepted
    )
    ended = [taken[0] for s in accepted if (taken := engine.terminal(s.task_id))]
    statuses = Counter(callback.status for callback in ended)
    lines = [
        f"seed {seed}, {duration:g} s of stream, drained in {drain_s:.0f} s",
        f"tasks sent {len(submissions)}, accepted {len(accepted)}, "
        f"refused {len(submissions) - len(accepted)}",
    ]
    lines += [f"  refused: {count}x {why}" for why, count in refusals.most_common()]
    lines.append(
        "accepted tasks ended: "
        + ", ".join(f"{status} {count}" for status, count in statuses.most_common())
    )
    lines += [f"  error: {count}x {why}" for why, count in verdict.errors_by_reason.most_common()]
    lines.append(
        "terminal callbacks per accepted task: "
        + ", ".join(f"{n}: {count}" for n, count in sorted(verdict.terminal_per_task.items()))
    )
    lines += [
        f"  {task}: its terminal callback twice, alike: the engine's answer to the first "
        "was lost on its way back (a fault cut the connection or killed the worker "
        "waiting for it), so the service sent it again"
        for task in verdict.answers_lost
    ]
    callbacks = sum(len(engine.of(s.task_id)) for s in submissions)
    lines.append(f"callbacks received {callbacks} (with those answered 503)")
    by_kind: dict[str, list[float | None]] = {}
    for fault in faults:
        by_kind.setdefault(fault.strike.kind, []).append(recovery(fault, submissions, engine))
    lines.append("faults (kind: count, recovery after healing: median, max):")
    for kind, times in sorted(by_kind.items()):
        known = [t for t in times if t is not None]
        spread = (
            f"{statistics.median(known):.1f} s, {max(known):.1f} s" if known else "none measured"
        )
        lines.append(f"  {kind}: {len(times)}, {spread}")
    for fault in faults:
        if fault.note:
            lines.append(f"  note: {fault.strike.kind} ({fault.strike.part}): {fault.note}")
    if verdict.failures:
        lines.append(f"FAILED: {len(verdict.failures)} violation(s):")
        lines += [f"  {line}" for line in verdict.failures[:50]]
    else:
        lines.append("every check held")
    return "\n".join(lines)
