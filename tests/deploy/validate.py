#!/usr/bin/python3
"""Offline validation of deploy/ and docker-compose.yml (no Docker engine, no
cluster needed): parses every YAML, checks the Kubernetes objects and the
compose services against the code (auth's config table, the NATS users) and
the tree (files they reference), and has nats-server test its configs.

    python3 tests/deploy/validate.py [--root DIR] [--write-configmap]

Needs python3-yaml and nats-server (Debian packages). ctest: deploy.validate.
Prints one line per failed check and "N passed, M failed" at the end; exits
non-zero when anything failed.
"""
import argparse
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
# Environment variables that must come from a Secret, per service.
SECRET_ENV = {"auth": {"SUPABASE_JWT_SECRET", "DATABASE_URL", "NATS_PASSWORD"}}
# A NATS password as nats-server reads it from the environment safely.
NATS_PASSWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
EXAMPLE_SUFFIX = ".example.yaml"


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + what)
        return ok


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def config_table(root, service):
    """Env var name -> default (None when required / no default) from
    services/<service>/<service>_service.c, or None if there is no such
    service."""
    path = os.path.join(root, "services", service, service.replace("-", "_") + "_service.c")
    if not os.path.isfile(path):
        return None
    text = open(path, encoding="utf-8").read()
    # Shared fragments of the table (RT_CFG_NATS_VARS) live in common/rt_config.h.
    if "RT_CFG_NATS_VARS(" in text:
        text += open(os.path.join(root, "common", "rt_config.h"), encoding="utf-8").read()
    table = {}
    for m in re.finditer(r'RT_CFG_[A-Z]+\(\s*\w+\s*,\s*\w+\s*,\s*"([A-Z0-9_]+)"\s*,\s*'
                         r'(NULL|"[^"]*")', text):
        table[m.group(1)] = None if m.group(2) == "NULL" else m.group(2).strip('"')
    return table


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


# ---- NATS ----

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


def validate_k8s(c, root, nats_users, write_configmap):
    kdir = os.path.join(root, "deploy/k8s")
    if not c.check(os.path.isdir(kdir), "deploy/k8s exists"):
        return
    files = sorted(f for f in os.listdir(kdir) if f.endswith((".yaml", ".yml")))
    objects = []  # (file, object)
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
            c.check(bool(d.get("apiVersion")) and bool(d.get("kind"))
                    and isinstance(meta.get("name"), str) and meta.get("name"),
                    "deploy/k8s/%s: %s has apiVersion, kind and metadata.name" % (f, d.get("kind")))
            c.check("namespace" not in meta,
                    "deploy/k8s/%s: %s/%s sets no namespace (namespace-agnostic)"
                    % (f, d.get("kind"), meta.get("name")))
            objects.append((f, d))

    # kustomization: every resource exists; every manifest but the examples is listed.
    if c.check(kustomization is not None, "deploy/k8s has a kustomization.yaml"):
        f, k = kustomization
        resources = k.get("resources") or []
        for r in resources:
            c.check(os.path.isfile(os.path.join(kdir, r)), "kustomization resource %s exists" % r)
        c.check("namespace" not in k, "kustomization.yaml sets no namespace")
        for other in files:
            if other in (f,) or other.endswith(EXAMPLE_SUFFIX):
                c.check(other not in resources, "%s is not applied by kustomization" % other)
            else:
                c.check(other in resources, "kustomization.yaml lists %s" % other)

    by_kind = {}
    for f, o in objects:
        by_kind.setdefault(o["kind"], []).append((f, o))

    # nats ConfigMap == deploy/nats/nats-server.conf
    conf_path = os.path.join(root, "deploy/nats/nats-server.conf")
    cm_path = os.path.join(kdir, "nats-config.yaml")
    cms = [o for f, o in by_kind.get("ConfigMap", []) if "nats-server.conf" in (o.get("data") or {})]
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

    deployments = by_kind.get("Deployment", [])
    c.check(len(deployments) >= 1, "deploy/k8s has a Deployment")
    for f, d in deployments:
        validate_deployment(c, root, f, d, nats_users, by_kind)


