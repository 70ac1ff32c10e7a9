"""What every worker imports, loaded once by the forkserver the CLI starts as it begins (framework.launch
.start_forkserver), while the CLI itself composes and validates the config: the workers fork from that process and
find torch, transformers' model code, DeepSpeed and the framework already imported.

It runs before anything touches CUDA: torch.cuda.is_available() is answered by NVML in this process
(PYTORCH_NVML_BASED_CUDA_CHECK=1, set by start_forkserver), so a forked worker may still initialize CUDA."""

import os

from framework.bytecode import follow

follow()  # the command keeps bytecode in its own folder: write this server's there too
ENV = dict(os.environ)
"""The environment this process started with: a worker sets from the launcher's environment every variable the
elastic agent did not set for it (framework.launch.adopt_env)."""

LAUNCHER = os.getppid()


def watch_launcher(done):
    """Until `done` is set: when the command ends before the server finished importing (a config error, --help),
    stop importing for nobody, within a tenth of a second."""
    while not done.wait(0.1):
        if os.getppid() != LAUNCHER:
            os._exit(0)


import threading  # noqa: E402

IMPORTED = threading.Event()
WATCHER = threading.Thread(target=watch_launcher, args=(IMPORTED,), daemon=True)
WATCHER.start()

import torch  # noqa: E402

if "DS_ACCELERATOR" not in os.environ:  # named, not detected: DeepSpeed's detection warns on every CPU run
    os.environ["DS_ACCELERATOR"] = "cuda" if torch.cuda.is_available() else "cpu"
import deepspeed  # noqa: E402,F401

from framework.imports import hidden  # noqa: E402

with hidden():  # torchvision and scikit-learn: 2 s of import a causal LM does not use (framework.imports)
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

from deepspeed.runtime.zero import stage3, stage_1_and_2  # noqa: E402,F401
from framework.engine.lazy_compile import defer_deepspeed_compile  # noqa: E402

defer_deepspeed_compile()  # CPU only: its torch.compile at import costs 2 s on a 2-core machine
from deepspeed.runtime.zero.muon import muon_optimizer  # noqa: E402,F401

import framework.graph  # noqa: E402,F401  (everything a rank builds)

IMPORTED.set()  # the server forks workers from here on: no thread of ours may run in it
WATCHER.join()
