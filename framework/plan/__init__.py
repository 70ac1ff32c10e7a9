"""plan: what a job will need before it starts: GPU memory and step time (framework.plan.gpu), host RAM
(framework.plan.memory), and the planner that puts them together for `plan=true`, the startup line and the `auto`
switches (framework.plan.planner); hardware.* in framework.plan.config."""

from framework.plan.memory import describe, host_plan, keep_layers
from framework.plan.planner import make_plan

__all__ = ["describe", "host_plan", "keep_layers", "make_plan"]
