"""llama-cpp-python's OpenAI-compatible server, run as `python -m llama_cpp.server` runs it, with its
weights loaded the way edgevoice loads them: without the AMX buffers that crash a build for an AMX
CPU (edgevoice/engines/llama_load.py). Usage: python tests/support/llama_server.py ARGS...
"""

from llama_cpp.server.__main__ import main

from edgevoice.engines.llama_load import weights_in_plain_buffers

if __name__ == "__main__":
    with weights_in_plain_buffers():
        main()
