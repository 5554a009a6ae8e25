from __future__ import annotations

from pathlib import Path

import pytest

from edgevoice.config import (
    DEFAULT_SYSTEM_PROMPT,
    Config,
    LlmConfig,
    SttConfig,
    TtsConfig,
    VadConfig,
    load_config,
)
from edgevoice.errors import ConfigError, EdgevoiceError


def write(tmp_path: Path, text: str, name: str = "edgevoice.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid() -> None:
    config = load_config(None, {})
    assert isinstance(config, Config)
    assert config.vad == VadConfig()
    assert config.stt == SttConfig()
    assert config.llm == LlmConfig()
    assert config.tts == TtsConfig()
    assert config.llm.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert config.stt.model is None
    assert config.stt.threads >= 1
    assert Config().validate() == Config()


def test_file_values_are_applied(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[vad]
frame_ms = 30
hangover_ms = 700
aggressiveness = 3

[stt]
threads = 2
audio_ctx_margin = 2
language = "de"

[llm]
temperature = 0.7
system_prompt = "Be brief."

[tts]
length_scale = 0.9
noise_scale = 0
first_clause_words = 5
""",
    )
    config = load_config(path, {})
    assert (config.vad.frame_ms, config.vad.hangover_ms, config.vad.aggressiveness) == (30, 700, 3)
    assert config.vad.min_speech_ms == VadConfig().min_speech_ms  # untouched keys keep their defaults
    assert config.stt.threads == 2
    assert config.stt.audio_ctx_margin == 2.0
    assert isinstance(config.stt.audio_ctx_margin, float)
    assert config.stt.language == "de"
    assert config.llm.temperature == 0.7
    assert config.llm.system_prompt == "Be brief."
    assert config.tts.length_scale == 0.9
    assert config.tts.noise_scale == 0.0
    assert config.tts.noise_w_scale is None
    assert config.tts.first_clause_words == 5


def test_relative_model_paths_resolve_against_the_file_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = write(
        conf_dir,
        """
[stt]
model = "models/ggml-tiny.en.bin"
[llm]
model = "/opt/models/llm.gguf"
[tts]
voice = "../voices/joe.onnx"
""",
    )
    config = load_config(path, {})
    assert config.stt.model == conf_dir.resolve() / "models" / "ggml-tiny.en.bin"
    assert config.llm.model == Path("/opt/models/llm.gguf")
    assert config.tts.voice == conf_dir.resolve() / ".." / "voices" / "joe.onnx"


def test_home_in_model_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path, '[stt]\nmodel = "~/m.bin"\n')
    assert load_config(path, {}).stt.model == tmp_path / "m.bin"


def test_empty_model_path_means_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[stt]\nmodel = ""\n')
    assert load_config(path, {}).stt.model is None


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[vad]\nhangover_ms = 800\n")
    assert load_config(None, {"EDGEVOICE_CONFIG": str(path)}).vad.hangover_ms == 800


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[vad]\nhangover_ms = 700\npre_roll_ms = 100\n[llm]\nsystem_prompt = "from file"\n')
    environ = {
        "EDGEVOICE_VAD_HANGOVER_MS": "300",
        "EDGEVOICE_LLM_SYSTEM_PROMPT": "hi",
        "EDGEVOICE_LLM_TEMPERATURE": "0.5",
        "EDGEVOICE_TTS_LENGTH_SCALE": "1",
    }
    config = load_config(path, environ)
    assert config.vad.hangover_ms == 300
    assert config.vad.pre_roll_ms == 100  # the file's other keys stay
    assert config.llm.system_prompt == "hi"
    assert config.llm.temperature == 0.5
    assert config.tts.length_scale == 1.0


def test_environment_without_a_file() -> None:
    environ = {
        "EDGEVOICE_VAD_HANGOVER_MS": "300",
        "EDGEVOICE_LLM_SYSTEM_PROMPT": "You are a friendly robot.",
        "EDGEVOICE_LLM_MODEL": "/models/x.gguf",
        "EDGEVOICE_STT_LANGUAGE": "en",
    }
    config = load_config(None, environ)
    assert config.vad.hangover_ms == 300
    assert config.llm.system_prompt == "You are a friendly robot."
    assert config.llm.model == Path("/models/x.gguf")


def test_environment_text_is_taken_as_written() -> None:
    assert load_config(None, {"EDGEVOICE_LLM_SYSTEM_PROMPT": '"42"'}).llm.system_prompt == '"42"'


def test_unrelated_environment_variables_are_ignored() -> None:
    environ = {
        "HOME": "/nowhere",
        "EDGEVOICE": "x",
        "EDGEVOICE_UNKNOWN_THING": "1",
        "OTHER_VAD_HANGOVER_MS": "1",
    }
    assert load_config(None, environ).vad == VadConfig()


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[audio]\nrate = 8000\n", {}, "unknown config section(s): audio"),
        ("[vad]\nhangover = 300\n", {}, "unknown key(s) in [vad]: hangover"),
        ("", {"EDGEVOICE_VAD_HANGOVER": "300"}, "unknown key(s) in [vad]: hangover"),
        ('[vad]\nhangover_ms = "300"\n', {}, "vad.hangover_ms must be a whole number, not '300'"),
        ("[vad]\nhangover_ms = 300.0\n", {}, "vad.hangover_ms must be a whole number"),
        ("[vad]\nhangover_ms = true\n", {}, "vad.hangover_ms must be a whole number"),
        ('[llm]\ntemperature = "hot"\n', {}, "llm.temperature must be a number"),
        ("[llm]\nsystem_prompt = 5\n", {}, "llm.system_prompt must be a string"),
        ("[stt]\nmodel = 5\n", {}, "stt.model must be a file path"),
        ("", {"EDGEVOICE_VAD_HANGOVER_MS": "long"}, "EDGEVOICE_VAD_HANGOVER_MS must be a number, not 'long'"),
        ("vad = 3\n", {}, "[vad] must be a table"),
        ("[vad]\nframe_ms = 25\n", {}, "vad.frame_ms must be 10, 20 or 30"),
        ("[vad]\nspeculate_idle_ms = -20\n", {}, "vad.speculate_idle_ms must be 0 (off) or more"),
        ("", {"EDGEVOICE_VAD_FRAME_MS": "25"}, "vad.frame_ms must be 10, 20 or 30"),
        ("[vad]\naggressiveness = 4\n", {}, "vad.aggressiveness must be 0 to 3"),
        ("[vad]\nhangover_ms = 10\n", {}, "vad.hangover_ms must be at least one frame"),
        ("[vad]\nmax_utterance_ms = 999\n", {}, "vad.max_utterance_ms must be at least 1000"),
        ("[stt]\nthreads = 0\n", {}, "threads must be at least 1"),
        ("[stt]\naudio_ctx_min = 2000\n", {}, "stt.audio_ctx_min must be 64 to 1500"),
        ("[stt]\ntemperature_inc = -0.2\n", {}, "stt.temperature_inc must be 0 (off) to 1"),
        ("[llm]\nmax_reply_tokens = 4096\n", {}, "llm.max_reply_tokens must be 1 to context_tokens"),
        ("[llm]\ntop_p = 0\n", {}, "llm.top_p must be in (0, 1]"),
        ('[llm]\nkv_cache = "q4"\n', {}, "llm.kv_cache must be one of q8_0, f16"),
        ("", {"EDGEVOICE_LLM_KV_CACHE": "f32"}, "llm.kv_cache must be one of q8_0, f16"),
        ("[tts]\nmax_words = -1\n", {}, "tts.max_words must be 0 (off) or more"),
        ("[tts]\nmax_phonemes = -2\n", {}, "tts.max_phonemes must be 0 (off) or more"),
        ("[tts]\nlength_scale = 5\n", {}, "tts.length_scale must be 0.3 to 3"),
        ("[tts]\nnoise_scale = -0.1\n", {}, "tts.noise_scale must be 0 to 2"),
        ("", {"EDGEVOICE_TTS_NOISE_W_SCALE": "3"}, "tts.noise_w_scale must be 0 to 2"),
        ("[tts]\nfirst_clause_words = 0\n", {}, "tts.first_clause_words must be at least 1"),
    ],
)
def test_bad_values_raise_config_error(tmp_path: Path, toml: str, environ: dict[str, str], message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)
    assert message in str(caught.value)
    assert isinstance(caught.value, EdgevoiceError)


def test_every_range_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[vad]\nframe_ms = 25\naggressiveness = 9\n")
    with pytest.raises(ConfigError, match=r"frame_ms must be 10, 20 or 30; vad\.aggressiveness must be 0 to 3"):
        load_config(path, {})


def test_invalid_toml_raises_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[vad\nframe_ms = \n")
    with pytest.raises(ConfigError, match="is not valid TOML") as caught:
        load_config(path, {})
    assert str(path) in str(caught.value)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_config(path, {})
    assert str(path) in str(caught.value)


def test_missing_file_named_by_environment_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, {"EDGEVOICE_CONFIG": str(tmp_path / "absent.toml")})


def test_unreadable_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path, {})  # a directory
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[llm]\nsystem_prompt = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path, {})


def test_data_dir_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f'data_dir = "{tmp_path / "state"}"\n')
    assert load_config(path, {}).data_dir == tmp_path / "state"


def test_non_table_section_with_environment_override_raises_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "vad = 3\n")
    with pytest.raises(ConfigError, match=r"\[vad\] must be a table"):
        load_config(path, {"EDGEVOICE_VAD_HANGOVER_MS": "300"})


def test_data_dir_comes_from_the_given_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEVOICE_DATA_DIR", str(tmp_path / "from-process"))
    assert load_config(None, {"EDGEVOICE_DATA_DIR": str(tmp_path / "given")}).data_dir == tmp_path / "given"


def test_string_setting_from_environment_that_looks_like_a_number() -> None:
    assert load_config(None, {"EDGEVOICE_LLM_SYSTEM_PROMPT": "42"}).llm.system_prompt == "42"


def test_bad_data_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data_dir must be a file path"):
        load_config(write(tmp_path, "data_dir = 5\n"), {})
