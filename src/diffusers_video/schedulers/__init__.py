from .scheduling_decomposed import DecomposedNoiseScheduler, DecomposedNoiseSchedulerOutput
from .scheduling_v_distilled import VDistilledScheduler, VDistilledSchedulerOutput

__all__ = [
    "DecomposedNoiseScheduler",
    "DecomposedNoiseSchedulerOutput",
    "VDistilledScheduler",
    "VDistilledSchedulerOutput",
]
