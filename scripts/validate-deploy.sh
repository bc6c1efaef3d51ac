#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a Kubernetes cluster:
#
#   * docker-compose.yml: `docker compose config` when the client has the compose plugin;
#     always the Compose Specification JSON schema (check-jsonschema ships it offline) and
#     semantic checks (depends_on targets, volumes, bind-mount paths, interpolation defaults,
#     scalable workers, Prometheus discovery matching the worker's metrics port);
#   * Dockerfile: multi-stage, non-root, ENTRYPOINT ["rcjobs"]; and it builds from the
#     repository alone: every path `cargo build --locked` reads (Cargo.toml, Cargo.lock, every
#     workspace member's manifest, src/, build.rs and declared targets, path dependencies,
#     include_str!/include_bytes!/sqlx::migrate! targets, rerun-if-changed paths) is COPYed
#     into the builder stage at the same place and not excluded by .dockerignore, and no
#     COPY reaches outside the repository (`--dockerfile-only` runs just this, with python3
#     and no venv; RCJOBS_DOCKERFILE / RCJOBS_DOCKERIGNORE check other files);
#   * deploy/prometheus: `promtool check config`, `promtool check rules` and the alert unit
#     tests `promtool test rules` (promtool from Debian's `prometheus` package);
#   * deploy/kubernetes: renders the kustomize base and the hpa overlay (`kubectl kustomize`
#     or `kustomize build`), validates every built-in resource against the Kubernetes JSON
#     schemas of the oldest and newest supported versions (kubernetes-validate --strict,
#     schemas shipped offline in the package), and checks the CRD resources (ServiceMonitor,
#     PrometheusRule, ScaledObject: no schemas shipped) structurally plus cross-references
#     (selectors, port names, probe paths, grace period vs drain deadline, rules == alerts.yml).
#     Without kubectl/kustomize, each file listed in the base kustomization is validated alone.
#   * grafana/: every dashboard is valid JSON and provisioning points where compose mounts it
#     (metric names in panel queries are checked by `cargo test -p rcjobs-metrics`).
#
# Usage: scripts/validate-deploy.sh [--no-install] [--sync-rules] [--dockerfile-only]
#   --sync-rules rewrites deploy/kubernetes/base/prometheusrule.yaml from
#   deploy/prometheus/alerts.yml (the source of truth) before checking.
#   Python tools go into a venv at $RCJOBS_VALIDATE_VENV (default: target/validate-venv),
#   created on first use from PyPI. promtool is installed with apt-get when missing and we
#   are root, unless --no-install is given (then the promtool checks are skipped, loudly).
#   Kubernetes versions checked: $RCJOBS_K8S_VERSIONS (default "1.29.0 1.37.0").
#   RCJOBS_KUSTOMIZE=none forces the per-file fallback (as on a machine without kubectl).
# Exit status 0 only when every check that ran passed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

INSTALL=1
SYNC_RULES=0
DOCKERFILE_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --no-install) INSTALL=0 ;;
    --sync-rules) SYNC_RULES=1 ;;
    --dockerfile-only) DOCKERFILE_ONLY=1 ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

