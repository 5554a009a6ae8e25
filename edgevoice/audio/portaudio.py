"""sounddevice, imported only when audio devices are used: it needs the PortAudio library, which a
headless box may lack. Shared by the box's own mic and speaker and by the Python client."""

from __future__ import annotations

from typing import Any

from edgevoice.errors import AudioError


def load_sounddevice() -> Any:
    import sounddevice  # noqa: PLC0415

    return sounddevice


def check_device(kind: str) -> None:
    """AudioError naming the problem when there is no default input (or output) device."""
    try:
        load_sounddevice().query_devices(kind=kind)
    except Exception as err:  # PortAudio missing (OSError) or no such device (PortAudioError)
        raise AudioError(f"no {'microphone' if kind == 'input' else 'speaker'} found ({err})") from None
