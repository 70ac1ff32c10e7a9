"""plan: what a job will need before it starts. Today the host-RAM plan of the CPU-offloaded state
(framework.plan.memory), printed before any worker starts and used to choose model.offload_keep_layers=auto."""
from framework.plan.memory import describe, host_plan, keep_layers

__all__ = ["describe", "host_plan", "keep_layers"]
