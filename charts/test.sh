#!/usr/bin/env bash
# charts/test.sh — static checks of charts/postern, offline, no cluster needed:
#
#   1. Chart.yaml's version and appVersion equal [workspace.package] version in Cargo.toml
#   2. the chart's CRD copy is byte-identical to crds/ (what `postern-operator crd` prints)
#   3. helm lint --strict, for the default values and every charts/postern/ci/*.yaml
#   4. helm template | kubeconform -strict for the same values, against Kubernetes
#      schemas generated offline from the k8s.io/kubernetes Go module's OpenAPI
#      document (cached under ~/.cache/postern-e2e), and the examples against the
#      EsmtpListener CRD's own schema; kubeconform must also reject broken
#      manifests, so the strict schemas are known to bite
#   5. what the templates render: restricted security context, RBAC without
#      wildcards and Secrets read-only, Role instead of ClusterRole with
#      watchNamespace, leader election flags, the CRD's keep policy
#   6. bad values are refused by values.schema.json with a message naming the key
#   7. the observability pack: the Grafana dashboard against a JSON schema
#      (charts/tools/grafana-dashboard.schema.json, checked with PyPI jsonschema; the
#      checks must reject broken dashboards), its ConfigMap labelled for the Grafana
#      sidecar; the PrometheusRule's rules through `promtool check rules` and
#      `promtool test rules charts/tests/alerts.test.yaml`, every alert with a severity
#      and a runbook_url whose section exists in docs/runbooks.md
#
# Tools: helm, kubeconform and promtool from the e2e build cache (`e2e/cluster build
# helm kubeconform promtool` builds them if missing), python3 with PyYAML and jsonschema.
# Environment: POSTERN_E2E_CACHE, POSTERN_E2E_K8S_VERSION as for e2e/cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHART=charts/postern
CRD=crds/esmtplisteners.postern.io.yaml
CRD_COPY=$CHART/files/esmtplisteners.postern.io.yaml
K8S_VERSION="${POSTERN_E2E_K8S_VERSION:-v1.36.3}"
CACHE_ROOT="${POSTERN_E2E_CACHE:-$HOME/.cache/postern-e2e}"
BIN="$CACHE_ROOT/$K8S_VERSION/bin"
SCHEMAS="$CACHE_ROOT/kubeconform-schemas/$K8S_VERSION"

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
die() { printf 'charts/test.sh: %s\n' "$*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------
if [[ ! -x $BIN/helm || ! -x $BIN/kubeconform || ! -x $BIN/promtool ]]; then
  e2e/cluster build helm kubeconform promtool >&2
fi
HELM="$BIN/helm"
KUBECONFORM="$BIN/kubeconform"
PROMTOOL="$BIN/promtool"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 -c 'import jsonschema' 2>/dev/null || python3 -m pip install --quiet jsonschema
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- 1. versions ----------------------------------------------------------------
read -r crate_version chart_version app_version < <(python3 - "$CHART/Chart.yaml" <<'EOF'
import sys, tomllib, yaml
with open("Cargo.toml", "rb") as f:
    crate = tomllib.load(f)["workspace"]["package"]["version"]
chart = yaml.safe_load(open(sys.argv[1]))
print(crate, chart["version"], chart["appVersion"])
EOF
)
if [[ $chart_version == "$crate_version" && $app_version == "$crate_version" ]]; then
  ok "Chart.yaml version and appVersion = crate version $crate_version"
else
  fail "Chart.yaml version $chart_version / appVersion $app_version differ from Cargo.toml's [workspace.package] version $crate_version: set both to $crate_version"
fi

# --- 2. the CRD is the generated one -------------------------------------------------
if cmp -s "$CRD" "$CRD_COPY"; then
  ok "$CRD_COPY is identical to $CRD"
else
  fail "$CRD_COPY differs from $CRD (the generated CRD): cp $CRD $CRD_COPY"
  diff -u "$CRD" "$CRD_COPY" | head -20 || true
fi

# --- 3. helm lint ---------------------------------------------------------------------
VALUES=("" "$CHART"/ci/*.yaml)
for v in "${VALUES[@]}"; do
  args=()
  [[ -n $v ]] && args=(-f "$v")
  if out="$("$HELM" lint --strict "$CHART" "${args[@]}" 2>&1)"; then
    ok "helm lint --strict ${v:-(default values)}"
  else
    fail "helm lint --strict ${v:-(default values)}"
    printf '%s\n' "$out"
  fi
done

# --- 4. kubeconform, offline ---------------------------------------------------------
# Kubernetes' schemas: from the OpenAPI v2 document in the k8s.io/kubernetes Go
# module that `e2e/cluster build` downloaded, else from a running API server.
stamp="$(sha256sum charts/tools/openapi2jsonschema.py | cut -c1-16)"
if [[ ! -f $SCHEMAS/.stamp || "$(cat "$SCHEMAS/.stamp")" != "$stamp" ]]; then
  swagger=""
  if command -v go >/dev/null; then
    swagger="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/api/openapi-spec/swagger.json"
    if [[ ! -f $swagger ]]; then
      (cd "$WORK" && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$K8S_VERSION" >/dev/null 2>&1) || true
    fi
  fi
  if [[ -z $swagger || ! -f $swagger ]]; then
    swagger="$WORK/swagger.json"
    kubeconfig="${KUBECONFIG:-${POSTERN_E2E_STATE:-/tmp/postern-e2e}/kubeconfig}"
    "$BIN/kubectl" --kubeconfig "$kubeconfig" get --raw /openapi/v2 >"$swagger" \
      || die "no OpenAPI document for Kubernetes $K8S_VERSION: neither the k8s.io/kubernetes Go module nor a running control plane (e2e/cluster up)"
  fi
  rm -rf "$SCHEMAS"
  python3 charts/tools/openapi2jsonschema.py k8s "$swagger" "$SCHEMAS"
  echo "$stamp" >"$SCHEMAS/.stamp"
fi
# The CRD's own schema (from the generated file) and the ServiceMonitor/PodMonitor subsets.
python3 charts/tools/openapi2jsonschema.py crd "$WORK/crd-schemas" "$CRD" 2>/dev/null
python3 charts/tools/openapi2jsonschema.py servicemonitor "$WORK/crd-schemas"
conform() {
  "$KUBECONFORM" -strict -summary \
    -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$WORK/crd-schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

for v in "${VALUES[@]}"; do
  args=()
  [[ -n $v ]] && args=(-f "$v")
  name="$(basename "${v:-default}" .yaml)"
  if "$HELM" template postern "$CHART" --namespace postern-system "${args[@]}" >"$WORK/$name.yaml" 2>"$WORK/err" \
    && out="$(conform "$WORK/$name.yaml" 2>&1)" \
    && grep -q 'Invalid: 0, Errors: 0, Skipped: 0' <<<"$out"; then
    ok "helm template ${v:-(default values)} | kubeconform -strict: ${out##*Summary: }"
  else
    fail "helm template ${v:-(default values)} | kubeconform -strict"
    cat "$WORK/err" 2>/dev/null
    printf '%s\n' "${out:-}"
  fi
done

if out="$(conform "$CHART/examples" 2>&1)" && grep -q 'Invalid: 0, Errors: 0, Skipped: 0' <<<"$out"; then
  ok "examples | kubeconform -strict (EsmtpListener CRD schema): ${out##*Summary: }"
else
  fail "examples | kubeconform -strict"
  printf '%s\n' "$out"
fi

# The schemas must refuse what the API server would: a misspelt field, a wrong type.
cat >"$WORK/bad-listener.yaml" <<'EOF'
apiVersion: postern.io/v1alpha1
kind: EsmtpListener
metadata: {name: bad}
spec:
  replicas: two
  listeners:
    - listen: 0.0.0.0:25
      relayhosts: [10.0.0.0/8]
EOF
cat >"$WORK/bad-deployment.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: x
          securityContext: {readOnlyRootFilesystm: true}
EOF
for bad in bad-listener bad-deployment; do
  out="$(conform "$WORK/$bad.yaml" 2>&1 || true)"
  if grep -q 'Invalid: 1' <<<"$out"; then
    ok "kubeconform -strict rejects $bad.yaml:$(grep -o " - at '.*" <<<"$out" | head -1)"
  else
    fail "kubeconform -strict accepted $bad.yaml: $out"
  fi
done

# --- 5. what the templates render ---------------------------------------------------
if out="$(python3 - "$WORK" <<'EOF'
import sys, yaml
work = sys.argv[1]
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d]
def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

default = load("default")
check({d["kind"] for d in default} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
      "Role", "RoleBinding", "CustomResourceDefinition", "Deployment", "Service", "PodDisruptionBudget"},
      f"default kinds: {sorted({d['kind'] for d in default})}")
dep = kinds(default, "Deployment")[0]
check(dep["spec"]["replicas"] == 1, "default replicas is 1")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
check(pod["securityContext"].get("runAsNonRoot") is True, "pod runAsNonRoot")
check(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
sc = c["securityContext"]
check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
check(sc.get("capabilities", {}).get("drop") == ["ALL"], "drop ALL")
check(c["livenessProbe"]["httpGet"]["path"] == "/livez", "liveness /livez")
check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness /readyz")
check(c["resources"].get("requests") and c["resources"].get("limits"), "resources")
check(c["image"] == "ghcr.io/postern/postern:0.1.0" or c["image"].startswith("ghcr.io/postern/postern:"), c["image"])
check(c["command"] == ["postern-operator"] and c["args"][0] == "run", c.get("args"))
check("--lease-namespace=postern-system" in c["args"], f"lease in the release namespace: {c['args']}")
check(not any(a.startswith("--namespace") for a in c["args"]), "cluster mode watches all namespaces")
env = {e["name"]: e.get("value") for e in c["env"]}
check(env.get("POSTERN_LISTENER_IMAGE", "").startswith("ghcr.io/postern/postern:"), f"listener image passed: {env}")
check(env.get("POSTERN_LISTENER_FS_GROUP") == "65532", f"listener fsGroup passed: {env}")
pdb = kinds(default, "PodDisruptionBudget")[0]
check(pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], f"operator PDB: {pdb['spec']}")

air = load("airgapped-values")
ac = kinds(air, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
aenv = {e["name"]: e.get("value") for e in ac["env"]}
check(ac["image"].startswith("registry.example.com:5000/postern/postern:"), f"airgapped operator image: {ac['image']}")
check(aenv.get("POSTERN_LISTENER_IMAGE", "").startswith("registry.example.com:5000/postern/postern:"), f"airgapped listener image: {aenv}")
check(aenv.get("POSTERN_LISTENER_FS_GROUP") == "none", f"airgapped fsGroup: {aenv}")
check(aenv.get("HTTPS_PROXY") == "http://proxy.example.com:3128", f"extraEnv: {aenv}")
check(ac["args"][-1] == "--concurrency=4", f"extraArgs come last: {ac['args']}")

crd = kinds(default, "CustomResourceDefinition")[0]
check(crd["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", "CRD keep policy")
check(crd["metadata"]["name"] == "esmtplisteners.postern.io", "CRD name")
generated = yaml.safe_load(open("crds/esmtplisteners.postern.io.yaml"))
check(crd["spec"] == generated["spec"], "the rendered CRD's spec is the generated one")

role = kinds(default, "ClusterRole")[0]
for r in role["rules"]:
    check("*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], f"wildcard in {r}")
    if "secrets" in r["resources"]:
        check(set(r["verbs"]) <= {"get", "list", "watch"}, f"Secrets not read-only: {r}")
granted = {(g, res): set(r["verbs"]) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"]}
check(granted.get(("", "secrets")) == {"list", "watch"}, f"secrets {granted.get(('', 'secrets'))}")
check(("coordination.k8s.io", "leases") not in granted, "leases are not cluster-wide")
lease_role = [r for r in kinds(default, "Role") if r["metadata"]["name"].endswith("-leader-election")][0]
check(lease_role["metadata"]["namespace"] == "postern-system", "lease Role in the release namespace")

ns = load("namespaced-values")
check(not kinds(ns, "ClusterRole") and not kinds(ns, "ClusterRoleBinding"), "namespaced: no ClusterRole")
roles = {(r["metadata"]["name"], r["metadata"]["namespace"]) for r in kinds(ns, "Role")}
check(("postern", "mail") in roles or any(n == "mail" for _, n in roles), f"namespaced: Role in mail: {roles}")
args = kinds(ns, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
check("--namespace=mail" in args, f"namespaced: --namespace=mail in {args}")
binding = [b for b in kinds(ns, "RoleBinding") if b["metadata"]["namespace"] == "mail"][0]
check(binding["subjects"][0]["namespace"] == "postern-system", "namespaced: the binding names the release's ServiceAccount")

ha = load("ha-values")
d = kinds(ha, "Deployment")[0]
check(d["spec"]["replicas"] == 2, "ha: replicas 2")
args = d["spec"]["template"]["spec"]["containers"][0]["args"]
check("--no-leader-election" not in args and any(a.startswith("--lease-name=") for a in args), f"ha: leader election on: {args}")

sm = load("servicemonitor-values")
check(len(kinds(sm, "ServiceMonitor")) == 1, "serviceMonitor.enabled renders a ServiceMonitor")
check(not kinds(default, "ServiceMonitor"), "no ServiceMonitor by default")
pm = kinds(sm, "PodMonitor")
check(len(pm) == 1 and pm[0]["spec"]["podMetricsEndpoints"][0]["port"] == "admin", "listener.podMonitor.enabled renders a PodMonitor on the admin port")
check(pm and pm[0]["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "postern-listener", "the PodMonitor selects listener pods")
check(not kinds(default, "PodMonitor"), "no PodMonitor by default")

nocrd = load("no-crds-values")
check(not kinds(nocrd, "CustomResourceDefinition"), "crds.install=false renders no CRD")
img = kinds(nocrd, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"]
check("@sha256:" in img, f"digest: {img}")

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
EOF
)"; then
  ok "rendered objects: restricted security context, probes, RBAC (no wildcards, Secrets list/watch only, leases in the release namespace), namespace mode, leader election, listener image and registry, extraEnv/extraArgs, operator PDB, ServiceMonitor, PodMonitor, CRD keep policy"
else
  fail "rendered objects:"
  printf '  %s\n' "$out"
fi

# --- 5b. the chart's RBAC is what the operator says it uses ----------------------------
# `postern-operator rbac` prints the operator's exact rules (operator/src/rbac.rs, proven
# sufficient by its own e2e test). The chart grants the same (group, resource, verb)
# triples, plus only esmtplisteners/finalizers update (blockOwnerDeletion under the
# OwnerReferencesPermissionEnforcement admission plugin, which the operator's test
# cluster does not enable).
if cargo run -q --locked -p postern-operator -- rbac >"$WORK/operator-rbac.yaml" 2>"$WORK/err" \
  && out="$(python3 - "$WORK" <<'EOF'
import sys, yaml
work = sys.argv[1]
def triples(rules):
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
operator = triples(yaml.safe_load(open(f"{work}/operator-rbac.yaml"))["rules"])
docs = [d for d in yaml.safe_load_all(open(f"{work}/default.yaml")) if d]
chart = set()
for d in docs:
    if d["kind"] in ("ClusterRole", "Role"):
        chart |= triples(d["rules"])
extra = chart - operator - {("postern.io", "esmtplisteners/finalizers", "update")}
missing = operator - chart
for t in sorted(missing):
    print("the operator uses, the chart does not grant:", t)
for t in sorted(extra):
    print("the chart grants, the operator does not use:", t)
sys.exit(1 if missing or extra else 0)
EOF
)"; then
  ok "the chart's RBAC = postern-operator rbac (+ esmtplisteners/finalizers update)"
else
  fail "the chart's RBAC differs from postern-operator rbac:"
  cat "$WORK/err" 2>/dev/null
  printf '  %s\n' "${out:-}"
fi

# --- 6. bad values are refused, with a message that names the key ------------------------
refused() { # expected-message helm-args...
  local want="$1"
  shift
  local out
  if out="$("$HELM" template postern "$CHART" "$@" 2>&1)"; then
    fail "helm template $* was accepted"
  elif grep -qF -- "$want" <<<"$out"; then
    ok "helm template $* refused: $(grep -F -- "$want" <<<"$out" | head -1 | sed 's/^[- ]*//')"
  else
    fail "helm template $* refused without '$want':"
    printf '%s\n' "$out"
  fi
}
refused "at '/replicas': minimum: got -1, want 0" --set replicas=-1
refused "at '/replicas': got string, want integer" --set-string replicas=two
refused "additional properties 'replica' not allowed" --set replica=2
refused "at '/watchNamespace'" --set watchNamespace=Not_A_Namespace
refused "at '/image/pullPolicy'" --set image.pullPolicy=Sometimes
refused "at '/securityContext/readOnlyRootFilesystem'" --set securityContext.readOnlyRootFilesystem=false
refused "at '/podSecurityContext/runAsNonRoot'" --set podSecurityContext.runAsNonRoot=false
refused "at '/metrics/port'" --set metrics.port=80
refused "at '/crds/install': got string, want boolean" --set-string crds.install=yes
refused "leaderElection.enabled=false needs replicas: 1" --set replicas=2 --set leaderElection.enabled=false
refused "serviceAccount.name is required" --set serviceAccount.create=false
refused "at '/listener/fsGroup'" --set-string listener.fsGroup=0
refused "at '/extraArgs/0'" --set 'extraArgs[0]=concurrency' 

refused "at '/prometheusRule/deliveryFailureRatio'" --set prometheusRule.deliveryFailureRatio=2
refused "at '/prometheusRule/runbookUrl'" --set prometheusRule.runbookUrl=docs/runbooks.md
refused "additional properties 'enable' not allowed" --set grafanaDashboard.enable=true

# --- 7. the observability pack -------------------------------------------------------------
DASHBOARD=$CHART/files/dashboards/postern.json
DASHBOARD_SCHEMA=charts/tools/grafana-dashboard.schema.json
if out="$(python3 charts/tools/check_dashboard.py "$DASHBOARD_SCHEMA" "$DASHBOARD" 2>&1)"; then
  ok "$DASHBOARD: valid against $DASHBOARD_SCHEMA, panels on the grid, variables defined"
else
  fail "$DASHBOARD:"
  printf '  %s\n' "$out"
fi
# The schema and the checks must bite: each broken copy is refused, for the reason given.
broken_dashboard() { # name want python-mutation-of-panel
  python3 - "$DASHBOARD" "$WORK/$1.json" "$3" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
panel = next(p for p in d["panels"] if p["type"] == "timeseries")
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"))
EOF
  local out
  if out="$(python3 charts/tools/check_dashboard.py "$DASHBOARD_SCHEMA" "$WORK/$1.json" 2>&1)"; then
    fail "check_dashboard.py accepted $1"
  elif grep -qF -- "$2" <<<"$out"; then
    ok "check_dashboard.py rejects $1: $(grep -F -- "$2" <<<"$out" | head -1)"
  else
    fail "check_dashboard.py rejects $1 without '$2':"
    printf '  %s\n' "$out"
  fi
}
broken_dashboard misspelt-field "'titel' was unexpected" 'panel["titel"] = panel.pop("title")'
broken_dashboard unknown-unit-key "'unt' was unexpected" 'panel["fieldConfig"]["defaults"]["unt"] = "s"'
broken_dashboard fixed-datasource "'\${datasource}' was expected" 'panel["targets"][0]["datasource"]["uid"] = "prometheus"'
broken_dashboard undefined-variable 'query uses $cluster' 'panel["targets"][0]["expr"] = "up{cluster=\"$cluster\"}"'
broken_dashboard overlapping-panels 'overlaps panel' 'panel["gridPos"]["y"] = 0'

if out="$(python3 - "$WORK" "$DASHBOARD" <<'EOF'
import re, sys, yaml
work, dashboard = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(f"{work}/monitoring-values.yaml")) if d]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)
default = [d for d in yaml.safe_load_all(open(f"{work}/default.yaml")) if d]
check(not [d for d in default if d["kind"] == "PrometheusRule" or
           (d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {}))],
      "neither the dashboard nor the rules are rendered by default")
