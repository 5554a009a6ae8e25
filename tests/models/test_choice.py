"""Choosing the language model by name: the registry finds an installed model, `models use` switches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgevoice.cli import main
from edgevoice.config import load_config
from edgevoice.errors import ConfigError, ModelError
from edgevoice.models import registry
from edgevoice.models.choice import set_llm_name, use_model
from edgevoice.models.registry import DEFAULT_LLM, QWEN_05B, Kind, resolve


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", '[llm]\nname = "qwen2.5-0.5b"\n'),
        ("[stt]\nthreads = 2\n", '[stt]\nthreads = 2\n\n[llm]\nname = "qwen2.5-0.5b"\n'),
        ("[llm]\nthreads = 2\n", '[llm]\nname = "qwen2.5-0.5b"\nthreads = 2\n'),
        ('[llm]\n# which one\nname = "smollm2-135m"  # old\n', '[llm]\n# which one\nname = "qwen2.5-0.5b"\n'),
        ('[llm]\n#name = ""\n[tts]\n', '[llm]\nname = "qwen2.5-0.5b"\n[tts]\n'),
        (
            '[server]\nname = "kitchen"\n\n[llm] # reply\n',
            '[server]\nname = "kitchen"\n\n[llm] # reply\nname = "qwen2.5-0.5b"\n',
        ),
    ],
)
def test_set_llm_name_changes_one_line_of_the_llm_section(before: str, after: str) -> None:
    assert set_llm_name(before, "qwen2.5-0.5b") == after


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A data directory where a stand-in for qwen2.5-0.5b is installed (the registry checks no content)."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    shutil.copyfile(DEFAULT_LLM.locate(), data / "models" / QWEN_05B.file_name)
    return data


def test_the_default_is_smollm2_and_a_name_picks_an_installed_model(installed: Path) -> None:
    default = resolve(load_config(None, environ={"EDGEVOICE_DATA_DIR": str(installed)}), Kind.LLM)
    assert (default.path, default.default) == (DEFAULT_LLM.locate(), True)
    environ = {"EDGEVOICE_DATA_DIR": str(installed), "EDGEVOICE_LLM_NAME": "qwen2.5-0.5b"}
    chosen = resolve(load_config(None, environ=environ), Kind.LLM)
    assert (chosen.path, chosen.default) == (installed / "models" / QWEN_05B.file_name, False)


def test_a_model_path_wins_over_the_name(installed: Path, tmp_path: Path) -> None:
    environ = {"EDGEVOICE_DATA_DIR": str(installed), "EDGEVOICE_LLM_NAME": "qwen2.5-0.5b"}
    environ["EDGEVOICE_LLM_MODEL"] = str(tmp_path / "mine.gguf")
    assert resolve(load_config(None, environ=environ), Kind.LLM).path == tmp_path / "mine.gguf"


@pytest.fixture
def nothing_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty share/edgevoice/models (./install.sh --model may have filled the real one)."""
    monkeypatch.setattr(registry, "installed_models_dir", lambda: tmp_path / "share-models")


@pytest.mark.usefixtures("nothing_installed")
def test_a_model_not_installed_or_unknown_says_how_to_get_it(tmp_path: Path) -> None:
    environ = {"EDGEVOICE_DATA_DIR": str(tmp_path), "EDGEVOICE_LLM_NAME": "qwen2.5-0.5b"}
    with pytest.raises(ModelError, match=r"not installed: run ./install.sh --model qwen2.5-0.5b"):
        resolve(load_config(None, environ=environ), Kind.LLM)
    with pytest.raises(ModelError, match="no language model named 'gpt'"):
        resolve(load_config(None, environ={"EDGEVOICE_LLM_NAME": "gpt"}), Kind.LLM)


def test_models_use_writes_the_config_the_daemon_loads(installed: Path, tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text(f'# mine\ndata_dir = "{installed}"\n\n[llm]\nthreads = 1\n')
    path.chmod(0o640)
    assert main(["--config", str(path), "models", "use", "qwen2.5-0.5b"]) == 0
    config = load_config(path, environ={})
    assert config.llm.name == "qwen2.5-0.5b"
    assert config.llm.threads == 1
    assert path.read_text().startswith("# mine\n")
    assert path.stat().st_mode & 0o777 == 0o640
    assert resolve(config, Kind.LLM).path == installed / "models" / QWEN_05B.file_name
    assert main(["--config", str(path), "models", "use", "smollm2-135m"]) == 0
    assert resolve(load_config(path, environ={}), Kind.LLM).path == DEFAULT_LLM.locate()


def test_models_use_creates_a_missing_config_file(installed: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.toml"
    config = use_model(path, "qwen2.5-0.5b", {"EDGEVOICE_DATA_DIR": str(installed), "EDGEVOICE_CONFIG": str(path)})
    assert config.llm.name == "qwen2.5-0.5b"
    assert path.read_text() == '[llm]\nname = "qwen2.5-0.5b"\n'


@pytest.mark.usefixtures("nothing_installed")
def test_models_use_changes_nothing_for_a_model_not_installed(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n')
    assert main(["--config", str(path), "models", "use", "qwen2.5-0.5b"]) == 2
    assert main(["--config", str(path), "models", "use", "gpt"]) == 2
    assert path.read_text() == f'data_dir = "{tmp_path}"\n'


def test_models_use_needs_a_config_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("EDGEVOICE_CONFIG", raising=False)
    assert main(["models", "use", "smollm2-135m"]) == 2
    assert "pass --config FILE" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no language model named"):
        use_model(Path("/nonexistent/x.toml"), "gpt", {})


def test_models_use_without_a_name_lists_the_choices(
    installed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEVOICE_DATA_DIR", str(installed))
    monkeypatch.delenv("EDGEVOICE_CONFIG", raising=False)
    assert main(["models", "use"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"* smollm2-135m: {DEFAULT_LLM.locate()}"
    assert lines[1] == f"  qwen2.5-0.5b: {installed / 'models' / QWEN_05B.file_name}"