# The Dockerfile's build context (python3 standard library only, so it also runs alone).
check_docker_context() {
  "$1" - "$ROOT" <<'PYEOF'
# Build-context check: everything `cargo build --release --locked --bin rcjobs` reads is
# COPYed into the builder stage at the same relative path, nothing comes from outside the
# repository, and .dockerignore excludes none of it. Standard library only.
import glob, json, os, pathlib, re, shlex, sys, tomllib

root = pathlib.Path(sys.argv[1]).resolve()
dockerfile = pathlib.Path(os.environ.get("RCJOBS_DOCKERFILE") or root / "Dockerfile")
ignore_path = pathlib.Path(os.environ.get("RCJOBS_DOCKERIGNORE") or root / ".dockerignore")
errors = []

def rel(p):
    """`p` relative to the repository as a posix string, or None when it lies outside."""
    try:
        return pathlib.Path(os.path.normpath(p)).relative_to(root).as_posix()
    except ValueError:
        return None

# --- what the build reads ---
needs = {}  # relative path -> why
def need(path, why):
    r = rel(path)
    if r is None:
        errors.append(f"build needs {path} ({why}), which is outside the repository")
    elif not (root / r).exists():
        errors.append(f"build needs {r} ({why}), which does not exist")
    else:
        needs.setdefault(r, why)

manifest = tomllib.loads((root / "Cargo.toml").read_text())
ws = manifest.get("workspace", {})
need(root / "Cargo.toml", "workspace manifest")
need(root / "Cargo.lock", "cargo build --locked")
excluded = {rel(root / e) for e in ws.get("exclude", [])}
members = []
for pat in ws.get("members", ["."]):
    for m in sorted(glob.glob(str(root / pat))):
        if (pathlib.Path(m) / "Cargo.toml").exists() and rel(m) not in excluded:
            members.append(pathlib.Path(m).resolve())

def path_deps(table, base, why):
    for name, dep in (table or {}).items():
        if isinstance(dep, dict) and "path" in dep:
            need(base / dep["path"], f"path dependency {name} of {why}")

path_deps(ws.get("dependencies"), root, "the workspace")
include_re = re.compile(r'\binclude(?:_str|_bytes)?!\s*\(\s*"([^"]+)"')
migrate_re = re.compile(r'\bmigrate!\s*\(\s*(?:"([^"]*)")?\s*\)')
rerun_re = re.compile(r'rerun-if-changed=([^"\s)]+)')
for m in members:
    name = rel(m) or str(m)
    mf = tomllib.loads((m / "Cargo.toml").read_text())
    need(m / "Cargo.toml", f"manifest of {name}")
    need(m / "src", f"sources of {name}")
    for section in ("dependencies", "dev-dependencies", "build-dependencies"):
        path_deps(mf.get(section), m, name)
    build = mf.get("package", {}).get("build")
    build = m / (build if isinstance(build, str) else "build.rs")
    if build.exists():
        need(build, f"build script of {name}")
        for arg in rerun_re.findall(build.read_text()):
            need(m / arg, f"rerun-if-changed in {rel(build)}")
    # Cargo checks that every declared target exists, even those it does not build.
    defaults = {"bin": "src/bin/{}.rs", "bench": "benches/{}.rs", "test": "tests/{}.rs",
                "example": "examples/{}.rs"}
    for kind, default in defaults.items():
        for t in mf.get(kind, []):
            need(m / (t.get("path") or default.format(t["name"])), f"[[{kind}]] {t['name']} of {name}")
    # Compile-time file reads in the sources: include_str!/include_bytes!/include! are
    # relative to the file, sqlx::migrate! to the crate's manifest directory.
    for src in sorted((m / "src").rglob("*.rs")) + ([build] if build.exists() else []):
        text = src.read_text()
        for arg in include_re.findall(text):
            need(src.parent / arg, f"include in {rel(src)}")
        for arg in migrate_re.findall(text):
            need(m / (arg or "migrations"), f"sqlx::migrate! in {rel(src)}")

# --- what the builder stage copies ---
lines = re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines()
stages, cur = [], None
for line in lines:
    s = line.strip()
    if re.match(r"(?i)^FROM\s", s):
        cur = []
        stages.append(cur)
    elif cur is not None and s and not s.startswith("#"):
        cur.append(s)
builders = [st for st in stages if any(re.search(r"\bcargo\s+build\b", l) for l in st)]
if len(builders) != 1:
    errors.append(f"Dockerfile: expected one stage running cargo build, found {len(builders)}")
    builders = [[]]
workdir = "/"
copies = []  # (source relative to the repository, destination relative to the workdir)
for s in builders[0]:
    if re.match(r"(?i)^WORKDIR\s", s):
        workdir = os.path.join(workdir, s.split(None, 1)[1].strip())
        continue
    m = re.match(r"(?i)^(COPY|ADD)\s+(.*)$", s)
    if not m:
        continue
    rest = m.group(2).strip()
    try:
        words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    except Exception:
        words = rest.split()
    flags = [w for w in words if w.startswith("--")]
    words = [w for w in words if not w.startswith("--")]
    if any(f.startswith("--from") for f in flags) or len(words) < 2:
        continue
    *srcs, dest = words
    for src in srcs:
        if re.match(r"^[a-z]+://", src):
            errors.append(f"Dockerfile: {m.group(1)} {src} fetches from outside the repository")
            continue
        r = rel(root / src.lstrip("/")) if not src.startswith("/") else None
        if src.startswith("/") or r is None:
            errors.append(f"Dockerfile: COPY {src} reaches outside the repository (the build context)")
            continue
        if not glob.glob(str(root / r)):
            errors.append(f"Dockerfile: COPY {src}: no such path in the repository")
            continue
        # Where the source lands, relative to the workdir cargo runs in.
        d = os.path.normpath(os.path.join(workdir, dest))
        is_dir = (root / r).is_dir()
        into_dir = is_dir or dest.endswith("/") or len(srcs) > 1
        copies.append((r, d, is_dir, into_dir))

def ignored(p):
    if not ignore_path.exists():
        return False
    out = False
    for raw in ignore_path.read_text().splitlines():
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip().lstrip("/")
        pat = os.path.normpath(pat)
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"; i += 3
            elif pat.startswith("**", i):
                rx += ".*"; i += 2
            elif pat[i] == "*":
                rx += "[^/]*"; i += 1
            elif pat[i] == "?":
                rx += "[^/]"; i += 1
            else:
                rx += re.escape(pat[i]); i += 1
        parts = p.split("/")
        # A pattern that matches a directory excludes everything below it.
        if any(re.fullmatch(rx, "/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            out = not neg
    return out

wd = os.path.normpath(workdir)
for p, why in sorted(needs.items()):
    landed = False
    for src, dest, is_dir, into_dir in copies:
        if src == "." or p == src or p.startswith(src + "/"):
            tail = p if src == "." else (p[len(src) + 1:] if p != src else "")
            if is_dir:
                at = os.path.normpath(os.path.join(dest, tail)) if tail else dest
            else:
                at = os.path.join(dest, os.path.basename(src)) if into_dir else dest
            if os.path.normpath(at) == os.path.normpath(os.path.join(wd, p)):
                landed = True
                break
    if not landed:
        errors.append(f"Dockerfile: {p} ({why}) is not COPYed into the builder stage at {p}")
    elif ignored(p):
        errors.append(f".dockerignore excludes {p} ({why}), which the build needs")

if errors:
    print("\n".join("  - " + e for e in errors))
    sys.exit(1)
print(f"ok: build context holds all {len(needs)} paths cargo build reads "
      f"({len(members)} workspace members), nothing from outside the repository")
PYEOF
}

if [ "$DOCKERFILE_ONLY" = 1 ]; then
  step() { printf '\n== %s\n' "$*"; }
  step "Dockerfile build context"
  check_docker_context python3 || { echo "validate-deploy: FAILED" >&2; exit 1; }
  echo "validate-deploy: dockerfile checks passed"
  exit 0
fi

VENV="${RCJOBS_VALIDATE_VENV:-$ROOT/target/validate-venv}"
K8S_VERSIONS="${RCJOBS_K8S_VERSIONS:-1.29.0 1.37.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FAILED=0
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; FAILED=1; }

# ---- tools ------------------------------------------------------------------------------
step "python tools ($VENV)"
if ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml, check_jsonschema' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'check-jsonschema==0.39.*' 'kubernetes-validate==1.37.*' 'PyYAML>=6'
fi
"$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null \
  | grep -Ei '^(check-jsonschema|kubernetes-validate|PyYAML) ' || true
PY="$VENV/bin/python"

if [ "$SYNC_RULES" = 1 ]; then
  step "writing deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/alerts.yml"
  "$PY" - <<'PYEOF'
import yaml
alerts = yaml.safe_load(open("deploy/prometheus/alerts.yml"))
doc = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "rcjobs", "labels": {"app.kubernetes.io/name": "rcjobs",
                                              "app.kubernetes.io/component": "worker"}},
    "spec": {"groups": alerts["groups"]},
}
class Dumper(yaml.SafeDumper):
    pass
Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))
with open("deploy/kubernetes/base/prometheusrule.yaml", "w") as f:
    f.write("# The alert rules of deploy/prometheus/alerts.yml as a Prometheus Operator PrometheusRule.\n"
            "# Generated: edit alerts.yml, then run scripts/validate-deploy.sh --sync-rules.\n")
    f.write(yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=100))
