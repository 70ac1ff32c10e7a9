"""framework.imports: transformers imported without torchvision and scikit-learn, which stay importable after.

Neither is installed here, so each test puts stand-ins on PYTHONPATH that record their import in a file, and runs a
fresh interpreter (what transformers decides at import is cached for the process)."""

import os
import sys

import pytest
from helpers import python_words

UNUSED = ("torchvision", "sklearn")


@pytest.fixture
def stand_ins(tmp_path):
    for name in UNUSED:
        os.makedirs(tmp_path / name)
        (tmp_path / name / "__init__.py").write_text(
            f"open({str(tmp_path / (name + '.imported'))!r}, 'w').close()\n__version__ = '0.0'\n"
        )
    return tmp_path


def imported(path):
    return sorted(n for n in UNUSED if (path / f"{n}.imported").exists())


def test_transformers_finds_both_when_nothing_is_hidden(stand_ins):
    """The control: the stand-ins are found, so the test below can tell hidden from absent."""
    words = python_words(
        "from transformers.utils import import_utils as u\n"
        "print(u.is_torchvision_available(), u.is_sklearn_available())",
        stand_ins,
    )
    assert words == ["True", "True"]


def test_the_launchers_config_and_the_workers_model_code_import_neither(stand_ins):
    code = (
        "import sys\n"
        "from framework.model.build import hf_config\n"
        "c = hf_config(name_or_path=None, arch={'model_type': 'llama', 'hidden_size': 64, 'num_attention_heads': 4})\n"
        "from framework.imports import hidden\n"
        "with hidden():\n"
        "    import transformers.models.llama.modeling_llama\n"
        "    from transformers import AutoModelForCausalLM\n"
        "print(c.hidden_size, 'torchvision' in sys.modules, 'sklearn' in sys.modules)\n"
        "import sklearn, torchvision\n"  # the user's own imports still work
        "print(sklearn.__version__, torchvision.__version__)\n"
    )
    assert python_words(code, stand_ins) == ["64", "False", "False", "0.0", "0.0"]
    assert imported(stand_ins) == ["sklearn", "torchvision"]  # by the user's line


def test_without_hiding_the_model_code_imports_them(stand_ins):
    """The control for the test above: transformers' model code reaches both (the stand-ins have no submodules, so
    its `from torchvision.transforms import ...` fails where the real package would cost its import)."""
    code = (
        "import sys\n"
        "try:\n"
        "    import transformers.models.llama.modeling_llama\n"
        "except ImportError as e:\n"
        "    print('ImportError', e.name)\n"
    )
    words = python_words(code, stand_ins)
    assert imported(stand_ins) and "torchvision" in imported(stand_ins), words


def test_a_package_imported_before_is_left_alone():
    from framework.imports import hidden

    with hidden(("os", "no_such_package_here")):
        assert sys.modules["os"] is os
        with pytest.raises(ImportError):
            import no_such_package_here  # noqa: F401
    assert "no_such_package_here" not in sys.modules
