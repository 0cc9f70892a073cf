"""Benchmark peers: Triton (nvidia-pytriton) and MLServer, each run from its own venv.

`venvs.py` creates the venvs; `triton_server.py` and `mlserver_runtime.py` run inside them, never
in the project environment. Started by bench/servers.py.
"""
