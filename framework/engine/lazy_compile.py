"""DeepSpeed's import-time `torch.compile`, deferred to a function's first call.

DeepSpeed 0.19's Muon module (`deepspeed.runtime.zero.muon.original_muon`) decorates three functions with
`deepspeed.runtime.compiler.compile()`, i.e. `torch.compile`, when it is imported, and ZeRO-1/2's engine and ZeRO-3's
init import it whatever the optimizer (`is_zero_supported_optimizer`). Wrapping costs 2 s of CPU on a 2-core machine
and 3.7 s on an H200 host (torch._inductor's compile machinery is imported) in every process that builds an engine.
This framework trains with AdamW, so those functions never run; were one called, it is compiled then, as before.

Deferred on CPU processes only: on a GPU, `deepspeed.initialize` imports the same machinery anyway (functorch.compile,
torch._inductor's kernels, networkx: 531 modules, 3.3-4.4 s on an H200 host, 2026-12-03), so deferring moved that
time from the forkserver's preload, which runs beside validation, into the engine build, after the workers start."""

import functools


def lazy(compile_fn):
    """A decorator like `compile_fn()`'s that compiles a function on its first call instead of at decoration."""

    def decorate(fn):
        compiled = None

        @functools.wraps(fn)
        def call(*args, **kwargs):
            nonlocal compiled
            if compiled is None:
                compiled = compile_fn()(fn)
            return compiled(*args, **kwargs)

        return call

    return decorate


def defer_deepspeed_compile():
    """On a machine without CUDA, make `deepspeed.runtime.compiler.compile()` lazy, before DeepSpeed's Muon module is
    imported (a no-op after: what it decorated is compiled already; and on a second call)."""
    import torch
    from deepspeed.runtime import compiler

    if torch.cuda.is_available():  # the forkserver answers through NVML (framework.preload), CUDA stays uninitialized
        return
    if getattr(compiler.compile, "framework_lazy", False):
        return
    eager = compiler.compile

    def compile():  # noqa: A001  (DeepSpeed's name)
        return lazy(eager)

    compile.framework_lazy = True
    compiler.compile = compile
