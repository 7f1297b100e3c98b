#!/usr/bin/python3
"""Offline validation of deploy/ and docker-compose.yml (no Docker engine, no
cluster needed): parses every YAML, checks the Kubernetes objects and the
compose services against the built binaries (each service's `--help` lists
the environment it reads), the NATS users, the admin endpoints and the tree
(files they reference), and has nats-server test its configs.

    python3 tests/deploy/validate.py [--root DIR] [--bin-dir DIR] [--verbose]
                                     [--write-configmap]

--bin-dir is where the service binaries are (default <root>/build/bin; ctest
passes the build's bin/). Needs python3-yaml and nats-server (Debian
packages). ctest: deploy.validate (and deploy.selftest, which breaks copies of
the files on purpose and expects this script to notice).
Prints one line per failed check and "N passed, M failed" at the end; exits
non-zero when anything failed.
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys

import yaml

# NATS users of spec/subjects.md "Security", and the environment variable
# holding each one's password in deploy/nats/nats-server.conf.
NATS_USERS = {
    "auth": "AUTH_NATS_PASSWORD",
    "ws-edge": "WS_EDGE_NATS_PASSWORD",
    "analytics-aggregator": "ANALYTICS_AGGREGATOR_NATS_PASSWORD",
    "notification-dispatcher": "NOTIFICATION_DISPATCHER_NATS_PASSWORD",
    "django": "DJANGO_NATS_PASSWORD",
}

# How each service is deployed. A binary of build/bin that is neither here,
# nor a tool (TOOLS), nor a benchmark (bench-*) fails the run: a new service
# needs its entry here, its manifests and its compose service.
#   workload     Kubernetes kind running it (its metadata.name is the service)
#   port_var     the variable of the port serving /healthz /readyz /metrics
#   port         that port, everywhere (containerPort, Service, compose)
#   stop_var     milliseconds of work SIGTERM may take; the grace periods
#                (terminationGracePeriodSeconds, compose stop_grace_period)
#                must exceed it
#   secret_env   variables that must come from a Secret in Kubernetes
#   id_var       per-instance id: the pod name through the downward API
#   stable_id    compose must fix the id (it must survive re-creation)
#   hpa          an HPA on CPU must target it (False: none may)
#   public       browsers reach it: a ClusterIP Service behind an Ingress,
#                WS_ALLOWED_ORIGINS set, threads matched to the CPU limit
#   below_var    replicas (and any HPA max) must stay below this variable
SERVICES = {
    "auth": dict(workload="Deployment", port_var="ADMIN_PORT", port=9101,
                 stop_var="AUTH_DRAIN_MS",
                 secret_env={"SUPABASE_JWT_SECRET", "DATABASE_URL", "NATS_PASSWORD"},
                 id_var=None, stable_id=False, hpa=True, public=False, below_var=None),
    "ws-edge": dict(workload="Deployment", port_var="WS_PORT", port=8080,
                    stop_var="WS_DRAIN_MS", secret_env={"NATS_PASSWORD"},
                    id_var="EDGE_ID", stable_id=False, hpa=True, public=True, below_var=None),
    "analytics-aggregator": dict(workload="StatefulSet", port_var="ADMIN_PORT", port=9102,
                                 stop_var="ANALYTICS_CHECKPOINT_MS",
                                 secret_env={"DATABASE_URL", "NATS_PASSWORD"},
                                 id_var="ANALYTICS_REPLICA_ID", stable_id=True, hpa=False,
                                 public=False, below_var="ANALYTICS_PARTITIONS"),
    "notification-dispatcher": dict(workload="Deployment", port_var="ADMIN_PORT", port=9103,
                                    stop_var="NOTIFY_DRAIN_MS",
                                    secret_env={"DATABASE_URL", "NATS_PASSWORD"},
                                    id_var=None, stable_id=False, hpa=False, public=False,
                                    below_var=None),
}
TOOLS = {"rtctl"}
# The public service's WebSocket path (services/ws-edge/edge_loop.c).
WS_PATH = "/ws"
# The front end's dev origin compose must allow.
DEV_ORIGIN = "http://localhost:3000"
# A NATS password as nats-server reads it from the environment safely.
NATS_PASSWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
EXAMPLE_SUFFIX = ".example.yaml"


class Checker:
    def __init__(self, verbose=False):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def check(self, ok, what):
        if ok:
            self.passed += 1
            if self.verbose:
                print("ok: " + what)
        else:
            self.failed += 1
            print("FAIL: " + what)
        return ok


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---- what the code says ----

def parse_help(text):
    """Env var name -> default ("" when optional without one, None when
    required), from the `<service> --help` output of rt_config_print_help."""
    table = {}
    for line in text.splitlines():
        m = re.match(r"^  ([A-Z][A-Z0-9_]*) +(.*)$", line)
        if not m:
            continue
        rest = m.group(2)
        d = re.search(r" \(default (\S[^()]*)\)$", rest)
        if rest.endswith(" (required)"):
            table[m.group(1)] = None
        else:
            table[m.group(1)] = d.group(1) if d else ""
    return table


class Helps:
    """`<bin-dir>/<service> --help`, run once per service."""

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.cache = {}

    def get(self, service):
        if service not in self.cache:
            path = os.path.join(self.bin_dir, service)
            table, why = None, None
            if not os.access(path, os.X_OK):
                why = "%s is not built" % path
            else:
                p = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30,
                                   check=False)
                table = parse_help(p.stdout)
                if p.returncode != 0 or not table:
                    why = "%s --help: exit %d, %d variables" % (path, p.returncode, len(table))
                    table = None
            self.cache[service] = (table, why)
        return self.cache[service]


def admin_endpoints(root):
    """Paths rt_admin_respond() answers (common/rt_admin.c)."""
    path = os.path.join(root, "common", "rt_admin.c")
    if not os.path.isfile(path):
        return set()
    text = open(path, encoding="utf-8").read()
    return set(re.findall(r'memcmp\(path,\s*"(/[a-z]+)"', text))


def env_default(table, var):
    return (table or {}).get(var) or ""


def as_int(value, default=0):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def cpu_cores(q):
    q = str(q or "")
    if q.endswith("m"):
        return as_int(q[:-1]) / 1000.0
    try:
        return float(q)
    except ValueError:
        return 0.0


def duration_ms(text):
    """Compose durations: 1m30s, 15s, 500ms."""
    text = str(text or "").strip()
    units = {"h": 3600000, "m": 60000, "s": 1000, "ms": 1, "us": 0.001}
    parts = re.findall(r"([0-9.]+)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def origins_ok(value, schemes=("http://", "https://")):
    items = [o.strip() for o in str(value or "").split(",")]
    return bool(value) and value.strip() != "*" and all(
        ORIGIN_RE.match(o) and o.startswith(schemes) for o in items)


# ---- the binaries ----

def validate_binaries(c, bin_dir, helps):
    """Every binary the image ships answers --help; every service among them
    has a deployment spec. Returns the services that are built."""
    built = set()
    if not c.check(os.path.isdir(bin_dir),
                   "binaries directory %s exists (build first: scripts/build.sh)" % bin_dir):
        return built
    for name in sorted(os.listdir(bin_dir)):
        path = os.path.join(bin_dir, name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)) or name.startswith("bench-"):
            continue
        p = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30,
                           check=False)
        c.check(p.returncode == 0, "%s --help exits 0 (got %d)" % (name, p.returncode))
        if name in TOOLS:
            continue
        if c.check(name in SERVICES,
                   "service binary %s has a deployment spec in tests/deploy/validate.py "
                   "SERVICES (and manifests, a compose service)" % name):
            built.add(name)
    for service in SERVICES:
        table, why = helps.get(service)
        c.check(table is not None,
                "%s's configuration is known from its --help (%s)" % (service, why or "read"))
        if table is not None:
            for var in ("NATS_URL", "NATS_USER", "NATS_PASSWORD", SERVICES[service]["port_var"],
                        SERVICES[service]["stop_var"]):
                c.check(var in table, "%s --help lists %s" % (service, var))
            c.check(as_int(table.get(SERVICES[service]["port_var"])) == SERVICES[service]["port"],
                    "%s's default %s is %d" % (service, SERVICES[service]["port_var"],
                                               SERVICES[service]["port"]))
    return built


# ---- NATS ----

def nats_conf_users(text):
    """user -> password variable, from the authorization block."""
    users = {}
    for m in re.finditer(r'user:\s*"?([A-Za-z0-9_.-]+)"?\s*\n\s*password:\s*\$([A-Z0-9_]+)', text):
        users[m.group(1)] = m.group(2)
    return users


def render_configmap(conf_text, header):
    body = "".join(("    " + line) if line.strip() else "\n"
                   for line in conf_text.splitlines(True))
    return header + body


def nats_test(nats_server, conf, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NATS_PASSWORD")}
    env.update(env_extra)
    p = subprocess.run([nats_server, "-t", "-c", conf], env=env, capture_output=True,
                       text=True, timeout=30, check=False)
    return p.returncode, (p.stdout + p.stderr).strip()


def validate_nats(c, root, nats_server):
    conf = os.path.join(root, "deploy/nats/nats-server.conf")
    dev = os.path.join(root, "deploy/nats/nats-server.dev.conf")
    if not c.check(os.path.isfile(conf), "deploy/nats/nats-server.conf exists"):
        return {}
    text = open(conf, encoding="utf-8").read()
    users = nats_conf_users(text)
    c.check(users == NATS_USERS,
            "nats-server.conf users/password variables are %s, expected %s" % (users, NATS_USERS))
    c.check(re.search(r"^\s*jetstream\s*{[^}]*store_dir", text, re.M) is not None,
            "nats-server.conf enables JetStream with a file store_dir")
    c.check(re.search(r"^\s*(http_port|http)\s*:", text, re.M) is not None,
            "nats-server.conf has a monitoring port")
    c.check(text.count("allow_responses: true") >= 3,
            "auth, analytics-aggregator and notification-dispatcher answer with allow_responses")
    if not c.check(nats_server is not None, "nats-server is installed (apt-get install nats-server)"):
        return users
    good = {var: "p" + var.lower().replace("_", "")[:20] + "0" for var in NATS_USERS.values()}
    rc, out = nats_test(nats_server, conf, good)
    c.check(rc == 0, "nats-server -t -c deploy/nats/nats-server.conf: " + out)
    # The passwords really come from the environment: without them it refuses.
    missing = dict(good)
    del missing["DJANGO_NATS_PASSWORD"]
    rc, out = nats_test(nats_server, conf, missing)
    c.check(rc != 0 and "DJANGO_NATS_PASSWORD" in out,
            "nats-server refuses nats-server.conf without DJANGO_NATS_PASSWORD (got: %s)" % out)
    if os.path.isfile(dev):
        rc, out = nats_test(nats_server, dev, {})
        c.check(rc == 0, "nats-server -t -c deploy/nats/nats-server.dev.conf: " + out)
        dev_text = open(dev, encoding="utf-8").read()
        c.check(re.search(r"^\s*authorization\s*{", dev_text, re.M) is None
                and re.search(r"^host:\s*127\.0\.0\.1\s*$", dev_text, re.M) is not None,
                "the dev config has no authorization and listens on loopback only")
    return users


# ---- Kubernetes ----

def selector_matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class K8s:
    """Every object of deploy/k8s, by kind, and what the kustomization applies."""

    def __init__(self):
        self.objects = []  # (file, object)
        self.by_kind = {}
        self.resources = []
        self.images = set()

    def add(self, f, o):
        self.objects.append((f, o))
        self.by_kind.setdefault(o["kind"], []).append((f, o))

    def kind(self, kind, applied_only=False):
        return [(f, o) for f, o in self.by_kind.get(kind, [])
                if not applied_only or f in self.resources]


def validate_k8s(c, root, ctx, write_configmap):
    kdir = os.path.join(root, "deploy/k8s")
    if not c.check(os.path.isdir(kdir), "deploy/k8s exists"):
        return
    files = sorted(f for f in os.listdir(kdir) if f.endswith((".yaml", ".yml")))
    k8s = K8s()
    kustomization = None
    for f in files:
        path = os.path.join(kdir, f)
        try:
            docs = load_yaml_docs(path)
        except yaml.YAMLError as e:
            c.check(False, "deploy/k8s/%s parses as YAML: %s" % (f, e))
            continue
        c.check(True, "deploy/k8s/%s parses" % f)
        for d in docs:
            if not c.check(isinstance(d, dict), "deploy/k8s/%s: every document is a mapping" % f):
                continue
            if d.get("kind") == "Kustomization":
                kustomization = (f, d)
                continue
            meta = d.get("metadata") or {}
            if not c.check(bool(d.get("apiVersion")) and bool(d.get("kind"))
                           and isinstance(meta.get("name"), str) and meta.get("name"),
                           "deploy/k8s/%s: %s has apiVersion, kind and metadata.name"
                           % (f, d.get("kind"))):
                continue
            c.check("namespace" not in meta,
                    "deploy/k8s/%s: %s/%s sets no namespace (namespace-agnostic)"
                    % (f, d.get("kind"), meta.get("name")))
            k8s.add(f, d)

    # kustomization: every resource exists; every manifest but the examples is listed.
    if c.check(kustomization is not None, "deploy/k8s has a kustomization.yaml"):
        f, k = kustomization
        k8s.resources = resources = k.get("resources") or []
        for r in resources:
            c.check(os.path.isfile(os.path.join(kdir, r)), "kustomization resource %s exists" % r)
        c.check(len(set(resources)) == len(resources), "kustomization lists each resource once")
        c.check("namespace" not in k, "kustomization.yaml sets no namespace")
        for other in files:
            if other in (f,) or other.endswith(EXAMPLE_SUFFIX):
                c.check(other not in resources, "%s is not applied by kustomization" % other)
            else:
                c.check(other in resources, "kustomization.yaml lists %s" % other)
        k8s.images = {i.get("name") for i in k.get("images") or []}
    for f, o in k8s.kind("Secret"):
        c.check(f.endswith(EXAMPLE_SUFFIX),
                "deploy/k8s/%s: Secret %s is only an example (real Secrets are made out of band)"
                % (f, o["metadata"]["name"]))

    # nats ConfigMap == deploy/nats/nats-server.conf
    conf_path = os.path.join(root, "deploy/nats/nats-server.conf")
    cm_path = os.path.join(kdir, "nats-config.yaml")
    cms = [o for f, o in k8s.kind("ConfigMap") if "nats-server.conf" in (o.get("data") or {})]
    if c.check(len(cms) == 1 and os.path.isfile(conf_path),
               "one ConfigMap carries nats-server.conf"):
        conf_text = open(conf_path, encoding="utf-8").read()
        if write_configmap and cms[0]["data"]["nats-server.conf"] != conf_text:
            raw = open(cm_path, encoding="utf-8").read()
            header = raw[:raw.index("  nats-server.conf: |\n") + len("  nats-server.conf: |\n")]
            with open(cm_path, "w", encoding="utf-8") as out:
                out.write(render_configmap(conf_text, header))
            cms = [load_yaml_docs(cm_path)[0]]
            print("rewrote deploy/k8s/nats-config.yaml")
        c.check(cms[0]["data"]["nats-server.conf"] == conf_text,
                "deploy/k8s/nats-config.yaml holds deploy/nats/nats-server.conf verbatim "
                "(fix: python3 tests/deploy/validate.py --write-configmap)")

    # Where kubectl is installed (not needed otherwise): kustomize renders
    # exactly the objects of the listed files.
    kubectl = shutil.which("kubectl")
    if kubectl and kustomization is not None:
        p = subprocess.run([kubectl, "kustomize", kdir], capture_output=True, text=True,
                           timeout=60, check=False)
        if c.check(p.returncode == 0,
                   "kubectl kustomize deploy/k8s succeeds %s" % p.stderr.strip()):
            rendered = sorted((d.get("kind"), d["metadata"]["name"])
                              for d in yaml.safe_load_all(p.stdout) if d)
            listed = sorted((o["kind"], o["metadata"]["name"]) for f, o in k8s.objects
                            if f in k8s.resources)
            c.check(rendered == listed, "kubectl kustomize renders %s, the files hold %s"
                    % (rendered, listed))

    # Every workload runs a known service; every built service has one.
    workloads = {}
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"):
        for f, o in k8s.kind(kind):
            ct = ((((o.get("spec") or {}).get("template") or {}).get("spec") or {})
                  .get("containers") or [{}])[0]
            service = (ct.get("command") or [None])[0]
            where = "deploy/k8s/%s: %s %s" % (f, kind, o["metadata"]["name"])
            if c.check(service in SERVICES, where + ": command %s is a service of SERVICES"
                       % ct.get("command")):
                workloads.setdefault(service, []).append((f, o))
    for service in sorted(set(SERVICES) | ctx.built):
        c.check(len(workloads.get(service, [])) == 1
                and workloads[service][0][0] in k8s.resources,
                "deploy/k8s runs %s in exactly one applied workload (has %d)"
                % (service, len(workloads.get(service, []))))
    for service, ws in sorted(workloads.items()):
        for f, o in ws:
            validate_workload(c, ctx, k8s, service, f, o)
    validate_ingresses(c, ctx, k8s)


def resolve_env_value(k8s, e):
    """The literal value of a container env entry, following configMapKeyRef
    into the applied ConfigMaps; None if it comes from elsewhere."""
    if "value" in e:
        return e["value"]
    ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
    if ref:
        for _, cm in k8s.kind("ConfigMap", applied_only=True):
            if cm["metadata"]["name"] == ref.get("name"):
                return (cm.get("data") or {}).get(ref.get("key"))
    return None


def validate_workload(c, ctx, k8s, service, f, d):
    spec_of = SERVICES[service]
    kind = d["kind"]
    name = d["metadata"]["name"]
    where = "deploy/k8s/%s: %s %s" % (f, kind, name)
    c.check(kind == spec_of["workload"],
            where + ": %s runs as a %s" % (service, spec_of["workload"]))
    c.check(name == service, where + ": named after its service %s" % service)
    table, _ = ctx.helps.get(service)
    if table is None:
        return  # reported by validate_binaries
    spec = d.get("spec") or {}
    tmpl = spec.get("template") or {}
    pod = tmpl.get("spec") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    c.check(labels.get("app.kubernetes.io/name") == service,
            where + ": pods are labelled app.kubernetes.io/name=%s" % service)
    c.check(selector_matches((spec.get("selector") or {}).get("matchLabels"), labels),
            where + ": selector matches the pod labels")
    containers = pod.get("containers") or []
    if not c.check(len(containers) == 1, where + ": one container"):
        return
    ct = containers[0]
    c.check(ct.get("command") == [service], where + ": command is [%s]" % service)
    image = str(ct.get("image", ""))
    c.check(image.split(":")[0] in k8s.images,
            where + ": image %s is one of the kustomization's images" % image)

    # Environment: only what the binary reads, literal values as strings.
    env = {}
    for e in ct.get("env") or []:
        n = e.get("name")
        c.check(n not in env, where + ": env %s set once" % n)
        env[n] = e
        c.check(n in table, where + ": env %s is in `%s --help`" % (n, service))
        c.check(("value" in e) != ("valueFrom" in e), where + ": env %s has value or valueFrom" % n)
        if "value" in e:
            c.check(isinstance(e["value"], str),
                    where + ": env %s value is a string (quote numbers)" % n)
        vf = e.get("valueFrom") or {}
        sref = vf.get("secretKeyRef")
        if sref:
            known = [s for _, s in k8s.kind("Secret")
                     if s["metadata"]["name"] == sref.get("name")
                     and sref.get("key") in {**(s.get("data") or {}),
                                             **(s.get("stringData") or {})}]
            c.check(bool(known), where + ": env %s's Secret %s/%s is shown in a %s"
                    % (n, sref.get("name"), sref.get("key"), EXAMPLE_SUFFIX))
        cref = vf.get("configMapKeyRef")
        if cref:
            c.check(resolve_env_value(k8s, e) is not None,
                    where + ": env %s's ConfigMap %s/%s is applied by the kustomization"
                    % (n, cref.get("name"), cref.get("key")))

    def value(var):
        e = env.get(var)
        if e is None:
            return env_default(table, var)
        v = resolve_env_value(k8s, e)
        return "" if v is None else str(v)

    for secret in spec_of["secret_env"]:
        ref = ((env.get(secret) or {}).get("valueFrom") or {}).get("secretKeyRef")
        c.check(bool(ref and ref.get("name") and ref.get("key")),
                where + ": %s comes from a Secret" % secret)
    for required, default in table.items():
        if default is None:
            c.check(required in env, where + ": required %s is set" % required)
    c.check("NATS_URL" in env, where + ": NATS_URL is set")
    user = (env.get("NATS_USER") or {}).get("value")
    c.check(user == service and user in ctx.nats_users,
            where + ": NATS_USER %r is %s, a user of nats-server.conf" % (user, service))
    if spec_of["id_var"]:
        ref = ((env.get(spec_of["id_var"]) or {}).get("valueFrom") or {}).get("fieldRef") or {}
        c.check(ref.get("fieldPath") == "metadata.name",
                where + ": %s is the pod name (downward API metadata.name)" % spec_of["id_var"])

    # The port of /healthz /readyz /metrics (and /ws).
    port = as_int(value(spec_of["port_var"]))
    c.check(port == spec_of["port"],
            where + ": %s is %d (got %d)" % (spec_of["port_var"], spec_of["port"], port))
    ports = {p.get("name"): p.get("containerPort") for p in ct.get("ports") or []}

    def resolve(p):
        return ports.get(p) if isinstance(p, str) else p

    c.check(port in ports.values(), where + ": containerPort %d declared" % port)
    tls = "WS_TLS_CERT" in env or "WS_TLS_KEY" in env
    if tls:
        c.check("WS_TLS_CERT" in env and "WS_TLS_KEY" in env,
                where + ": WS_TLS_CERT and WS_TLS_KEY are set together")
        secret_vols = {v.get("name") for v in pod.get("volumes") or [] if v.get("secret")}
        mounts = [m.get("mountPath", "").rstrip("/") + "/" for m in ct.get("volumeMounts") or []
                  if m.get("name") in secret_vols]
        for var in ("WS_TLS_CERT", "WS_TLS_KEY"):
            c.check(any(value(var).startswith(m) for m in mounts),
                    where + ": %s is a file of a mounted Secret volume" % var)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = ((ct.get(probe) or {}).get("httpGet")) or {}
        c.check(get.get("path") == path and path in ctx.endpoints
                and resolve(get.get("port")) == port,
                where + ": %s is GET %s (served: %s) on port %d (got %s)"
                % (probe, path, sorted(ctx.endpoints), port, get))
        scheme = get.get("scheme", "HTTP")
        c.check(scheme == ("HTTPS" if tls else "HTTP"),
                where + ": %s scheme %s matches WS_TLS_* %s" % (probe, scheme,
                                                                   "set" if tls else "unset"))

    res = ct.get("resources") or {}
    c.check(all((res.get(k) or {}).get(r) for k in ("requests", "limits") for r in ("cpu", "memory")),
            where + ": cpu and memory requests and limits")
    psc = pod.get("securityContext") or {}
    csc = ct.get("securityContext") or {}
    c.check(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True,
            where + ": runAsNonRoot")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    c.check(isinstance(uid, int) and uid != 0, where + ": runAsUser is a non-root uid")
    c.check(csc.get("readOnlyRootFilesystem") is True, where + ": readOnlyRootFilesystem")
    c.check(csc.get("allowPrivilegeEscalation") is False, where + ": no privilege escalation")
    c.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []),
            where + ": drops ALL capabilities")
    c.check(((psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type"))
            == "RuntimeDefault", where + ": seccompProfile RuntimeDefault")
    c.check(pod.get("automountServiceAccountToken") is False,
            where + ": no service account token (it talks to no Kubernetes API)")

    # SIGTERM's work fits inside the grace period.
    stop_var = spec_of["stop_var"]
    stop_ms = as_int(value(stop_var))
    grace = pod.get("terminationGracePeriodSeconds")
    c.check(isinstance(grace, int) and stop_var in table and stop_ms > 0
            and grace * 1000 > stop_ms,
            where + ": terminationGracePeriodSeconds (%s s) set and > %s (%d ms)"
            % (grace, stop_var, stop_ms))

    if spec_of["public"]:
        origins = value("WS_ALLOWED_ORIGINS")
        c.check("WS_ALLOWED_ORIGINS" in env and origins_ok(origins, ("https://",)),
                where + ": WS_ALLOWED_ORIGINS is a list of https:// origins, not * (got %r)"
                % origins)
        threads = as_int(value("WS_THREADS"))
        limit = cpu_cores((res.get("limits") or {}).get("cpu"))
        c.check(1 <= threads <= max(1, math.ceil(limit)),
                where + ": WS_THREADS (%d) set, at most the CPU limit (%s): ws-edge counts the "
                "node's cores" % (threads, limit))

    # Rollouts.
    if kind == "Deployment":
        ru = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
        c.check((spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
                and ru.get("maxUnavailable") == 0,
                where + ": RollingUpdate with maxUnavailable 0")
    if kind == "StatefulSet":
        c.check((spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate",
                where + ": updateStrategy RollingUpdate")
        c.check(not spec.get("volumeClaimTemplates"),
                where + ": no volumes (its state is in PostgreSQL)")

    # The objects that go with it.
    svcs = [(sf, o) for sf, o in k8s.kind("Service")
            if selector_matches((o.get("spec") or {}).get("selector"), labels)]
    if c.check(len(svcs) >= 1, where + ": a Service selects its pods (metrics)"):
        for sf, s in svcs:
            c.check(sf in k8s.resources, where + ": Service %s is applied" % s["metadata"]["name"])
            for p in s["spec"].get("ports") or []:
                c.check(resolve(p.get("targetPort", p.get("port"))) == port,
                        where + ": Service %s targets port %d" % (s["metadata"]["name"], port))
    if kind == "StatefulSet":
        gov = [o for _, o in svcs if o["metadata"]["name"] == spec.get("serviceName")]
        c.check(len(gov) == 1 and gov[0]["spec"].get("clusterIP") == "None",
                where + ": serviceName %r is a headless Service selecting its pods"
                % spec.get("serviceName"))
    if spec_of["public"]:
        front = [o for _, o in svcs if o["spec"].get("clusterIP") != "None"]
        c.check(len(front) == 1 and front[0]["spec"].get("type", "ClusterIP") == "ClusterIP",
                where + ": one ClusterIP Service in front (/metrics shares the port: the public "
                "path is an Ingress routing %s only)" % WS_PATH)
        routed = [o for _, o in k8s.kind("Ingress") for b in ingress_backends(o)
                  if front and b[0] == front[0]["metadata"]["name"]]
        c.check(len(routed) >= 1, where + ": an Ingress (or its example) routes browsers to it")

    replicas = spec.get("replicas", 1)
    hpas = [o for _, o in k8s.kind("HorizontalPodAutoscaler")
            if ((o.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name]
    min_replicas = replicas
    max_replicas = replicas
    if spec_of["hpa"]:
        if c.check(len(hpas) == 1, where + ": one HorizontalPodAutoscaler targets it"):
            h = hpas[0]["spec"]
            min_replicas, max_replicas = h.get("minReplicas", 1), h.get("maxReplicas", 0)
            c.check(h["scaleTargetRef"].get("kind") == kind
                    and 1 <= min_replicas <= max_replicas,
                    where + ": HPA targets the %s with 1 <= min <= max" % kind)
            c.check(any(m.get("type") == "Resource"
                        and (m.get("resource") or {}).get("name") == "cpu"
                        for m in h.get("metrics") or []), where + ": HPA scales on CPU")
    else:
        c.check(not hpas, where + ": no HPA targets it (scaled by hand)")
    c.check(min_replicas >= 2, where + ": at least 2 replicas (got %s)" % min_replicas)
    if spec_of["below_var"]:
        limit = as_int(value(spec_of["below_var"]))
        c.check(max(replicas, max_replicas) < limit,
                where + ": replicas (%d) stay below %s (%d)"
                % (max(replicas, max_replicas), spec_of["below_var"], limit))
    pdbs = [o for _, o in k8s.kind("PodDisruptionBudget")
            if selector_matches(((o.get("spec") or {}).get("selector") or {}).get("matchLabels"),
                                labels)]
    if c.check(len(pdbs) == 1, where + ": one PodDisruptionBudget selects its pods"):
        p = pdbs[0]["spec"]
        if "minAvailable" in p:
            c.check(isinstance(p["minAvailable"], int) and min_replicas > p["minAvailable"],
                    where + ": minimum replicas (%d) > PDB minAvailable (drains can proceed)"
                    % min_replicas)
        else:
            c.check(as_int(p.get("maxUnavailable")) >= 1,
                    where + ": PDB allows one pod down (maxUnavailable >= 1)")


def ingress_backends(ing):
    """(service name, port name or number, path, pathType) of every rule."""
    out = []
    for rule in (ing.get("spec") or {}).get("rules") or []:
        for p in ((rule.get("http") or {}).get("paths")) or []:
            svc = ((p.get("backend") or {}).get("service")) or {}
            port = svc.get("port") or {}
            out.append((svc.get("name"), port.get("name", port.get("number")),
                        p.get("path"), p.get("pathType")))
    return out


def validate_ingresses(c, ctx, k8s):
    services = {o["metadata"]["name"]: o for _, o in k8s.kind("Service", applied_only=True)}
    public = {s for s, spec in SERVICES.items() if spec["public"]}
    for f, ing in k8s.kind("Ingress"):
        where = "deploy/k8s/%s: Ingress %s" % (f, ing["metadata"]["name"])
        backends = ingress_backends(ing)
        c.check(bool(backends), where + ": has rules")
        c.check(bool((ing.get("spec") or {}).get("tls")), where + ": terminates TLS (spec.tls)")
        for svc, port, path, ptype in backends:
            s = services.get(svc)
            if not c.check(s is not None, where + ": backend Service %s is applied" % svc):
                continue
            names = {p.get("name") for p in s["spec"].get("ports") or []}
            numbers = {p.get("port") for p in s["spec"].get("ports") or []}
            c.check(port in names or port in numbers,
                    where + ": backend port %s is a port of Service %s" % (port, svc))
            if (s["spec"].get("selector") or {}).get("app.kubernetes.io/name") in public:
                c.check(path == WS_PATH and ptype == "Exact",
                        where + ": routes only %s (Exact) to %s, not its /metrics (got %s %s)"
                        % (WS_PATH, svc, path, ptype))
        ann = (ing.get("metadata") or {}).get("annotations") or {}
        if (ing.get("spec") or {}).get("ingressClassName") == "nginx":
            ws_table, _ = ctx.helps.get("ws-edge")
            ping_ms = as_int(env_default(ws_table, "WS_PING_INTERVAL_MS"))
            for a in ("proxy-read-timeout", "proxy-send-timeout"):
                t = as_int(ann.get("nginx.ingress.kubernetes.io/" + a))
                c.check(t * 1000 > 2 * ping_ms,
                        where + ": nginx %s (%d s) outlasts two ping intervals (%d ms): idle "
                        "WebSockets stay open" % (a, t, ping_ms))


# ---- docker-compose.yml ----

def compose_ports(s):
    """container port -> published host port."""
    out = {}
    for p in s.get("ports") or []:
        if isinstance(p, dict):
            out[as_int(p.get("target"))] = as_int(p.get("published"))
            continue
        parts = str(p).split("/")[0].split(":")
        out[as_int(parts[-1])] = as_int(parts[-2]) if len(parts) >= 2 else 0
    return out


def compose_default(value):
    """${VAR:-default} -> default; a literal -> itself."""
    m = re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", str(value))
    return m.group(1) if m else str(value)


def validate_compose(c, root, ctx, nats_server):
    path = os.path.join(root, "docker-compose.yml")
    if not c.check(os.path.isfile(path), "docker-compose.yml exists"):
        return
    try:
        docs = load_yaml_docs(path)
    except yaml.YAMLError as e:
        c.check(False, "docker-compose.yml parses as YAML: %s" % e)
        return
    c.check(len(docs) == 1 and isinstance(docs[0], dict), "docker-compose.yml is one mapping")
    services = docs[0].get("services") or {}
    volumes = docs[0].get("volumes") or {}
    nats_users = ctx.nats_users
    c.check({"nats", "postgres"} <= set(services),
            "compose has nats and postgres (has %s)" % sorted(services))
    pg = services.get("postgres") or {}
    pg_db = str((pg.get("environment") or {}).get("POSTGRES_DB"))

    ours = {}  # service (command) -> [compose names]
    images = set()
    for name, s in services.items():
        where = "docker-compose.yml: service %s" % name
        build = s.get("build")
        if build:
            ctx_dir = os.path.normpath(os.path.join(
                root, build.get("context", ".") if isinstance(build, dict) else build))
            c.check(os.path.isdir(ctx_dir), where + ": build context exists")
            dockerfile = os.path.join(ctx_dir, build.get("dockerfile", "Dockerfile")
                                      if isinstance(build, dict) else "Dockerfile")
            c.check(os.path.isfile(dockerfile), where + ": %s exists" % dockerfile)
        for v in s.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                c.check(os.path.exists(os.path.join(root, src)),
                        where + ": mounted %s exists" % src)
            else:
                c.check(src in volumes, where + ": named volume %s is declared" % src)
        depends = s.get("depends_on") or {}
        for dep in depends:
            c.check(dep in services, where + ": depends on existing service %s" % dep)
        command = s.get("command") or []
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        if not (build or str(s.get("image", "")).startswith("unpuzzle/")):
            continue
        # Services of our image: only what is built, configured as the binary reads.
        images.add(s.get("image"))
        service = command[0] if command else None
        if not c.check(service in SERVICES and command == [service],
                       where + ": command %s is [<a service of SERVICES>]" % command):
            continue
        ours.setdefault(service, []).append(name)
        spec_of = SERVICES[service]
        table, _ = ctx.helps.get(service)
        if table is None:
            continue
        for k in env:
            c.check(k in table, where + ": env %s is in `%s --help`" % (k, service))
            c.check(isinstance(env[k], str), where + ": env %s is a string (quote numbers)" % k)
        for required, default in table.items():
            if default is None:
                c.check(required in env, where + ": required %s is set" % required)
        c.check(env.get("NATS_USER") == service and service in nats_users,
                where + ": NATS_USER %r is %s, a user of nats-server.conf"
                % (env.get("NATS_USER"), service))
        c.check(str(env.get("NATS_URL", "")).startswith("nats://nats:"),
                where + ": NATS_URL points at the nats service")

        def value(var):
            return compose_default(env[var]) if var in env else env_default(table, var)

        port = as_int(value(spec_of["port_var"]))
        c.check(port == spec_of["port"],
                where + ": %s is %d (got %d)" % (spec_of["port_var"], spec_of["port"], port))
        c.check(compose_ports(s).get(port) == port,
                where + ": publishes port %d on the same host port" % port)
        hc = s.get("healthcheck") or {}
        test = " ".join(hc.get("test") or []) if isinstance(hc.get("test"), list) \
            else str(hc.get("test", ""))
        c.check("/dev/tcp/127.0.0.1/%d " % port in test and "GET /readyz " in test
                and "/readyz" in ctx.endpoints,
                where + ": healthcheck GETs /readyz on port %d" % port)
        stop_ms = as_int(value(spec_of["stop_var"]))
        grace = duration_ms(s.get("stop_grace_period", "10s"))
        c.check(grace is not None and grace > stop_ms > 0,
                where + ": stop_grace_period (%s) > %s (%d ms)"
                % (s.get("stop_grace_period", "10s default"), spec_of["stop_var"], stop_ms))
        c.check(s.get("read_only") is True, where + ": read_only root filesystem")
        c.check((depends.get("nats") or {}).get("condition") == "service_healthy"
                if isinstance(depends, dict) else False,
                where + ": waits for nats to be healthy")
        if "DATABASE_URL" in env:
            db = str(env["DATABASE_URL"])
            c.check(db.startswith("postgresql://") and "@postgres:" in db
                    and db.rsplit("/", 1)[-1] == pg_db,
                    where + ": DATABASE_URL points at the postgres service's database")
            c.check((depends.get("postgres") or {}).get("condition") == "service_healthy",
                    where + ": waits for postgres to be healthy")
            if "migrate" in services:
                c.check((depends.get("migrate") or {}).get("condition")
                        == "service_completed_successfully",
                        where + ": waits for the migrations (migrate completed)")
        if spec_of["stable_id"]:
            c.check(bool(env.get(spec_of["id_var"])),
                    where + ": %s is fixed (stable across re-creation)" % spec_of["id_var"])
            c.check(as_int((s.get("deploy") or {}).get("replicas", 1)) <= 1
                    and as_int(s.get("scale", 1)) <= 1,
                    where + ": one container (a fixed %s must not be shared)" % spec_of["id_var"])
        if spec_of["public"]:
            origins = value("WS_ALLOWED_ORIGINS")
            c.check("WS_ALLOWED_ORIGINS" in env and origins_ok(origins)
                    and DEV_ORIGIN in [o.strip() for o in origins.split(",")],
                    where + ": WS_ALLOWED_ORIGINS allows %s, not * (got %r)"
                    % (DEV_ORIGIN, origins))

    for service in sorted(set(SERVICES) | ctx.built):
        c.check(len(ours.get(service, [])) >= 1, "compose runs %s" % service)
    c.check(len(images) == 1, "compose services of our image share one image (%s)" % images)
    ids = [str((services[n].get("environment") or {}).get(SERVICES[s]["id_var"]))
           for s, names in ours.items() if SERVICES[s]["stable_id"] for n in names]
    c.check(len(ids) == len(set(ids)), "compose replica ids are unique (%s)" % ids)

    nats = services.get("nats") or {}
    mounts = [v for v in nats.get("volumes") or [] if isinstance(v, str)]
    c.check(any(m.startswith("./deploy/nats/nats-server.conf:") for m in mounts),
            "compose nats mounts deploy/nats/nats-server.conf")
    c.check(any(m.split(":")[1] == "/data" for m in mounts),
            "compose nats keeps JetStream on a volume at /data (store_dir)")
    cmd = nats.get("command") or []
    conf_in = [v.split(":")[1] for v in mounts if v.startswith("./deploy/nats/nats-server.conf:")]
    c.check(bool(conf_in) and conf_in[0] in cmd, "compose nats runs with the mounted config")
    nenv = nats.get("environment") or {}
    defaults = {}
    for var in NATS_USERS.values():
        m = re.fullmatch(r"\$\{%s:-([^}]*)\}" % var, str(nenv.get(var, "")))
        if c.check(m is not None, "compose nats gets %s with a dev default" % var):
            defaults[var] = m.group(1)
            c.check(NATS_PASSWORD_RE.match(m.group(1)) is not None,
                    "compose default of %s is letters/digits starting with a letter" % var)
    # The password each client gets is the server's variable for its user.
    for name, s in services.items():
        env = s.get("environment") or {}
        user = env.get("NATS_USER") if isinstance(env, dict) else None
        if user in NATS_USERS:
            var = NATS_USERS[user]
            c.check(str(env.get("NATS_PASSWORD", "")).startswith("${%s:-" % var),
                    "compose %s: NATS_PASSWORD is ${%s:-...}" % (name, var))
            c.check(env.get("NATS_PASSWORD") == nenv.get(var),
                    "compose %s: NATS_PASSWORD default equals the nats service's" % name)
    if nats_server and len(defaults) == len(NATS_USERS):
        rc, out = nats_test(nats_server, os.path.join(root, "deploy/nats/nats-server.conf"),
                            defaults)
        c.check(rc == 0, "nats-server accepts the compose default passwords: " + out)

    # Every migration reaches the database: initdb on a new volume, and the
    # one-shot migrate on every start.
    sql_dir = os.path.join(root, "deploy/sql")
    sqls = sorted(f for f in os.listdir(sql_dir) if f.endswith(".sql")) \
        if os.path.isdir(sql_dir) else []
    c.check(bool(sqls) and all(re.match(r"^[0-9]{3}_[a-z0-9_]+\.sql$", f) for f in sqls),
            "deploy/sql holds NNN_name.sql migrations (applied in name order): %s" % sqls)
    c.check(any(isinstance(v, str) and v.startswith("./deploy/sql:/docker-entrypoint-initdb.d")
                for v in pg.get("volumes") or []),
            "compose postgres mounts deploy/sql into /docker-entrypoint-initdb.d")
    mig = services.get("migrate")
    if c.check(mig is not None, "compose has a one-shot migrate service"):
        mounts = [v for v in mig.get("volumes") or [] if isinstance(v, str)]
        target = [v.split(":")[1] for v in mounts if v.split(":")[0] == "./deploy/sql"]
        script = " ".join(mig.get("command") or []) if isinstance(mig.get("command"), list) \
            else str(mig.get("command", ""))
        c.check(bool(target) and (target[0] + "/*.sql") in script and "ON_ERROR_STOP=1" in script,
                "compose migrate mounts deploy/sql and applies every *.sql with ON_ERROR_STOP")
        menv = mig.get("environment") or {}
        pg_password = (pg.get("environment") or {}).get("POSTGRES_PASSWORD")
        c.check(menv.get("PGHOST") == "postgres" and menv.get("PGDATABASE") == pg_db
                and menv.get("PGPASSWORD") == pg_password,
                "compose migrate connects to the postgres service's database")
        c.check(mig.get("restart") in ("no", None), "compose migrate runs once (restart: \"no\")")


# ---- the Dockerfile ----

def validate_dockerfile(c, root):
    path = os.path.join(root, "deploy/docker/Dockerfile")
    if not c.check(os.path.isfile(path), "deploy/docker/Dockerfile exists"):
        return
    text = open(path, encoding="utf-8").read()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    c.check(len(froms) >= 2 and froms[0][0] == "debian:bookworm"
            and froms[-1][0] == "debian:bookworm-slim",
            "Dockerfile: build stage debian:bookworm, runtime stage debian:bookworm-slim")
    runtime = text[text.rindex("\nFROM "):]
    c.check(re.search(r"-dev\b", runtime) is None, "Dockerfile: no -dev package at runtime")
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    c.check(bool(users) and users[-1].split(":")[0] not in ("0", "root"),
            "Dockerfile: runtime runs as a non-root USER")
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+", text, re.M):
        c.check(os.path.exists(os.path.join(root, src)), "Dockerfile: COPY source %s exists" % src)
    # The runtime libraries cover what the build links (by Debian package name).
    for dev, lib in (("libnats-dev", "libnats3.4"), ("libwebsockets-dev", "libwebsockets17"),
                     ("libprotobuf-c-dev", "libprotobuf-c1"), ("libjwt-dev", "libjwt0"),
                     ("libssl-dev", "libssl3"), ("libpq-dev", "libpq5"),
                     ("libjansson-dev", "libjansson4")):
        c.check(dev in text and lib in runtime, "Dockerfile: %s at build, %s at runtime" % (dev, lib))
    # Every binary, not a list of names that a new service would miss.
    c.check(re.search(r"find /build/bin -maxdepth 1 -type f -perm -u\+x -not -name 'bench-\*' "
                      r"-exec cp \{\} /out/bin/", text) is not None
            and "COPY --from=build /out/bin/ /usr/local/bin/" in runtime,
            "Dockerfile: copies every executable of build/bin but bench-* into the image")
    c.check(not any(re.search(r"(/out/bin/|/usr/local/bin/)%s\b" % re.escape(s), text)
                    for s in SERVICES),
            "Dockerfile: names no single service binary (all are copied alike)")
    c.check(re.search(r'for b in /usr/local/bin/\*; do "\$b" --help', runtime) is not None,
            "Dockerfile: the runtime stage runs every binary's --help (shared libraries found)")
    exposed = {as_int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", runtime, re.M)
               for p in line.split()}
    for service, spec_of in SERVICES.items():
        c.check(spec_of["port"] in exposed,
                "Dockerfile: EXPOSEs %s's port %d" % (service, spec_of["port"]))
    c.check(os.path.isfile(path + ".dockerignore"), "deploy/docker/Dockerfile.dockerignore exists")


class Context:
    def __init__(self, root, bin_dir):
        self.root = root
        self.helps = Helps(bin_dir)
        self.endpoints = admin_endpoints(root)
        self.nats_users = {}
        self.built = set()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", ".."))
    ap.add_argument("--bin-dir", help="the built binaries (default <root>/build/bin)")
    ap.add_argument("--verbose", action="store_true", help="print the passed checks too")
    ap.add_argument("--write-configmap", action="store_true",
                    help="rewrite deploy/k8s/nats-config.yaml from deploy/nats/nats-server.conf")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    bin_dir = os.path.abspath(args.bin_dir or os.path.join(root, "build", "bin"))
    nats_server = shutil.which("nats-server")

    c = Checker(args.verbose)
    ctx = Context(root, bin_dir)
    c.check({"/healthz", "/readyz", "/metrics"} <= ctx.endpoints,
            "common/rt_admin.c serves /healthz /readyz /metrics (found %s)" % sorted(ctx.endpoints))
    ctx.built = validate_binaries(c, bin_dir, ctx.helps)
    ctx.nats_users = validate_nats(c, root, nats_server)
    validate_k8s(c, root, ctx, args.write_configmap)
    validate_compose(c, root, ctx, nats_server)
    validate_dockerfile(c, root)
    print("deploy: %d passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
