"""framework.model.rules.liger_model_types: the model types Liger patches, read from its source without importing it
(the import costs the launcher seconds on a GPU machine), and imported where the source does not list them.

liger-kernel is not installed here (it needs Triton): stand-in packages in tmp_path, fresh interpreters."""

import pytest
from helpers import python_words


def stand_in(root, monkey_patch_source: str):
    pkg = root / "liger_kernel" / "transformers"
    pkg.mkdir(parents=True)
    (root / "liger_kernel" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "monkey_patch.py").write_text(monkey_patch_source)
    return root


def types_seen(root) -> list:
    code = (
        "import sys\n"
        "from framework.model.rules import liger_model_types\n"
        "print(' '.join(sorted(liger_model_types())), 'imported' if 'liger_kernel.transformers.monkey_patch' in "
        "sys.modules else 'not-imported')\n"
    )
    return python_words(code, root, timeout=120)


def test_a_dict_literal_is_read_from_the_source_without_running_it(tmp_path):
    source = (
        "raise RuntimeError('the launcher must not run this module')\n"
        "def apply_llama(): pass\n"
        "MODEL_TYPE_TO_APPLY_LIGER_FN = {'llama': apply_llama, 'qwen2': apply_llama, 'mistral': apply_llama}\n"
    )
    assert types_seen(stand_in(tmp_path, source)) == ["llama", "mistral", "qwen2", "not-imported"]


def test_a_table_built_otherwise_is_imported(tmp_path):
    """The fallback (a later Liger that builds its table in code): the module's own table, by importing it."""
    source = "MODEL_TYPE_TO_APPLY_LIGER_FN = dict.fromkeys(['llama', 'gemma'])\n"
    assert types_seen(stand_in(tmp_path, source)) == ["gemma", "llama", "imported"]


def test_validation_refuses_a_model_type_liger_does_not_patch(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from framework.errors import ConfigError
    from framework.model import rules
    from framework.model.build import hf_config

    monkeypatch.setattr(rules, "liger_model_types", lambda: frozenset({"mistral"}))
    real = rules.importlib.util.find_spec
    installed = lambda name, *a: object() if name == "liger_kernel" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(rules.importlib.util, "find_spec", installed)
    m = OmegaConf.create({"liger": True, "activation_checkpointing": False, "offload_activations": False})
    config = hf_config(name_or_path=None, arch={"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4})
    with pytest.raises(ConfigError, match=r"model\.liger.*no kernels for model_type 'llama'"):
        rules.check_features(m, config=config, device="cuda", attention="sdpa")