PYEOF
fi

if ! command -v promtool >/dev/null 2>&1 && [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] \
   && command -v apt-get >/dev/null 2>&1; then
  step "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi

# ---- docker-compose.yml ------------------------------------------------------------------
step "docker-compose.yml"
if docker compose version >/dev/null 2>&1; then
  for profile in "" demo rocketchat; do
    docker compose -f docker-compose.yml ${profile:+--profile "$profile"} config -q \
      || fail "docker compose config ${profile:+(profile $profile)}"
  done
  echo "docker compose config: ok"
else
  echo "docker compose plugin not available: using the Compose Specification schema"
fi
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml \
  || fail "docker-compose.yml does not match the Compose Specification"

# ---- Prometheus ----------------------------------------------------------------------------
step "deploy/prometheus"
if command -v promtool >/dev/null 2>&1; then
  promtool --version 2>&1 | head -1
  promtool check config deploy/prometheus/prometheus.yml || fail "promtool check config"
  promtool check rules deploy/prometheus/alerts.yml || fail "promtool check rules"
  (cd deploy/prometheus && promtool test rules alerts_test.yml) || fail "promtool test rules"
else
  echo "SKIPPED: promtool not found (apt-get install prometheus); rules not checked" >&2
fi

# ---- Kubernetes ------------------------------------------------------------------------------
step "deploy/kubernetes"
RENDER=""
if [ "${RCJOBS_KUSTOMIZE:-auto}" = none ]; then
  :
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  RENDER="kubectl kustomize"
elif command -v kustomize >/dev/null 2>&1; then
  RENDER="kustomize build"
