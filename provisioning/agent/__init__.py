"""The node agent: one process per GPU host, the data plane of the neocloud.

It registers with the portal, reports inventory and telemetry, and receives the desired state of
its workloads. It never imports Django nor anything from `apps/` or `portal/`, and needs nothing
beyond the standard library except `nvidia-ml-py` (module `pynvml`) on a real GPU host, so a bare
checkout with `PYTHONPATH=.` runs it. Only `nvml.py` touches pynvml.

Modules: `nvml` (raw NVML reads), `host` (CPU, RAM, disk), `inventory` (the wire format and the
pure parsers from raw reads), `simulate` (clearly labelled fake GPUs), `client` (the HTTP
protocol), `loop` (register, heartbeat, telemetry), `main` (the command line), and the package
`workloads` (JupyterLab notebook servers started and stopped to the portal's desired state, with
a warm pool; it needs `jupyterlab` and `ipykernel` installed for the interpreter that runs the
agent, and nothing else beyond the standard library).
"""
