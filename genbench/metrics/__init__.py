"""Metrics; importing this package registers them in METRICS."""

from genbench.metrics import anomaly, ar_samplers, autoencoding, codebook, likelihood, representation, samplers, samples  # noqa: F401
from genbench.metrics.base import EvalContext, Metric, MetricValue, applicable_metrics, register_metric  # noqa: F401
