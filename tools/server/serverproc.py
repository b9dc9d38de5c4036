"""Starts `lade serve` on a free loopback port for the scripts of this folder (stdlib only)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


class LadeServer:
    """`lade serve --port 0 ARGS`, stopped with SIGTERM by `stop()` or on `with` exit."""

    def __init__(self, binary, args=(), ready_timeout=300.0):
        self.log = tempfile.NamedTemporaryFile(prefix="lade-serve-", suffix=".log", delete=False)
        cmd = [binary, "serve", "--host", "127.0.0.1", "--port", "0", *args]
        env = dict(os.environ)
        env.pop("LADE_API_KEY", None)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"lade serve did not start: {line!r}\n{self.log_text()}")
        self.base = line[len("listening on "):]
        deadline = time.time() + ready_timeout
        while True:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"lade serve not ready\n{self.log_text()}")
            time.sleep(0.1)

    def log_text(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def metrics(self, api_key=None):
        req = urllib.request.Request(self.base + "/metrics")
        if api_key:
            req.add_header("Authorization", f"Bearer {api_key}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def stop(self, timeout=60.0):
        """SIGTERM, then the exit code (the process is killed if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                print("lade serve did not exit after SIGTERM; killed", file=sys.stderr)
                return None
        os.unlink(self.log.name)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def metric(text, name):
    """The value of the metric line `name value`."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


def dumps(v):
    return json.dumps(v, indent=2, sort_keys=True)