fi
if [ -n "$RENDER" ]; then
  echo "rendering with: $RENDER"
  $RENDER deploy/kubernetes/base >"$WORK/base.yaml" || fail "kustomize base"
  $RENDER deploy/kubernetes/overlays/hpa >"$WORK/hpa.yaml" || fail "kustomize overlay hpa"
else
  echo "no kubectl/kustomize: validating the base's resource files one by one"
  "$PY" - deploy/kubernetes/base >"$WORK/base.yaml" <<'PYEOF'
import sys, pathlib, yaml
base = pathlib.Path(sys.argv[1])
k = yaml.safe_load((base / "kustomization.yaml").read_text())
docs = []
for res in k["resources"]:
    docs.extend(d for d in yaml.safe_load_all((base / res).read_text()) if d)
print(yaml.safe_dump_all(docs, sort_keys=False))
PYEOF
  cp deploy/kubernetes/overlays/hpa/worker-hpa.yaml "$WORK/hpa.yaml"
fi
cp deploy/kubernetes/base/secret.example.yaml "$WORK/secret.example.yaml"
for v in $K8S_VERSIONS; do
  for f in base.yaml hpa.yaml secret.example.yaml; do
    # CRD kinds have no shipped schema: kubernetes-validate warns and skips them; they are
    # checked structurally below.
    out="$("$VENV/bin/kubernetes-validate" --strict -k "$v" "$WORK/$f" 2>&1)" \
      || { echo "$out" >&2; fail "kubernetes-validate $f (k8s $v)"; continue; }
    echo "$out" | sed -n "s|^INFO $WORK/|  |p"
  done
done

