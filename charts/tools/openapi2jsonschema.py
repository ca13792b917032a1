#!/usr/bin/env python3
"""Offline JSON schemas for kubeconform, in its file layout.

kubeconform looks a manifest up as `<dir>/<kind><suffix>.json` (with
`-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`), where
`kind` is lower-case and the suffix is `-<version>` for the core group and
`-<first label of the group>-<version>` otherwise: `deployment-apps-v1.json`,
`service-v1.json`, `esmtplistener-postern-v1alpha1.json`.

    openapi2jsonschema.py k8s SWAGGER.json OUTDIR
        one file per kind in Kubernetes' OpenAPI v2 document (the
        api/openapi-spec/swagger.json of the k8s.io/kubernetes Go module, or
        `kubectl get --raw /openapi/v2` from a running API server)
    openapi2jsonschema.py crd OUTDIR CRD.yaml...
        one file per served version of each CustomResourceDefinition
    openapi2jsonschema.py servicemonitor OUTDIR
        a hand-written subset of monitoring.coreos.com/v1 ServiceMonitor, PodMonitor and
        PrometheusRule (the
        Prometheus Operator's CRD is not available offline): the fields the
        chart renders, strict

Every schema is "strict", as kubeconform's `-strict` expects of the upstream
`-standalone-strict` schemas: an object with declared properties admits no
other property (unless the source says x-kubernetes-preserve-unknown-fields or
gives additionalProperties). int-or-string fields and quantities accept a
string or a number, `nullable` admits null. CEL rules (x-kubernetes-validations)
cannot be checked offline; the e2e tests check them on a real API server.
"""

import copy
import json
import os
import sys

import yaml


def kind_suffix(group, version):
    if not group:
        return f"-{version}"
    return f"-{group.split('.')[0].lower()}-{version}"


