"""Workloads the agent runs on its host: for now JupyterLab notebook servers.

Modules: `identity` (who workloads run as), `slot` (directories and files on disk), `process`
(/proc facts, stopping a process tree), `notebook` (one Jupyter server), `kernel_launcher` (the
kernel entry point that applies the GPU assignment), `pool` (warm, unassigned servers), `spec`
(the desired-state wire format and its merge), `supervisor` (converges actual to desired, one
thread per workload), `watch` (the long-poll thread), `service` (wiring for the agent loop),
`ssh` and `ssh_supervisor` (GPU instances over SSH: an sshd per instance), `bare_metal` (whole
nodes over SSH: a health check before the hand-over, a wipe of account and home on every stop).

Across agent restarts: a clean shutdown (SIGTERM/SIGINT) stops the warm pool's unassigned
servers and leaves instance servers running, so an agent upgrade does not kill users' notebooks.
Every server's facts (pid and its start time, port, token, instance) are kept in its slot's
`slot.json`; the next agent run re-adopts each server that still runs and answers with its token,
and stops everything else it finds under `slots/` (unassigned pool servers, servers that do not
answer, and a server whose record was never written, found by its command line). So no Jupyter
process is left that the agent cannot track. Until the first desired state arrives, re-adopted
servers are left alone; then they are reported "running" or stopped like any other.
"""
