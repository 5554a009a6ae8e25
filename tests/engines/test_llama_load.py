"""Loading llama.cpp weights without the AMX buffers whose matrix multiply crashes (engines/llama_load.py)."""

from __future__ import annotations

import threading

import llama_cpp
import llama_cpp.llama_cpp as native

from edgevoice.engines.llama_load import amx_in_build, weights_in_plain_buffers


def test_within_the_load_the_model_parameters_ask_for_plain_buffers() -> None:
    default = native.llama_model_default_params
    assert native.llama_model_default_params().use_extra_bufts
    with weights_in_plain_buffers(plain=True):
        assert not native.llama_model_default_params().use_extra_bufts
    assert native.llama_model_default_params is default
    assert native.llama_model_default_params().use_extra_bufts


def test_the_parameters_come_back_when_the_load_fails() -> None:
    default = native.llama_model_default_params
    try:
        with weights_in_plain_buffers(plain=True):
            raise ValueError("the model file was not found")
    except ValueError:
        pass
    assert native.llama_model_default_params is default


def test_without_amx_nothing_changes() -> None:
    default = native.llama_model_default_params
    with weights_in_plain_buffers(plain=False):
        assert native.llama_model_default_params is default


def test_the_build_is_asked_what_it_uses() -> None:
    info = llama_cpp.llama_print_system_info()
    assert amx_in_build() == (b"AMX_INT8 = 1" in info)


def test_two_loads_at_once_take_turns() -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def load() -> None:
        nonlocal inside, most
        with weights_in_plain_buffers(plain=True):
            with guard:
                inside += 1
                most = max(most, inside)
            threading.Event().wait(0.02)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    assert native.llama_model_default_params().use_extra_bufts
