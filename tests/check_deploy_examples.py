#!/usr/bin/env python3
"""Checks examples/deploy/Dockerfile and kubernetes/hello.yaml, which no test
can run here (no container runtime, no Kubernetes): their numbers must agree
(the grace period covers the drain delay and the stop, the readiness probe
notices a 503 within the drain delay, the probes hit the admin port's
/readyz and /livez), and the real program must accept their arguments.

usage: check_deploy_examples.py EXAMPLES_DEPLOY_DIR HELLO_BINARY
"""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def flag(args, name):
    """The value after `name` in an argument list, as an int, or None."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return int(args[i + 1]) if args[i + 1].isdigit() else args[i + 1]
    return None


def accepted_by(binary, args, where):
    """The program parses and validates `args` (--help: nothing starts)."""
    r = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=20)
    check(r.returncode == 0, f"{where}: {binary} refuses its arguments: {r.stderr.strip()}")


def run_healthcheck(binary, cmd, probe, admin_port):
    """Runs the image's HEALTHCHECK command against the program started with
    the image's CMD (on free loopback ports): it must pass while the cluster
    runs and fail once it stopped."""
    args = list(cmd)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = "0"
    args[args.index("--admin") + 1] = "127.0.0.1:0"
    args += ["--workers", "1", "--drain-delay", "0"]
    p = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline()  # the ready line, or "" if it exited
        m = re.search(r"admin on http://127\.0\.0\.1:(\d+)", line)
        check(m is not None, f"no admin endpoint in the ready line: {line!r}")
        if not m:
            return
        command = [part.replace(f"/{admin_port}", f"/{m.group(1)}") for part in probe]
        ok = subprocess.run(command, timeout=10)
        check(ok.returncode == 0, "HEALTHCHECK fails against a running cluster")
    finally:
        p.terminate()
        p.wait(timeout=20)
    down = subprocess.run(command, timeout=10, stderr=subprocess.DEVNULL)
    check(down.returncode != 0, "HEALTHCHECK passes with no cluster running")


def main():
    deploy, binary = Path(sys.argv[1]), sys.argv[2]

    # --- Kubernetes ---------------------------------------------------------
    docs = [d for d in yaml.safe_load_all((deploy / "kubernetes" / "hello.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    check({"Deployment", "Service"} <= kinds.keys(), "hello.yaml needs a Deployment and a Service")
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    accepted_by(binary, args, "hello.yaml")
    drain, stop = flag(args, "--drain-delay"), flag(args, "--shutdown-timeout")
    check(isinstance(drain, int) and drain > 0, "hello.yaml: --drain-delay must be set")
    check(isinstance(stop, int), "hello.yaml: --shutdown-timeout must be set")
    grace_ms = pod["terminationGracePeriodSeconds"] * 1000
    check(grace_ms >= drain + stop + 1000,
          f"terminationGracePeriodSeconds ({grace_ms} ms) must exceed drain + shutdown ({drain + stop} ms) + 1 s")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    admin = flag(args, "--admin")
    check(admin is not None and admin.endswith(":" + str(ports.get("admin"))),
          f"--admin {admin} must listen on the container's admin port {ports.get('admin')}")
    check(flag(args, "--port") == ports.get("http"), "--port must be the container's http port")
    ready, live = c["readinessProbe"], c["livenessProbe"]
    check(ready["httpGet"] == {"path": "/readyz", "port": "admin"}, "readinessProbe must GET /readyz on admin")
    check(live["httpGet"] == {"path": "/livez", "port": "admin"}, "livenessProbe must GET /livez on admin")
    notice_ms = ready["periodSeconds"] * ready["failureThreshold"] * 1000
    check(drain >= notice_ms, f"--drain-delay {drain} ms is shorter than the readiness probe's {notice_ms} ms")
    check(kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0,
          "a rolling update must not take a pod down before its successor is ready")
    service_port = kinds["Service"]["spec"]["ports"][0]
    check(service_port["targetPort"] == "http", "the Service must send traffic to the http port")

    # --- Dockerfile ---------------------------------------------------------
    text = (deploy / "Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]
    last = {}
    for l in instructions:
        last[l.split()[0]] = l[len(l.split()[0]):].strip()
    check(last.get("STOPSIGNAL") == "SIGTERM", "the image must stop with SIGTERM")
    check(last.get("USER") not in (None, "root", "0"), "the image must run as a non-root user")
    cmd = json.loads(last["CMD"])
    accepted_by(binary, cmd, "Dockerfile CMD")
    check(flag(cmd, "--drain-delay") == drain and flag(cmd, "--shutdown-timeout") == stop,
          "the Dockerfile and the Deployment must stop the same way")
    health = last.get("HEALTHCHECK", "")
    admin_port = str(flag(cmd, "--admin")).rsplit(":", 1)[-1]
    check(f"/dev/tcp/127.0.0.1/{admin_port}" in health and "GET /livez" in health,
          "HEALTHCHECK must probe /livez on the admin port")
    check(f"EXPOSE {flag(cmd, '--port')} {admin_port}" in text, "EXPOSE must name the service and admin ports")
    for f in ["--host", "--port", "--admin"]:
        check(flag(cmd, f) is not None, f"the Dockerfile CMD must set {f}")
    run_healthcheck(binary, cmd, json.loads(health[health.index("CMD") + 3:]), admin_port)

    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        return 1
    print("examples/deploy: Dockerfile and kubernetes/hello.yaml agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