cms = [d for d in docs if d["kind"] == "ConfigMap"]
check(len(cms) == 1, f"one dashboard ConfigMap: {len(cms)}")
if cms:
    cm = cms[0]
    check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", f"sidecar label: {cm['metadata']['labels']}")
    check(cm["metadata"]["namespace"] == "monitoring", "grafanaDashboard.namespace")
    check(cm["metadata"].get("annotations", {}).get("grafana_folder") == "Mail", "folder annotation")
    check(cm["data"].get("postern.json") == open(dashboard).read().rstrip("\n"),
          "the ConfigMap holds files/dashboards/postern.json unchanged")
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
check(len(rules) == 1, f"one PrometheusRule: {len(rules)}")
if rules:
    check(rules[0]["metadata"]["labels"].get("release") == "prometheus", "prometheusRule.labels")
    yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(f"{work}/rules.yaml", "w"), sort_keys=False)
    runbooks = open("docs/runbooks.md").read()
    sections = {h.lower() for h in re.findall(r"^## (\S+)$", runbooks, re.M)}
    alerts = [r for g in rules[0]["spec"]["groups"] for r in g["rules"] if "alert" in r]
    check(len(alerts) >= 10, f"{len(alerts)} alerts")
    for r in alerts:
        a = r["alert"]
        check(r.get("labels", {}).get("severity") in ("warning", "critical"), f"{a}: severity")
        check(r.get("annotations", {}).get("summary"), f"{a}: summary")
        url = r.get("annotations", {}).get("runbook_url", "")
        check(url == "https://github.com/postern/postern/blob/main/docs/runbooks.md#" + a.lower(),
              f"{a}: runbook_url {url}")
        check(a.lower() in sections, f"{a}: no '## {a}' section in docs/runbooks.md")
    names = {r["alert"].lower() for r in alerts}
    for s in sorted(sections - names):
        errors.append(f"docs/runbooks.md has a section for no alert: {s}")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
EOF
)"; then
  ok "monitoring values: the dashboard ConfigMap (sidecar label, folder, the file unchanged), the PrometheusRule (labels; every alert has a severity, a summary and a runbook_url whose section is in docs/runbooks.md)"
else
  fail "monitoring values:"
  printf '  %s\n' "$out"
fi
if [[ -f $WORK/rules.yaml ]] && out="$("$PROMTOOL" check rules --lint=all --lint-fatal "$WORK/rules.yaml" 2>&1)"; then
  ok "promtool check rules --lint=all: $(grep -o 'SUCCESS.*' <<<"$out")"
else
  fail "promtool check rules"
  printf '%s\n' "${out:-no rules rendered}"
fi
cp charts/tests/alerts.test.yaml "$WORK/"
if [[ -f $WORK/rules.yaml ]] && out="$(cd "$WORK" && "$PROMTOOL" test rules alerts.test.yaml 2>&1)"; then
  ok "promtool test rules charts/tests/alerts.test.yaml: $(grep -c 'alertname:' charts/tests/alerts.test.yaml) alert checks pass"
else
  fail "promtool test rules charts/tests/alerts.test.yaml"
  printf '%s\n' "${out:-no rules rendered}"
fi

printf '\n%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
