"""Prometheus metrics: questions, latency, queue depth, generation speed, index size."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from appliance.answers import Answer

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
SPEED_BUCKETS = (1, 2, 5, 10, 20, 40, 80, 160, 320)


class _Live(Collector):
    """Values read at scrape time rather than kept up to date by hand."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, value) in self._read().items():
            yield GaugeMetricFamily(name, help_text, value=value)


class Metrics:
    def __init__(self, live: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.questions = Counter(
            "appliance_questions",
            "Questions answered, by channel (ui, api) and outcome.",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "appliance_question_errors",
            "Questions that ended in an error shown to the user, by channel and kind.",
            ["channel", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "appliance_answer_seconds",
            "Time from question to recorded answer.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "appliance_first_token_seconds",
            "Time from question to the first generated token.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "appliance_generation_tokens_per_second",
            "Generation speed of each answer.",
            buckets=SPEED_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Live(live))

    def answered(self, answer: Answer, channel: str) -> None:
        self.questions.labels(channel, answer.outcome).inc()
        timings = answer.timings
        self.latency.labels(channel).observe(timings.total_ms / 1000)
        if timings.first_token_ms is not None:
            self.first_token.observe(timings.first_token_ms / 1000)
        if timings.tokens_per_s:
            self.tokens_per_second.observe(timings.tokens_per_s)

    def failed(self, channel: str, error: Exception) -> None:
        self.errors.labels(channel, type(error).__name__).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
