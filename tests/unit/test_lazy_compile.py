"""framework.engine.lazy_compile: DeepSpeed's import-time torch.compile deferred to the first call, same result."""

import subprocess
import sys

from framework.engine.lazy_compile import lazy


def test_lazy_compiles_once_at_the_first_call_and_returns_the_compiled_result():
    compiled = []

    def compile_fn():
        def wrap(fn):
            compiled.append(fn.__name__)
            return lambda *a, **k: ("compiled", fn(*a, **k))

        return wrap

    @lazy(compile_fn)
    def double(x, y=1):
        return 2 * x + y

    assert compiled == [] and double.__name__ == "double"  # nothing compiled at decoration
    assert double(3, y=2) == ("compiled", 8)
    assert double(1) == ("compiled", 3)
    assert compiled == ["double"]  # once


def test_deepspeeds_muon_module_imports_without_compiling():
    """In a fresh interpreter: after defer_deepspeed_compile, importing DeepSpeed's Muon module leaves its functions
    framework's wrappers (torch.compile's own wrapper is a function too, from torch._dynamo)."""
    code = (
        "import deepspeed, torch\n"
        "from framework.engine.lazy_compile import defer_deepspeed_compile\n"
        "defer_deepspeed_compile(); defer_deepspeed_compile()\n"
        ""
        "from deepspeed.runtime.zero.muon import original_muon as m\n"
        "f = m.zeropower_via_newtonschulz5\n"
        "print(f.__code__.co_filename.split('/')[-1], f.__wrapped__.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["lazy_compile.py", "zeropower_via_newtonschulz5"], out.stdout
