"""The live status of `shopfloor up` and `shopfloor connect`: what flows, from where, right now.

A student should see at a glance that the line runs (machine states), that data arrives
(samples/s per connector) and what it says (last values), without opening Grafana.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TextIO

from core.inputs import Input
from core.sample import Quality, Sample, SampleBatch, SeriesKey
from core.schema import MachineState
from core.units import unit_of
from delivery.writer import Writer

NBSP = "\u00a0"  # keeps a value and its unit on one line when the table wraps
STATE_NAMES = {s.value: s.name.lower() for s in MachineState} | {MachineState.FAULTED: "FAULTED"}


class LiveStatus:
    """Observes every emitted batch and redraws a compact table every `interval_s`."""

    def __init__(
        self,
        inputs: Sequence[Input],
        writer: Writer,
        *,
        historian_name: str,
        interval_s: float = 2.0,
        out: TextIO = sys.stdout,
        anomalies: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.inputs = list(inputs)
        self.anomalies = anomalies  # machine -> top signal of its anomaly episode under way
        self.writer = writer
        self.historian_name = historian_name
        self.interval_s = interval_s
        self.out = out
        self._last: dict[tuple[str, str], Sample] = {}
        # the newest read of each series tuple, made into Samples only when shown
        self._reads: dict[tuple[SeriesKey, ...], tuple[SampleBatch, int]] = {}
        self._started = time.monotonic()
        self._previous = {item.name: 0 for item in self.inputs}
        self.hints: list[str] = []  # where to look next (the live view's URL, commands), last

    def observe(self, item: Input, samples: Sequence[Sample]) -> None:
        """Keep the newest sample per (machine, signal); cheap, it runs on the hot path: of a
        SampleBatch only where each read starts is kept (one dict entry per read)."""
        if isinstance(samples, SampleBatch):
            start = 0
            for series, _ in samples.runs:
                self._reads[series] = (samples, start)
                start += len(series)
            return
        last = self.last
        for sample in samples:
            last[(sample.machine, sample.signal)] = sample

    @property
    def last(self) -> dict[tuple[str, str], Sample]:
        """The newest sample per (machine, signal)."""
        reads, self._reads = self._reads, {}
        for series, (batch, start) in reads.items():
            for sample in batch[start : start + len(series)]:
                self._last[(sample.machine, sample.signal)] = sample
        return self._last

    async def run(self) -> None:
        """Redraw until cancelled; on a terminal in place, else as a plain log line."""
        tty = self.out.isatty()
        while True:
            await asyncio.sleep(self.interval_s)
            if tty:
                width = shutil.get_terminal_size().columns
                self.out.write("\x1b[H\x1b[2J" + self.render(width) + "\n")
            else:
                self.out.write(self.summary() + "\n")
            self.out.flush()

    def rates(self) -> dict[str, float]:
        """Samples per second per connector since the previous call."""
        rates = {}
        for item in self.inputs:
            count = item.stats.samples
            rates[item.name] = (count - self._previous[item.name]) / self.interval_s
            self._previous[item.name] = count
        return rates

    def summary(self) -> str:
        """One line: uptime, rates, stored and pending counts, what the spool holds and lost."""
        rates = self.rates()
        flows = ", ".join(f"{name} {rate:.0f}/s" for name, rate in rates.items())
        stats = self.writer.stats
        flagged = ", ".join(f"{m} ({signal})" for m, signal in sorted(self.anomalies().items()))
        return (
            f"[{self._uptime()}] {flows}; stored {stats.samples_written} samples"
            f" ({stats.pending} pending, {stats.retries} retries) in {self.historian_name};"
            f" {self._spool()}{f'; ANOMALY on {flagged}' if flagged else ''}"
        )

    def _spool(self) -> str:
        """Spool depth and drops: a growing spool means the historian is behind, drops that the
        spool limit was reached and data is gone."""
        spool = self.writer.stats.spool
        held = "in memory only" if spool.memory_only else _size(spool.bytes)
        return f"spool {held}, {spool.dropped_samples} samples dropped"

    def render(self, width: int = 100) -> str:
        """The full table: connectors, machines with their states, last values."""
        lines = [self.summary(), "", self._connectors(), ""]
        machines = sorted({machine for machine, _ in self.last})
        anomalies = self.anomalies()
        for machine in machines:
            state = self.last.get((machine, "state"))
            label = STATE_NAMES.get(int(state.value), "?") if state and _finite(state) else "?"
            flag = f"  ANOMALY: {anomalies[machine]}" if machine in anomalies else ""
            lines.append(f"{machine:<16} {label}{flag}")
            signals = sorted(s for m, s in self.last if m == machine and s != "state")
            values = "  ".join(self._value(machine, s) for s in signals)
            lines += textwrap.wrap(values, width, initial_indent="    ", subsequent_indent="    ")
        if self.hints:
            lines += ["", *self.hints]
        return "\n".join(lines)

    def _connectors(self) -> str:
        rows = []
        for item in self.inputs:
            stats = item.stats
            link = "connected" if stats.connected else "DISCONNECTED"
            error = f"  last error: {stats.last_error}" if stats.last_error else ""
            rows.append(
                f"{item.name:<20} {link:<12} {item.endpoint}  samples {stats.samples}"
                f"  errors {stats.errors}  reconnects {stats.reconnects}{error}"
            )
        return "\n".join(rows)

    def _value(self, machine: str, signal: str) -> str:
        sample = self.last[(machine, signal)]
        if sample.quality != Quality.GOOD or not _finite(sample):
            return f"{signal}=BAD"
        unit = unit_of(signal)
        shown = unit if unit and unit != "count" else ""
        return f"{signal}={sample.value:.4g}{NBSP + shown if shown else ''}"

    def _uptime(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@asynccontextmanager
async def summary_at_the_end(
    status: LiveStatus, *more: Callable[[], str], out: TextIO = sys.stdout
) -> AsyncIterator[None]:
    """Print the summary when the block ends, by --duration or by Ctrl-C alike (not when it
    fails: then the error is what to read)."""
    try:
        yield
    except asyncio.CancelledError:
        _print_summary(status, more, out)
        raise
    _print_summary(status, more, out)


def _print_summary(status: LiveStatus, more: Sequence[Callable[[], str]], out: TextIO) -> None:
    lines = [status.summary(), *(text for text in (m() for m in more) if text)]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _size(nbytes: int) -> str:
    """Bytes for people: 0 B, 512 kB, 3.4 MB, 1.0 GB (decimal units, as --spool-max takes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def _finite(sample: Sample) -> bool:
    return math.isfinite(sample.value)
