#!/usr/bin/python3
"""Proves tests/deploy/validate.py can fail: copies what it reads (deploy/,
docker-compose.yml, common/rt_admin.c) into a temp dir, checks the copy
passes, then breaks one thing at a time and expects validate.py to exit
non-zero with a FAIL line naming the problem.

    python3 tests/deploy/selftest.py --root DIR --bin-dir DIR

ctest: deploy.selftest. Prints "MISSED: <mutation>" for a mistake
validate.py let through (or "BROKEN:" when a mutation no longer applies to
the files) and "selftest: N caught, M missed"; exits non-zero on any miss.
It also applies the documented alternatives (VARIANTS), which must pass.
"""
import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
VALIDATE = os.path.join(HERE, "validate.py")


class Broken(Exception):
    pass


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def dump(path, docs):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


def edit_yaml(rel, fn):
    def apply(root, bin_dir):
        path = os.path.join(root, rel)
        docs = load(path)
        fn(docs)
        dump(path, docs)
    return apply


def edit_text(rel, old, new):
    def apply(root, bin_dir):
        path = os.path.join(root, rel)
        text = open(path, encoding="utf-8").read()
        if old not in text:
            raise Broken("%s no longer contains %r" % (rel, old))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new))
    return apply


def container(docs):
    return docs[0]["spec"]["template"]["spec"]["containers"][0]


def env(docs, name):
    for e in container(docs).get("env") or []:
        if e["name"] == name:
            return e
    raise Broken("no env %s" % name)


def replace_env(docs, name, entry):
    """Replaces env `name` by `entry` (a value instead of a valueFrom, ...)."""
    e = env(docs, name)
    e.clear()
    e.update(dict(entry, name=name))


def remove_file(rel, kustomization_line):
    def apply(root, bin_dir):
        os.remove(os.path.join(root, rel))
        edit_text("deploy/k8s/kustomization.yaml", kustomization_line, "")(root, bin_dir)
    return apply


def compose(fn):
    def f(docs):
        fn(docs[0]["services"])
    return edit_yaml("docker-compose.yml", f)


def set_(d, key, value):
    if key not in d:
        raise Broken("no key %s" % key)
    d[key] = value


