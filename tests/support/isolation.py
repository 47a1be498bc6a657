"""What one tenant's kernel tries against another's on a shared node (tests/instances and the GPU
check in tests/agent run it).

`PROBES` runs in a kernel with `TARGET` (a JSON string) defined before it: the other instance's
server pid and uid, socket, runtime folder, working directory and home. Every probe prints "ok"
or the exception's name, so a test sees exactly which step was refused; run against the kernel's
own instance it is the control that shows the probes succeed where nothing stops them.
"""

PROBE_NAMES = ["environ", "list_work", "write_work", "list_home", "connect_server", "list_runtime", "signal"]

PROBES = r"""
import json, os, socket
target = json.loads(TARGET)
def probe(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__
def connect(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
def write(folder):
    with open(os.path.join(folder, "planted-by-a.txt"), "w") as f:
        f.write("x")
listening_as_b = [line for line in open("/proc/net/tcp").read().splitlines()[1:]
                  + open("/proc/net/tcp6").read().splitlines()[1:]
                  if line.split()[3] == "0A" and line.split()[7] == str(target["uid"])]
print(json.dumps({
    "environ": probe(lambda: open(f"/proc/{target['pid']}/environ", "rb").read()),
    "list_work": probe(lambda: os.listdir(target["work"])),
    "write_work": probe(lambda: write(target["work"])),
    "list_home": probe(lambda: os.listdir(target["home"])),
    "connect_server": probe(lambda: connect(target["socket"])),
    "list_runtime": probe(lambda: os.listdir(target["runtime"])),
    "signal": probe(lambda: os.kill(target["pid"], 0)),
    "tcp_listeners": len(listening_as_b),
    "uid": os.getuid(),
}))
"""


def probes_code(target: dict) -> str:
    """The probes, aimed at `target`, ready to run in a kernel."""
    import json

    return f"TARGET = {json.dumps(json.dumps(target))}\n" + PROBES
