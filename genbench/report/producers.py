"""Every producer's value declarations (genbench/values.py), for the report and `compare`.

A producer declares its values when its module is imported; importing this module imports
them all, so that a record's direction, unit and conditions are looked up by (producer,
metric name) rather than guessed from the name.
"""

from __future__ import annotations

import genbench.harness.eval_benchmark  # noqa: F401  time/<stage> of the evaluation benchmark
import genbench.harness.runner  # noqa: F401  perf/*, time/*, run/*, train/*; the metrics and the stability monitor
import genbench.kernelbench.base  # noqa: F401  {fwd,bwd,fwd_bwd}/time, bandwidth, throughput, peak_memory
import genbench.metrics  # noqa: F401  every registered metric's values
import genbench.reproduce  # noqa: F401  reproduce/claim and the reproductions' curves
from genbench.values import VALUES, Producer, producer_of, producers, sign_of, value_spec  # noqa: F401
