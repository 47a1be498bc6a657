"""Launch benchmark: click-to-ready of a GPU notebook through the real portal, warm pool and cold.

    .venv/bin/python -m bench.launch [--launches 20] [--pool 2] [--cold 5] [--bare 5] [--fix-channel-timeout]

It sets up its own database ("bench_launch" on the embedded PostgreSQL under .data/bench unless
PORTAL_DATA_DIR says otherwise; dropped and migrated afresh every run), loads the demo catalog,
creates a user (production password hasher) and an organization through the accounts services,
and starts the real processes as production runs them, with the command lines of
devtools/commands.py: uvicorn (portal.asgi), the nginx front proxy in front of it, a Celery
worker (prefork, concurrency 2) and Celery beat, and ONE node agent
(`python -m provisioning.agent.main --simulate 8xH100-80GB --notebook-pool N`): SIMULATED GPUs,
real JupyterLab servers. The benchmark logs in through the proxy like a browser does.

Click-to-ready is timed from the launch call (POST /api/v1/organizations/<slug>/instances/)
until `GET /nb/<slot>/api/status` answers 200 through the proxy with the session cookie: the
detail API is polled every ~20 ms until the instance is running with a notebook_url, then the
notebook URL every ~20 ms. Each launch is stopped (and waited for) before the next one; in the
pooled phase the next launch also waits until the pool is full again, so every pooled launch is
served from a full pool. The cold phase restarts the same agent with --notebook-pool 0.

Baseline, measured in the same run on the same machine, interleaved with the cold launches: a bare
`jupyter lab` start (`python -m jupyterlab`, the program the agent runs; as the same unprivileged
user, with a fresh HOME/Jupyter dirs, token in JUPYTER_TOKEN as the agent passes it) from process
spawn until `GET /api/status` with the token answers 200. Also timed, for reference: a bare
`jupyter server` (`python -m jupyter_server` with JUPYTER_NO_CONFIG=1, i.e. no server extensions).
The ratio is cold click-to-ready p50 / bare `jupyter lab` p50.

Goals: pooled p50 < 1 s; cold ≤ 1.3 × the bare start. Figures are printed, not asserted.

--fix-channel-timeout runs the web process with the channel layer's Redis connections made
without a socket timeout: an A/B for the long-poll failure described in bench/README.md (redis-py
8's 5 s default socket timeout cuts channels_redis's 5 s blocking read, so every long-poll that
waits 5 s answers HTTP 500 and the agent backs off). Without the flag the portal runs unchanged.

The modules, one purpose each: `config` (what is launched, limits and goals), `processes` (the
children this run starts and how they are stopped), `startup` (database, accounts, portal and
agent processes), `measure` (one launch, one stop, CPU use), `baseline` (bare Jupyter starts),
`phases` (the pooled and the cold phase), `report` (the printed figures) and `__main__` (the
command line).
"""
