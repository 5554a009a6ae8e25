"""`edgevoice models convert`: produce the whisper.cpp file once, atomically, and skip it when up to date."""

from __future__ import annotations

import contextlib
import errno
import json
from pathlib import Path

from edgevoice.atomic import atomic_file, write_atomic
from edgevoice.errors import ModelError
from edgevoice.models.check import check_whisper_ggml
from edgevoice.models.registry import sha256_of
from edgevoice.models.whisper_ggml import WeightType, convert

CONVERTER_VERSION = 1


def _stamp_path(out: Path) -> Path:
    return out.with_name(out.name + ".source.json")


def convert_whisper(
    source_dir: Path, out: Path, weight_type: WeightType = WeightType.Q8_0, force: bool = False
) -> bool:
    """Convert source_dir/model.bin to out; return False when out was already up to date."""
    model_bin = source_dir / "model.bin"
    if not model_bin.is_file():
        raise ModelError(f"no CTranslate2 model.bin in {source_dir}")
    stamp = {"source_sha256": sha256_of(model_bin), "converter": CONVERTER_VERSION, "type": weight_type.name}
    stamp_path = _stamp_path(out)
    if not force and out.is_file() and stamp_path.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError, ModelError):
            if json.loads(stamp_path.read_text()) == stamp:
                check_whisper_ggml(out)
                return False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out, 0o644, verify=check_whisper_ggml) as stream:
            convert(source_dir, stream, weight_type)
        write_atomic(stamp_path, (json.dumps(stamp) + "\n").encode(), 0o644)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise ModelError(f"disk full while writing {out}; nothing was replaced") from None
        raise ModelError(f"cannot write {out}: {err.strerror}") from None
    return True