# ---- Dockerfile build context ------------------------------------------------------------
step "Dockerfile build context"
check_docker_context "$PY" || fail "Dockerfile build context"

# ---- structural and cross-reference checks ---------------------------------------------------
step "semantic checks (compose, Dockerfile, Kubernetes, Grafana)"
"$PY" - "$ROOT" "$WORK/base.yaml" "$WORK/hpa.yaml" "${RENDER:+rendered}" <<'PYEOF' || fail "semantic checks"
import json, pathlib, re, sys
import yaml

root = pathlib.Path(sys.argv[1])
base_docs = [d for d in yaml.safe_load_all(pathlib.Path(sys.argv[2]).read_text()) if d]
hpa_docs = [d for d in yaml.safe_load_all(pathlib.Path(sys.argv[3]).read_text()) if d]
rendered = len(sys.argv) > 4 and sys.argv[4] == "rendered"
errors = []

def check(cond, msg):
    if not cond:
        errors.append(msg)

DRAIN_SECONDS = 30   # the worker's drain deadline
GRACE_MARGIN = 10    # time for releasing leases and exiting after the deadline

# --- compose ---
compose_text = (root / "docker-compose.yml").read_text()
compose = yaml.safe_load(compose_text)
services = compose["services"]
declared_volumes = set((compose.get("volumes") or {}).keys())
for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", compose_text):
    check(m.group(2).startswith((":-", "-")),
          f"compose: ${{{m.group(1)}}} has no default, `docker compose config` would warn")
check(not re.search(r"(?<![$])\$[A-Za-z_]", compose_text),
      "compose: bare $VAR (use ${VAR:-default}, or $$ for a literal)")
for name, svc in services.items():
    check("image" in svc or "build" in svc, f"compose: {name} has neither image nor build")
    deps = svc.get("depends_on") or {}
    for dep in (deps if isinstance(deps, list) else deps.keys()):
        check(dep in services, f"compose: {name} depends on unknown service {dep}")
        if dep in services and not svc.get("profiles"):
            check(not services[dep].get("profiles"),
                  f"compose: {name} (no profile) depends on profile-only service {dep}")
    for vol in svc.get("volumes") or []:
        src = (vol if isinstance(vol, str) else vol.get("source", "")).split(":")[0]
        if src.startswith((".", "/")):
            check((root / src).exists(), f"compose: {name} mounts missing path {src}")
        elif src:
            check(src in declared_volumes, f"compose: {name} uses undeclared volume {src}")
worker = services["worker"]
check("container_name" not in worker, "compose: worker has container_name (breaks --scale)")
check("ports" not in worker, "compose: worker publishes host ports (breaks --scale)")
cmd = worker["command"]
check(cmd[0] == "worker" and "--metrics-addr" in cmd, "compose: worker command")
metrics_port = int(cmd[cmd.index("--metrics-addr") + 1].rsplit(":", 1)[1])
check(str(metrics_port) in [str(p) for p in worker.get("expose", [])], "compose: worker exposes metrics port")
check(worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully",
      "compose: worker must wait for the migration")
check(services["migrate"]["command"] == ["migrate"] and services["migrate"].get("restart") == "no",
      "compose: migrate is a one-shot `rcjobs migrate`")
check(services["sim"]["command"] == ["sim", "--addr", "0.0.0.0:3000"], "compose: sim command")
grace = worker.get("stop_grace_period", "10s")
check(int(grace.rstrip("s")) >= DRAIN_SECONDS + GRACE_MARGIN, "compose: worker stop_grace_period < drain + margin")
for prof, svcs in {"rocketchat": ["rocketchat", "mongodb"], "demo": ["moodle-fixture"]}.items():
    for s in svcs:
        check(services.get(s, {}).get("profiles") == [prof], f"compose: {s} in profile {prof}")