def write(outdir, kind, group, version, schema):
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{kind.lower()}{kind_suffix(group, version)}.json")
    with open(path, "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
    return path


SCHEMA_MAPS = ("properties", "definitions", "patternProperties")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_ONE = ("additionalProperties", "items", "not")


def strict(node):
    """Recursively: objects with properties allow no others; int-or-string and nullable.

    Walks schema keywords only, so that property names such as JSONSchemaProps'
    `x-kubernetes-validations` or `$ref` are left alone.
    """
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in SCHEMA_MAPS and isinstance(v, dict):
            out[k] = {name: strict(sub) for name, sub in v.items()}
        elif k in SCHEMA_LISTS and isinstance(v, list):
            out[k] = [strict(sub) for sub in v]
        elif k in SCHEMA_ONE and isinstance(v, (dict, list)):
            out[k] = strict(v)
        else:
            out[k] = v
    if out.pop("x-kubernetes-int-or-string", False) or out.get("format") == "int-or-string":
        for k in ("type", "format"):
            out.pop(k, None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not preserve
        and out.get("type", "object") == "object"
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    for k in list(out):
        # OpenAPI extensions mean nothing to a JSON Schema validator.
        if k.startswith("x-kubernetes-"):
            del out[k]
    return out


def refs(node, found):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/definitions/"):
            found.add(r[len("#/definitions/"):])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def k8s(swagger_path, outdir):
    with open(swagger_path) as f:
        swagger = json.load(f)
    defs = copy.deepcopy(swagger["definitions"])
    # YAML writes `cpu: 1` as a number; the API server takes numbers and strings.
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "description": "A quantity such as 100m, 1, 1.5 or 128Mi.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    }
    defs = {name: strict(d) for name, d in defs.items()}
    count = 0
    for name, d in defs.items():
        for gvk in swagger["definitions"][name].get("x-kubernetes-group-version-kind", []):
            # Only top-level kinds that have an apiVersion (skips *Options and the like
            # that share a GVK with a real kind only through WatchEvent and friends).
            props = d.get("properties", {})
            if "apiVersion" not in props or "kind" not in props:
                continue
            if name.endswith(("WatchEvent", "DeleteOptions")) and gvk["kind"] != name.rsplit(".", 1)[1]:
                continue
            if gvk["kind"] != name.rsplit(".", 1)[1]:
                continue
            needed, todo = set(), {name}
            while todo:
                n = todo.pop()
                if n in needed:
                    continue
                needed.add(n)
                found = set()
                refs(defs[n], found)
                todo |= found - needed
            schema = copy.deepcopy(d)
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            schema["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
            schema["properties"]["kind"] = {"type": "string", "enum": [gvk["kind"]]}
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            schema["definitions"] = {n: defs[n] for n in sorted(needed)}
            write(outdir, gvk["kind"], gvk["group"], gvk["version"], schema)
            count += 1
    print(f"{count} Kubernetes schemas in {outdir}", file=sys.stderr)


OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "generateName": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def crd(paths, outdir):
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for v in spec["versions"]:
                if not v.get("served", True):
                    continue
                schema = strict(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
                props = schema.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                props.setdefault("metadata", OBJECT_META)
                schema["additionalProperties"] = False
                schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                out = write(outdir, kind, group, v["name"], schema)
                print(f"{kind} {group}/{v['name']}: {out}", file=sys.stderr)


def servicemonitor(outdir):
    endpoint = {
        "type": "object",
        "properties": {
            "port": {"type": "string"},
            "targetPort": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "path": {"type": "string"},
            "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
            "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
            "honorLabels": {"type": "boolean"},
        },
    }
    selector = {
        "type": "object",
        "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {"type": "array", "items": {"type": "object"}},
        },
    }
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "description": "Hand-written subset of monitoring.coreos.com/v1 ServiceMonitor.",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["monitoring.coreos.com/v1"]},
            "kind": {"type": "string", "enum": ["ServiceMonitor"]},
            "metadata": OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": selector,
                    "namespaceSelector": {
                        "type": "object",
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "endpoints": {"type": "array", "minItems": 1, "items": endpoint},
                },
            },
        },
    }
    write(outdir, "ServiceMonitor", "monitoring.coreos.com", "v1", strict(schema))

    # The PodMonitor for the listener pods: the same, with podMetricsEndpoints.
    pod_schema = json.loads(json.dumps(schema))
    pod_schema["description"] = "Hand-written subset of monitoring.coreos.com/v1 PodMonitor."
    pod_schema["properties"]["kind"]["enum"] = ["PodMonitor"]
    spec = pod_schema["properties"]["spec"]
    spec["required"] = ["selector", "podMetricsEndpoints"]
    spec["properties"]["podMetricsEndpoints"] = spec["properties"].pop("endpoints")
    write(outdir, "PodMonitor", "monitoring.coreos.com", "v1", strict(pod_schema))

    # The PrometheusRule with the chart's alerts: groups of alerting or recording rules.
    duration = {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
    rule = {
        "type": "object",
        "required": ["expr"],
        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
        "properties": {
            "alert": {"type": "string", "minLength": 1},
            "record": {"type": "string", "minLength": 1},
            "expr": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]},
            "for": duration,
            "keep_firing_for": duration,
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    rule_schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "description": "Hand-written subset of monitoring.coreos.com/v1 PrometheusRule.",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["monitoring.coreos.com/v1"]},
            "kind": {"type": "string", "enum": ["PrometheusRule"]},
            "metadata": OBJECT_META,
            "spec": {
                "type": "object",
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": duration,
                                "limit": {"type": "integer"},
                                "rules": {"type": "array", "items": rule},
                            },
                        },
                    },
                },
            },
        },
    }
    write(outdir, "PrometheusRule", "monitoring.coreos.com", "v1", strict(rule_schema))


def main(argv):
    if len(argv) >= 4 and argv[1] == "k8s":
        k8s(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] == "crd":
        crd(argv[3:], argv[2])
    elif len(argv) == 3 and argv[1] == "servicemonitor":
        servicemonitor(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
