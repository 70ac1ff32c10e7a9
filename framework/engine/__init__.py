"""engine: the DeepSpeed ZeRO engine (2/3, optimizer and parameter offload) built around the module it runs, the
causal LM plus its loss (framework.engine.module). The step loop that drives it is framework.train."""

from framework.engine.build import build_engine, deepspeed_config
from framework.engine.config import CommDtype, EngineConfig
from framework.engine.module import CausalLMWithLoss

__all__ = ["CausalLMWithLoss", "CommDtype", "EngineConfig", "build_engine", "deepspeed_config"]