check("replicaSet=rs0" in services["rocketchat"]["environment"]["MONGO_URL"], "compose: Rocket.Chat needs the replica set")
prom = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
sd = [c for job in prom["scrape_configs"] for c in job.get("dns_sd_configs", [])]
check(any("worker" in c["names"] and c["port"] == metrics_port for c in sd),
      "prometheus.yml: no DNS discovery of service `worker` on the metrics port")
graf_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith(".")}
provider = yaml.safe_load((root / "grafana/provisioning/dashboards/rcjobs.yml").read_text())
dash_path = provider["providers"][0]["options"]["path"]
check(graf_mounts.get(dash_path) == "./grafana/dashboards", "grafana: provider path is not where compose mounts the dashboards")

# --- Dockerfile ---
df = (root / "Dockerfile").read_text()
check(len(re.findall(r"^FROM ", df, re.M)) >= 2, "Dockerfile: not multi-stage")
check(re.search(r'^ENTRYPOINT \["rcjobs"\]', df, re.M) is not None, 'Dockerfile: ENTRYPOINT ["rcjobs"]')
users = re.findall(r"^USER (\S+)", df, re.M)
check(users and not users[-1].startswith(("root", "0")), "Dockerfile: final stage must not run as root")
ignore = (root / ".dockerignore").read_text().split()
check("target" in ignore and ".git" in ignore, ".dockerignore: exclude target and .git")

# --- Grafana ---
for f in sorted((root / "grafana/dashboards").glob("*.json")):
    try:
        d = json.loads(f.read_text())
        check(d.get("uid") and d.get("title"), f"{f.name}: uid/title")
    except json.JSONDecodeError as e:
        errors.append(f"{f.name}: {e}")

# --- Kubernetes ---
def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]

def one(docs, kind):
    found = by_kind(docs, kind)
    check(len(found) == 1, f"k8s: expected one {kind}, found {len(found)}")
    return found[0] if found else {}

def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())

dep = one(base_docs, "Deployment")
pod = dep.get("spec", {}).get("template", {})
pod_labels = pod.get("metadata", {}).get("labels", {})
pspec = pod.get("spec", {})
check(subset(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment: selector does not match pod labels")
check("replicas" not in dep["spec"], "Deployment: leave replicas to the autoscaler")
check(pspec.get("terminationGracePeriodSeconds", 30) >= DRAIN_SECONDS + GRACE_MARGIN,
      "Deployment: terminationGracePeriodSeconds < drain deadline + margin")

def check_pod_security(spec, what):
    sc = spec.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, f"{what}: must run as non-root")
    for c in spec.get("containers", []):
        csc = c.get("securityContext", {})
        check(csc.get("allowPrivilegeEscalation") is False, f"{what}/{c['name']}: allowPrivilegeEscalation")
        check(csc.get("readOnlyRootFilesystem") is True, f"{what}/{c['name']}: readOnlyRootFilesystem")
        res = c.get("resources", {})
        check(res.get("requests") and res.get("limits"), f"{what}/{c['name']}: resources")
        refs = [e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])]
        check("rcjobs-secrets" in refs, f"{what}/{c['name']}: envFrom secretRef rcjobs-secrets")
        for e in c.get("env", []):
            check(not (e["name"] in ("DATABASE_URL", "MOODLE_DATABASE_URL", "ROCKETCHAT_TOKEN") and "value" in e),
                  f"{what}/{c['name']}: {e['name']} as a literal (use the Secret)")
        if rendered:
            check(c.get("image", "").endswith(":0.1.0") and "/" in c.get("image", ""),
                  f"{what}/{c['name']}: kustomize images: did not apply ({c.get('image')})")

check_pod_security(pspec, "Deployment")
(container,) = pspec["containers"]
port_names = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
args = container.get("args", [])
check(args[:1] == ["worker"] and "--metrics-addr" in args, "Deployment: args")
if "--metrics-addr" in args:
    check(int(args[args.index("--metrics-addr") + 1].rsplit(":", 1)[1]) == port_names.get("metrics"),
          "Deployment: --metrics-addr port != containerPort metrics")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
    p = container.get(probe, {}).get("httpGet", {})
    check(p.get("path") == path and p.get("port") in port_names, f"Deployment: {probe} must GET {path} on a named port")

