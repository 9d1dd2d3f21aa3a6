"""Prometheus metrics in the text exposition format, kept by hand: a few counters, one
histogram and gauges read at scrape time. Small enough not to need a client library."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self._help: dict[str, str] = {}
        self._latency_counts = [0] * (len(_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._gauges: dict[str, tuple[str, Callable[[], Awaitable[float]]]] = {}

    def count(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        self._help[name] = help_text
        self._counters[name][tuple(sorted(labels.items()))] += value

    def accepted(self, act: str) -> None:
        self.count("switchboard_envelopes_accepted_total", "Envelopes accepted, by act.", act=act)

    def refused(self, code: str) -> None:
        self.count(
            "switchboard_envelopes_refused_total", "Envelopes refused, by error code.", code=code
        )

    def observe_latency(self, seconds: float) -> None:
        for index, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                self._latency_counts[index] += 1
                break
        else:
            self._latency_counts[-1] += 1
        self._latency_sum += seconds

    def gauge(self, name: str, help_text: str, read: Callable[[], Awaitable[float]]) -> None:
        self._gauges[name] = (help_text, read)

    def counter_value(self, name: str, **labels: str) -> float:
        return self._counters[name][tuple(sorted(labels.items()))]

    async def render(self) -> str:
        lines: list[str] = []
        for name, series in sorted(self._counters.items()):
            lines.append(f"# HELP {name} {self._help.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(series.items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        name = "switchboard_message_seconds"
        lines.append(f"# HELP {name} Time to accept or refuse POST /v1/messages.")
        lines.append(f"# TYPE {name} histogram")
        cumulative = 0
        for bound, count in zip(_BUCKETS, self._latency_counts, strict=False):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        cumulative += self._latency_counts[-1]
        lines.append(f'{name}_bucket{{le="+Inf"}} {cumulative}')
        lines.append(f"{name}_sum {self._latency_sum:.6f}")
        lines.append(f"{name}_count {cumulative}")
        for gauge_name, (help_text, read) in sorted(self._gauges.items()):
            lines.append(f"# HELP {gauge_name} {help_text}")
            lines.append(f"# TYPE {gauge_name} gauge")
            lines.append(f"{gauge_name} {await read():g}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
