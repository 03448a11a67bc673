"""The figures of one fault scenario, shared by the standalone and the topology fault tests."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.ledger import WriteLedger
from tests.support.traffic import TrafficReport


@dataclass
class Outcome:
    """Traffic report and ledger of one scenario, with when its fault began and ended."""

    name: str
    report: TrafficReport
    ledger: WriteLedger
    fault_started: float
    fault_ended: float
    settings: str = ""  # what the scenario ran with, quoted before the figures
    details: str = ""  # scenario-specific figures, quoted before the latencies

    def stale(self, during: bool) -> int:
        """Stale reads that began during (True) or after (False) the fault."""
        return sum(1 for s in self.ledger.stale if (s.began_at < self.fault_ended) == during)

    def whole(self) -> str:
        """What the whole-answer judge judged and found, with a few examples."""
        judge = self.report.judge
        return "\n".join([judge.summary(), *(str(m) for m in judge.examples()), *self.report.unjudged[:3]])

    def summary(self) -> str:
        """The line the docs quote."""
        r = self.report
        return (
            f"[{self.name}] {self.settings}"
            f"reads={len(r.reads)} writes={r.writes} read_5xx={r.read_5xx()} write_5xx={r.write_5xx} "
            f"stale_during={self.stale(True)} stale_after={self.stale(False)} "
            f"membership={len(r.membership_violations)} counts={len(r.count_violations)} "
            f"whole_mismatches={len(r.judge.mismatches)} unjudged={len(r.unjudged)} "
            f"{self.details}"
            f"p99_read_ms={r.p99_read_s() * 1000:.0f} "
            f"p99_read_during_ms={r.p99_read_s(self.fault_started, self.fault_ended) * 1000:.0f}"
        )
