"""CPU seconds and resident memory of a process, read from ``/proc`` (Linux only).

:class:`ProcSampler` polls ``VmRSS`` in a daemon thread (every ``interval`` seconds) so a phase
can report its own peak; ``VmHWM`` is the kernel's peak RSS over the process's whole life.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

__all__ = ["ProcSampler", "ProcStat", "read_stat"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """``cpu_s``: user + system CPU seconds so far; ``rss_mib``/``hwm_mib``: current and peak RSS."""

    cpu_s: float
    rss_mib: float
    hwm_mib: float


def read_stat(pid: int) -> ProcStat:
    """Raises ``OSError`` if the process is gone."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        fields = handle.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return ProcStat(cpu_s=(utime + stime) / _CLK_TCK, rss_mib=rss, hwm_mib=hwm)


class ProcSampler:
    """Samples a process's RSS; :meth:`mark` starts a phase, :meth:`phase_peak` ends it."""

    def __init__(self, pid: int, *, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = read_stat(self.pid).rss_mib
            except OSError:
                return
            with self._lock:
                self._peak = max(self._peak, rss)

    def mark(self) -> ProcStat:
        """Reset the phase peak; return the stat now (for CPU deltas)."""
        stat = read_stat(self.pid)
        with self._lock:
            self._peak = stat.rss_mib
        return stat

    def phase_peak(self) -> float:
        """Peak RSS (MiB) seen since the last :meth:`mark`."""
        with self._lock:
            return max(self._peak, read_stat(self.pid).rss_mib)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
