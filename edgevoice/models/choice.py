"""`edgevoice models use NAME`: choose the language model by name, in the config file ([llm] name).

The choice is one line of the TOML file the daemon reads, so it is seen, kept and undone like any
other setting; the rest of the file (comments included) is left as it was.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from edgevoice.atomic import write_atomic
from edgevoice.config import Config, load_config
from edgevoice.errors import ConfigError, ModelError
from edgevoice.models.registry import DEFAULT_LLM_NAME, LLM_MODELS, Kind, resolve

_SECTION = re.compile(r"^\[\s*([\w.-]+)\s*\][ \t]*(?:#.*)?$", re.MULTILINE)
_NAME_LINE = re.compile(r"^[ \t]*#?[ \t]*name[ \t]*=.*$", re.MULTILINE)


def set_llm_name(text: str, name: str) -> str:
    """text (a TOML config) with [llm] name set to name: an existing name line, set or commented out,
    is replaced; otherwise the line goes first in [llm], and [llm] last in the file when it has none."""
    line = f'name = "{name}"'
    headers = list(_SECTION.finditer(text))
    for number, header in enumerate(headers):
        if header.group(1) != "llm":
            continue
        end = headers[number + 1].start() if number + 1 < len(headers) else len(text)
        body = text[header.end() : end]
        if (found := _NAME_LINE.search(body)) is not None:
            body = body[: found.start()] + line + body[found.end() :]
        else:
            body = "\n" + line + body
        return text[: header.end()] + body + text[end:]
    separator = "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
    return f"{text}{separator}[llm]\n{line}\n"


def config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path:
    path = explicit or (Path(environ["EDGEVOICE_CONFIG"]) if environ.get("EDGEVOICE_CONFIG") else None)
    if path is None:
        raise ConfigError(
            "models use writes the choice into a config file: pass --config FILE or set EDGEVOICE_CONFIG "
            '(FILE is created when missing), or set [llm] name = "NAME" yourself'
        )
    return path


def use_model(path: Path, name: str, environ: Mapping[str, str]) -> Config:
    """Set [llm] name = name in the config file at path (created when missing); the model must be
    installed. Returns the config as the daemon will now load it."""
    if name not in LLM_MODELS:
        raise ConfigError(f"no language model named {name!r}; known: {', '.join(LLM_MODELS)}")
    without_file = {key: value for key, value in environ.items() if key != "EDGEVOICE_CONFIG"}
    before = load_config(path, environ) if path.exists() else load_config(None, without_file)
    resolve(_named(before, name), Kind.LLM)  # not installed: say how, and change nothing
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    try:
        write_atomic(path, set_llm_name(text, name).encode("utf-8"), mode=mode)
    except OSError as err:
        raise ConfigError(f"cannot write config file {path}: {err.strerror or err}") from None
    return load_config(path, environ)


def _named(config: Config, name: str) -> Config:
    return dataclasses.replace(config, llm=dataclasses.replace(config.llm, model=None, name=name))


def describe_choices(config: Config) -> list[str]:
    """One line per known model: its name, whether it is chosen, and where it is or how to get it."""
    chosen = config.llm.name or DEFAULT_LLM_NAME
    lines = []
    for name in LLM_MODELS:
        mark = "*" if name == chosen and config.llm.model is None else " "
        try:
            where = str(resolve(_named(config, name), Kind.LLM).path)
        except ModelError as err:
            where = str(err)
        lines.append(f"{mark} {name}: {where}")
    if config.llm.model is not None:
        lines.append(f"[llm] model = {config.llm.model} is set and wins over the name")
    return lines
