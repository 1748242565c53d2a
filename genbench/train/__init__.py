"""Training loops per family, composed from registered parts.

A model spec names its trainer. Each trainer has an options dataclass (validated from
the run's `trainer_options`) and a `train(ctx) -> TrainOutcome` function; the context
carries everything a loop needs and the callbacks that write records.
"""

from genbench.train.base import TRAINERS, TrainContext, Trainer, TrainOutcome, register_trainer  # noqa: F401
from genbench.train import adversarial, single, vaegan  # noqa: E402,F401  (register the trainers)