def validate_deployment(c, root, f, d, nats_users, by_kind):
    name = d["metadata"]["name"]
    where = "deploy/k8s/%s: Deployment %s" % (f, name)
    spec = d.get("spec") or {}
    tmpl = spec.get("template") or {}
    pod = tmpl.get("spec") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    c.check(selector_matches((spec.get("selector") or {}).get("matchLabels"), labels),
            where + ": selector matches the pod labels")
    containers = pod.get("containers") or []
    if not c.check(len(containers) == 1, where + ": one container"):
        return
    ct = containers[0]
    command = ct.get("command") or []
    service = command[0] if command else None
    table = config_table(root, service) if service else None
    if not c.check(table is not None,
                   where + ": command %s is a service of services/ with a config table" % command):
        return
    env = {}
    for e in ct.get("env") or []:
        env[e["name"]] = e
        c.check(e["name"] in table, where + ": env %s is in %s's config table" % (e["name"], service))
    for secret in SECRET_ENV.get(service, ()):
        ref = ((env.get(secret) or {}).get("valueFrom") or {}).get("secretKeyRef")
        c.check(bool(ref and ref.get("name") and ref.get("key")),
                where + ": %s comes from a Secret" % secret)
    for required, default in table.items():
        if default is None:
            c.check(required in env, where + ": required %s is set" % required)
    user = (env.get("NATS_USER") or {}).get("value")
    c.check(user in nats_users, where + ": NATS_USER %r is a user of nats-server.conf" % user)

    admin_port = int((env.get("ADMIN_PORT") or {}).get("value") or table.get("ADMIN_PORT") or 0)
    c.check(admin_port == 9101 or service != "auth", where + ": ADMIN_PORT is 9101")
    ports = {p.get("name"): p.get("containerPort") for p in ct.get("ports") or []}

    def resolve(port):
        return ports.get(port) if isinstance(port, str) else port

    c.check(admin_port in ports.values(), where + ": containerPort %d declared" % admin_port)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = ((ct.get(probe) or {}).get("httpGet")) or {}
        c.check(get.get("path") == path and resolve(get.get("port")) == admin_port,
                where + ": %s is GET %s on port %d (got %s)" % (probe, path, admin_port, get))
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
    drain_var = service.upper().replace("-", "_") + "_DRAIN_MS"
    drain_ms = int((env.get(drain_var) or {}).get("value") or table.get(drain_var) or 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    c.check(drain_var in table and grace * 1000 > drain_ms,
            where + ": terminationGracePeriodSeconds (%ss) > %s (%d ms)" % (grace, drain_var, drain_ms))

    # The objects that go with it.
    svcs = [o for _, o in by_kind.get("Service", [])
            if selector_matches((o.get("spec") or {}).get("selector"), labels)]
    if c.check(len(svcs) >= 1, where + ": a Service selects its pods (metrics)"):
        for s in svcs:
            for p in s["spec"].get("ports") or []:
                c.check(resolve(p.get("targetPort", p.get("port"))) == admin_port,
                        where + ": Service %s targets the admin port" % s["metadata"]["name"])
    pdbs = [o for _, o in by_kind.get("PodDisruptionBudget", [])
            if selector_matches(((o.get("spec") or {}).get("selector") or {}).get("matchLabels"),
                                labels)]
    c.check(len(pdbs) == 1, where + ": one PodDisruptionBudget selects its pods")
    hpas = [o for _, o in by_kind.get("HorizontalPodAutoscaler", [])
            if ((o.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name]
    if c.check(len(hpas) == 1, where + ": one HorizontalPodAutoscaler targets it"):
        h = hpas[0]["spec"]
        c.check(h["scaleTargetRef"].get("kind") == "Deployment"
                and 1 <= h.get("minReplicas", 1) <= h.get("maxReplicas", 0),
                where + ": HPA targets the Deployment with 1 <= min <= max")
        if pdbs and "minAvailable" in pdbs[0]["spec"]:
            c.check(h.get("minReplicas", 1) > pdbs[0]["spec"]["minAvailable"],
                    where + ": HPA minReplicas > PDB minAvailable (drains can proceed)")


# ---- docker-compose.yml and the Dockerfile ----

def validate_compose(c, root, nats_users, nats_server):
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
    c.check({"nats", "postgres", "auth"} <= set(services),
            "compose has nats, postgres and auth (has %s)" % sorted(services))

    for name, s in services.items():
        where = "docker-compose.yml: service %s" % name
        build = s.get("build")
        if build:
            ctx = os.path.join(root, build.get("context", ".") if isinstance(build, dict) else build)
            c.check(os.path.isdir(ctx), where + ": build context exists")
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile")
                                      if isinstance(build, dict) else "Dockerfile")
            c.check(os.path.isfile(dockerfile), where + ": %s exists" % dockerfile)
        for v in s.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                c.check(os.path.exists(os.path.join(root, src)),
                        where + ": mounted %s exists" % src)
            else:
                c.check(src in volumes, where + ": named volume %s is declared" % src)
        for dep in s.get("depends_on") or []:
            c.check(dep in services, where + ": depends on existing service %s" % dep)
        command = s.get("command") or []
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        # Services of our image: no placeholders, only what is built.
        if build or str(s.get("image", "")).startswith("unpuzzle/"):
            service = command[0] if command else None
            table = config_table(root, service) if service else None
            if not c.check(table is not None,
                           where + ": command %s is an existing service" % command):
                continue
            for k in env:
                c.check(k in table, where + ": env %s is in %s's config table" % (k, service))
            for required, default in table.items():
                if default is None:
                    c.check(required in env, where + ": required %s is set" % required)
            c.check(env.get("NATS_USER") in nats_users,
                    where + ": NATS_USER %r is a user of nats-server.conf" % env.get("NATS_USER"))

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

    pg = services.get("postgres") or {}
    c.check(any(isinstance(v, str) and v.startswith("./deploy/sql:/docker-entrypoint-initdb.d")
                for v in pg.get("volumes") or []),
            "compose postgres mounts deploy/sql into /docker-entrypoint-initdb.d")
    auth = services.get("auth") or {}
    db = str((auth.get("environment") or {}).get("DATABASE_URL", ""))
    c.check(db.startswith("postgresql://") and "@postgres:" in db
            and db.rsplit("/", 1)[-1] == str((pg.get("environment") or {}).get("POSTGRES_DB")),
            "compose auth's DATABASE_URL points at the postgres service's database")


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
    c.check(os.path.isfile(path + ".dockerignore"), "deploy/docker/Dockerfile.dockerignore exists")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", ".."))
    ap.add_argument("--write-configmap", action="store_true",
                    help="rewrite deploy/k8s/nats-config.yaml from deploy/nats/nats-server.conf")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    nats_server = shutil.which("nats-server")

    c = Checker()
    users = validate_nats(c, root, nats_server)
    validate_k8s(c, root, users, args.write_configmap)
    validate_compose(c, root, users, nats_server)
    validate_dockerfile(c, root)
    print("deploy: %d passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