def fake_service_binary(root, bin_dir):
    """A new service binary with no manifests appears in bin/ (a name no
    service has: bin/ holds symlinks to the real binaries)."""
    path = os.path.join(bin_dir, "lesson-scheduler")
    with open(path, "w", encoding="utf-8") as f:
        f.write("#!/bin/sh\n"
                "echo 'lesson-scheduler is configured with environment variables only:'\n"
                "echo\n"
                "echo '  NATS_URL                     NATS server URL(s)'\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


WS = "deploy/k8s/ws-edge-deployment.yaml"
AGG = "deploy/k8s/analytics-aggregator-statefulset.yaml"
NOTIFY = "deploy/k8s/notification-dispatcher-deployment.yaml"

# (what is broken, the text its FAIL line must contain, how)
MUTATIONS = [
    ("ws-edge grace period below WS_DRAIN_MS",
     "terminationGracePeriodSeconds (5 s) set and > WS_DRAIN_MS",
     edit_yaml(WS, lambda d: set_(d[0]["spec"]["template"]["spec"],
                                  "terminationGracePeriodSeconds", 5))),
    ("ws-edge WS_DRAIN_MS raised past the grace period",
     "> WS_DRAIN_MS (60000 ms)",
     edit_yaml(WS, lambda d: set_(env(d, "WS_DRAIN_MS"), "value", "60000"))),
    ("ws-edge sets a variable it does not read",
     "env WS_MAX_CONNECTIONS is in `ws-edge --help`",
     edit_yaml(WS, lambda d: container(d)["env"].append(
         {"name": "WS_MAX_CONNECTIONS", "value": "1000"}))),
    ("ws-edge env value not a string",
     "env WS_THREADS value is a string",
     edit_yaml(WS, lambda d: set_(env(d, "WS_THREADS"), "value", 2))),
    ("ws-edge EDGE_ID fixed instead of the pod name",
     "EDGE_ID is the pod name",
     edit_yaml(WS, lambda d: replace_env(d, "EDGE_ID", {"value": "edge-1"}))),
    ("ws-edge as NATS user auth",
     "NATS_USER 'auth' is ws-edge",
     edit_yaml(WS, lambda d: set_(env(d, "NATS_USER"), "value", "auth"))),
    ("ws-edge NATS password inline instead of from a Secret",
     "NATS_PASSWORD comes from a Secret",
     edit_yaml(WS, lambda d: replace_env(d, "NATS_PASSWORD", {"value": "x"}))),
    ("ws-edge readiness on a path nothing serves",
     "readinessProbe is GET /readyz",
     edit_yaml(WS, lambda d: set_(container(d)["readinessProbe"]["httpGet"], "path", "/ready"))),
    ("ws-edge liveness on another port",
     "livenessProbe is GET /healthz",
     edit_yaml(WS, lambda d: set_(container(d)["livenessProbe"]["httpGet"], "port", 9101))),
    ("ws-edge WS_PORT moved away from its containerPort",
     "WS_PORT is 8080 (got 8081)",
     edit_yaml(WS, lambda d: set_(env(d, "WS_PORT"), "value", "8081"))),
    ("ws-edge terminates TLS but probes speak HTTP",
     "scheme HTTP matches WS_TLS_* set",
     edit_yaml(WS, lambda d: container(d)["env"].extend(
         [{"name": "WS_TLS_CERT", "value": "/etc/ws-edge/tls/tls.crt"},
          {"name": "WS_TLS_KEY", "value": "/etc/ws-edge/tls/tls.key"}]))),
    ("ws-edge allows every origin",
     "WS_ALLOWED_ORIGINS is a list of https:// origins, not *",
     edit_yaml("deploy/k8s/ws-edge-config.yaml",
               lambda d: set_(d[0]["data"], "WS_ALLOWED_ORIGINS", "*"))),
    ("ws-edge more event loops than its CPU limit",
     "WS_THREADS (8) set, at most the CPU limit",
     edit_yaml(WS, lambda d: set_(env(d, "WS_THREADS"), "value", "8"))),
    ("ws-edge without a CPU limit",
     "cpu and memory requests and limits",
     edit_yaml(WS, lambda d: container(d)["resources"]["limits"].pop("cpu"))),
    ("ws-edge allowed to escalate privileges",
     "no privilege escalation",
     edit_yaml(WS, lambda d: set_(container(d)["securityContext"],
                                  "allowPrivilegeEscalation", True))),
    ("ws-edge Service exposed as a LoadBalancer (with /metrics)",
     "one ClusterIP Service in front",
     edit_yaml("deploy/k8s/ws-edge-service.yaml",
               lambda d: set_(d[0]["spec"], "type", "LoadBalancer"))),
    ("Ingress routes every path, /metrics included",
     "routes only /ws (Exact)",
     edit_yaml("deploy/k8s/ws-edge-ingress.example.yaml",
               lambda d: d[0]["spec"]["rules"][0]["http"]["paths"][0].update(
                   {"path": "/", "pathType": "Prefix"}))),
    ("Ingress cuts idle WebSockets after 30 s",
     "nginx proxy-read-timeout (30 s) outlasts two ping intervals",
     edit_yaml("deploy/k8s/ws-edge-ingress.example.yaml",
               lambda d: set_(d[0]["metadata"]["annotations"],
                              "nginx.ingress.kubernetes.io/proxy-read-timeout", "30"))),
    ("ws-edge HPA removed",
     "Deployment ws-edge: one HorizontalPodAutoscaler targets it",
     remove_file("deploy/k8s/ws-edge-hpa.yaml", "  - ws-edge-hpa.yaml\n")),
    ("ws-edge PDB blocks every drain",
     "minimum replicas (2) > PDB minAvailable",
     edit_yaml("deploy/k8s/ws-edge-pdb.yaml",
               lambda d: d[0].update({"spec": {"minAvailable": 2,
                                               "selector": d[0]["spec"]["selector"]}}))),
    ("kustomization forgets a manifest",
     "kustomization.yaml lists ws-edge-pdb.yaml",
     edit_text("deploy/k8s/kustomization.yaml", "  - ws-edge-pdb.yaml\n", "")),
    ("kustomization applies an example Secret",
     "ws-edge-secret.example.yaml is not applied by kustomization",
     edit_text("deploy/k8s/kustomization.yaml", "resources:\n",
               "resources:\n  - ws-edge-secret.example.yaml\n")),
    ("a Secret key the example does not show",
     "Secret unpuzzle-ws-edge/NATS_PASS is shown",
     edit_yaml(WS, lambda d: set_(env(d, "NATS_PASSWORD")["valueFrom"]["secretKeyRef"],
                                  "key", "NATS_PASS"))),
    ("analytics replica id not the pod name",
     "ANALYTICS_REPLICA_ID is the pod name",
     edit_yaml(AGG, lambda d: set_(env(d, "ANALYTICS_REPLICA_ID")["valueFrom"]["fieldRef"],
                                   "fieldPath", "metadata.uid"))),
    ("analytics as a Deployment",
     "analytics-aggregator runs as a StatefulSet",
     edit_yaml(AGG, lambda d: set_(d[0], "kind", "Deployment"))),
    ("analytics replicas up to the partition count",
     "replicas (16) stay below ANALYTICS_PARTITIONS (16)",
     edit_yaml(AGG, lambda d: set_(d[0]["spec"], "replicas", 16))),
    ("analytics governing Service not headless",
     "serviceName 'analytics-aggregator' is a headless Service",
     edit_yaml("deploy/k8s/analytics-aggregator-service.yaml",
               lambda d: d[0]["spec"].pop("clusterIP"))),
    ("analytics readiness on the wrong port",
     "readinessProbe is GET /readyz",
     edit_yaml(AGG, lambda d: set_(container(d)["readinessProbe"]["httpGet"], "port", 9101))),
    ("analytics without its DATABASE_URL",
     "required DATABASE_URL is set",
     edit_yaml(AGG, lambda d: container(d).update(
         {"env": [e for e in container(d)["env"] if e["name"] != "DATABASE_URL"]}))),
    ("analytics PDB removed",
     "StatefulSet analytics-aggregator: one PodDisruptionBudget selects its pods",
     remove_file("deploy/k8s/analytics-aggregator-pdb.yaml",
                 "  - analytics-aggregator-pdb.yaml\n")),
    ("notification-dispatcher database password inline instead of from a Secret",
     "Deployment notification-dispatcher: DATABASE_URL comes from a Secret",
     edit_yaml(NOTIFY, lambda d: replace_env(d, "DATABASE_URL",
                                             {"value": "postgresql://u:p@db/unpuzzle"}))),
    ("notification-dispatcher drain longer than its grace period",
     "> NOTIFY_DRAIN_MS (60000 ms)",
     edit_yaml(NOTIFY, lambda d: set_(env(d, "NOTIFY_DRAIN_MS"), "value", "60000"))),
    ("compose drops notification-dispatcher",
     "compose runs notification-dispatcher",
     compose(lambda s: s.pop("notification-dispatcher"))),
    ("compose drops analytics-aggregator",
     "compose runs analytics-aggregator",
     compose(lambda s: s.pop("analytics-aggregator"))),
    ("compose ws-edge stopped before its drain ends",
     "stop_grace_period (5s) > WS_DRAIN_MS",
     compose(lambda s: set_(s["ws-edge"], "stop_grace_period", "5s"))),
    ("compose ws-edge healthcheck on the wrong port",
     "service ws-edge: healthcheck GETs /readyz on port 8080",
     compose(lambda s: s["ws-edge"]["healthcheck"].update(
         {"test": [t.replace("/8080", "/9101") for t in s["ws-edge"]["healthcheck"]["test"]]}))),
    ("compose ws-edge without the dev front end's origin",
     "WS_ALLOWED_ORIGINS allows http://localhost:3000",
     compose(lambda s: set_(s["ws-edge"]["environment"], "WS_ALLOWED_ORIGINS",
                            "http://example.com"))),
    ("compose analytics with another service's NATS password",
     "compose analytics-aggregator: NATS_PASSWORD is ${ANALYTICS_AGGREGATOR_NATS_PASSWORD",
     compose(lambda s: set_(s["analytics-aggregator"]["environment"], "NATS_PASSWORD",
                            "${AUTH_NATS_PASSWORD:-devOnlyAuthNatsPassword}"))),
    ("compose analytics scaled with one fixed replica id",
     "one container (a fixed ANALYTICS_REPLICA_ID must not be shared)",
     compose(lambda s: s["analytics-aggregator"].update({"scale": 2}))),
    ("compose analytics does not wait for the migrations",
     "service analytics-aggregator: waits for the migrations",
     compose(lambda s: s["analytics-aggregator"]["depends_on"].pop("migrate"))),
    ("compose sets a variable auth does not read",
     "env WS_PORT is in `auth --help`",
     compose(lambda s: s["auth"]["environment"].update({"WS_PORT": "8080"}))),
    ("Dockerfile lists binaries one by one",
     "copies every executable of build/bin",
     edit_text("deploy/docker/Dockerfile",
               "find /build/bin -maxdepth 1 -type f -perm -u+x -not -name 'bench-*' "
               "-exec cp {} /out/bin/ \\;",
               "cp /build/bin/auth /out/bin/")),
    ("Dockerfile does not expose ws-edge's port",
     "EXPOSEs ws-edge's port 8080",
     edit_text("deploy/docker/Dockerfile", "EXPOSE 8080 9101 9102", "EXPOSE 9101 9102")),
    ("a new service binary without manifests",
     "service binary lesson-scheduler has a deployment spec",
     fake_service_binary),
]


def tls_in_pod(docs):
    """The header's alternative: ws-edge terminates TLS from a Secret volume."""
    pod = docs[0]["spec"]["template"]["spec"]
    ct = container(docs)
    ct["env"] += [{"name": "WS_TLS_CERT", "value": "/etc/ws-edge/tls/tls.crt"},
                  {"name": "WS_TLS_KEY", "value": "/etc/ws-edge/tls/tls.key"}]
    ct["volumeMounts"].append({"name": "tls", "mountPath": "/etc/ws-edge/tls", "readOnly": True})
    pod["volumes"].append({"name": "tls", "secret": {"secretName": "ws-edge-tls"}})
    for probe in ("livenessProbe", "readinessProbe"):
        ct[probe]["httpGet"]["scheme"] = "HTTPS"


# Changes that must still pass (documented alternatives).
VARIANTS = [
    ("ws-edge terminating TLS itself, as its header describes", edit_yaml(WS, tls_in_pod)),
]


def copy_tree(root, dst):
    shutil.copytree(os.path.join(root, "deploy"), os.path.join(dst, "deploy"))
    shutil.copy(os.path.join(root, "docker-compose.yml"), dst)
    os.makedirs(os.path.join(dst, "common"))
    shutil.copy(os.path.join(root, "common", "rt_admin.c"), os.path.join(dst, "common"))


def copy_bins(bin_dir, dst):
    os.makedirs(dst)
    for name in os.listdir(bin_dir):
        os.symlink(os.path.join(bin_dir, name), os.path.join(dst, name))


def run_validate(root, bin_dir):
    p = subprocess.run([sys.executable, VALIDATE, "--root", root, "--bin-dir", bin_dir],
                       capture_output=True, text=True, timeout=300, check=False)
    return p.returncode, p.stdout + p.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--bin-dir")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    bin_dir = os.path.abspath(args.bin_dir or os.path.join(root, "build", "bin"))

    caught = missed = 0
    with tempfile.TemporaryDirectory(prefix="deploy-selftest-") as tmp:
        base, base_bin = os.path.join(tmp, "base"), os.path.join(tmp, "base-bin")
        copy_tree(root, base)
        copy_bins(bin_dir, base_bin)
        rc, out = run_validate(base, base_bin)
        if rc != 0:
            print("MISSED: the unchanged copy does not pass validate.py:\n" + out)
            return 1
        for i, (what, apply) in enumerate(VARIANTS):
            work, work_bin = os.path.join(tmp, "v%d" % i), os.path.join(tmp, "v%d-bin" % i)
            copy_tree(root, work)
            copy_bins(bin_dir, work_bin)
            apply(work, work_bin)
            rc, out = run_validate(work, work_bin)
            if rc == 0:
                caught += 1
                print("passes: %s" % what)
            else:
                missed += 1
                print("MISSED: %s should pass; validate.py exited %d:\n%s"
                      % (what, rc, "\n".join("    " + l for l in out.splitlines())))
        for i, (what, expect, apply) in enumerate(MUTATIONS):
            work, work_bin = os.path.join(tmp, "m%d" % i), os.path.join(tmp, "m%d-bin" % i)
            copy_tree(root, work)
            copy_bins(bin_dir, work_bin)
            try:
                apply(work, work_bin)
            except (Broken, KeyError, IndexError, TypeError) as e:
                print("BROKEN: %s: the mutation no longer applies (%s: %s)"
                      % (what, type(e).__name__, e))
                missed += 1
                continue
            rc, out = run_validate(work, work_bin)
            fails = [line for line in out.splitlines() if line.startswith("FAIL: ")]
            if rc != 0 and any(expect in line for line in fails):
                caught += 1
                print("caught: %s" % what)
            else:
                missed += 1
                print("MISSED: %s: expected a failure containing %r; validate.py exited %d:\n%s"
                      % (what, expect, rc, "\n".join("    " + l for l in out.splitlines())))
            shutil.rmtree(work)
            shutil.rmtree(work_bin)
    print("selftest: %d caught, %d missed" % (caught, missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
