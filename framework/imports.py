"""transformers imported without the packages a causal LM never uses.

transformers decides at import which optional packages exist and imports some of them eagerly: torchvision (through
its image and video utilities, which its config classes' type validators reach) and scikit-learn (through generation's
assisted-decoding candidate generator). On an H100 host with both installed (2026-12-07, transformers 5.17) they cost
the command's validation 3.6 s and 1.2 s and the workers' stack 2 s. Neither serves a causal LM's training, evaluation
or export, so the launcher (framework.model.build.hf_config) and the forkserver (framework.preload) import
transformers with both hidden: transformers finds them absent (its answers are cached for the process) and imports
neither. Afterwards they import as usual (`import sklearn` in a user's callback works)."""

import contextlib
import sys

UNUSED = ("sklearn", "torchvision")


@contextlib.contextmanager
def hidden(names=UNUSED):
    """While inside, `import name` fails and importlib.util.find_spec(name) is None for each name not imported yet
    (a process that imported one already keeps it)."""
    hide = [n for n in names if n not in sys.modules]
    for n in hide:
        sys.modules[n] = None
    try:
        yield
    finally:
        for n in hide:
            if n in sys.modules and sys.modules[n] is None:
                del sys.modules[n]