job = one(base_docs, "Job")
jspec = job.get("spec", {}).get("template", {}).get("spec", {})
check_pod_security(jspec, "Job")
check(jspec.get("restartPolicy") in ("Never", "OnFailure"), "Job: restartPolicy")
check(jspec.get("containers", [{}])[0].get("args") == ["migrate"], "Job: args must be [migrate]")

svc = one(base_docs, "Service")
check(subset(svc["spec"]["selector"], pod_labels), "Service: selector does not match worker pods")
svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
check(svc_ports.get("metrics", {}).get("targetPort") in port_names, "Service: targetPort must name a container port")

sm = one(base_docs, "ServiceMonitor")
check(sm.get("apiVersion") == "monitoring.coreos.com/v1", "ServiceMonitor: apiVersion")
check(subset(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "ServiceMonitor: selector does not match the Service")
for ep in sm["spec"]["endpoints"]:
    check(ep.get("port") in svc_ports and ep.get("path") == "/metrics", "ServiceMonitor: endpoint port/path")
    check(set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings", "metricRelabelings"},
          f"ServiceMonitor: unexpected endpoint keys {sorted(ep)}")

pdb = one(base_docs, "PodDisruptionBudget")
check(subset(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PodDisruptionBudget: selector")
check(("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"]), "PodDisruptionBudget: exactly one of min/maxUnavailable")

so = one(base_docs, "ScaledObject")
check(so.get("apiVersion") == "keda.sh/v1alpha1", "ScaledObject: apiVersion")
ref = so["spec"]["scaleTargetRef"]
check(ref.get("name") == dep["metadata"]["name"] and ref.get("kind", "Deployment") == "Deployment", "ScaledObject: scaleTargetRef")
check(1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"], "ScaledObject: replica bounds")
check(set(so["spec"]) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                          "cooldownPeriod", "idleReplicaCount", "fallback", "advanced", "triggers", "initialCooldownPeriod"},
      f"ScaledObject: unexpected spec keys {sorted(so['spec'])}")
for t in so["spec"]["triggers"]:
    md = t.get("metadata", {})
    check(t.get("type") == "prometheus", "ScaledObject: trigger type")
    check(md.get("serverAddress", "").startswith("http") and md.get("query"), "ScaledObject: serverAddress/query")
    check(isinstance(md.get("threshold"), str) and float(md["threshold"]) > 0, "ScaledObject: threshold must be a quoted number")

rule = one(base_docs, "PrometheusRule")
alerts = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
check(rule["spec"]["groups"] == alerts["groups"], "PrometheusRule: groups differ from deploy/prometheus/alerts.yml (run scripts/validate-deploy.sh --sync-rules)")

check(not by_kind(hpa_docs, "ScaledObject"), "overlay hpa: ScaledObject must be removed")
hpa = one(hpa_docs, "HorizontalPodAutoscaler")
check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA: scaleTargetRef")

# Every generated name referenced by the pods exists after rendering.
if rendered:
    cms = {d["metadata"]["name"] for d in by_kind(base_docs, "ConfigMap")}
    for c in pspec["containers"] + jspec["containers"]:
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                check(e["configMapRef"]["name"] in cms, f"envFrom configMap {e['configMapRef']['name']} not rendered")
    sas = {d["metadata"]["name"] for d in by_kind(base_docs, "ServiceAccount")}
    check(pspec.get("serviceAccountName") in sas, "Deployment: serviceAccountName not in the base")

if errors:
    print("\n".join("  - " + e for e in errors))
    sys.exit(1)
print(f"ok: compose ({len(services)} services), Dockerfile, grafana, kubernetes ({len(base_docs)} base + {len(hpa_docs)} hpa resources)")
PYEOF

echo
if [ "$FAILED" != 0 ]; then
  echo "validate-deploy: FAILED" >&2
  exit 1
fi
echo "validate-deploy: all checks passed"
