#!/usr/bin/env bash
# Builds .gpucheck/ (git-ignored through .git/info/exclude or not at all: pass it to the device
# tool's `carry`) for the GPU-host checks in tests/agent/gpu_*_check.py, which run on a machine
# with no network: the nvidia-ml-py and websockets wheels for its Python (3.12 on the Ubuntu 24.04
# device image seen 2026-12-08), and OpenSSH's sshd, ssh and ssh-keygen from this Debian host with
# the shared libraries they need (that image has no OpenSSH; copied libraries go only where the
# host lacks one of that name). Then, on the device, from the repository root:
#
#   G=.gpucheck; pip install --target /tmp/site $G/*.whl -q
#   for l in $G/openssh/lib/*; do n=$(basename $l); [ -e /lib/x86_64-linux-gnu/$n ] || [ -e /usr/lib/x86_64-linux-gnu/$n ] || cp $l /usr/local/lib/; done; ldconfig
#   install -m755 $G/openssh/bin/sshd /usr/sbin/sshd; install -m755 $G/openssh/bin/ssh $G/openssh/bin/ssh-keygen /usr/bin/
#   id sshd || useradd -r -M -d /run/sshd -s /usr/sbin/nologin sshd; mkdir -p -m 755 /run/sshd
#   PYTHONPATH=/tmp/site:. python3 -m tests.agent.gpu_ssh_check $OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpucheck
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out/openssh/bin" "$out/openssh/lib"
for package in nvidia-ml-py==13.615.71 "websockets==$($python -c 'import websockets; print(websockets.__version__)')"; do
  $python -m pip download "$package" --only-binary :all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --no-deps -d "$out" -q
done
cp /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen "$out/openssh/bin/"
for binary in /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen; do ldd "$binary"; done \
  | awk '$3 ~ /^\// {print $3}' | sort -u | grep -v -E 'libc\.so|libresolv|libpthread|libdl\.so|libm\.so' \
  | xargs -I{} cp -L {} "$out/openssh/lib/"
du -sh "$out"
