#!/usr/bin/env python3
"""Lints a Grafana dashboard JSON file: `check_dashboard.py SCHEMA.json DASHBOARD.json`.

1. JSON Schema (draft 2020-12, PyPI `jsonschema`): charts/tools/grafana-dashboard.schema.json,
   a strict subset of Grafana's dashboard model;
2. what a schema cannot say: panel ids unique, panels inside the 24-column grid and not
   overlapping, every `$variable` a query uses is defined, every query uses the
   `${datasource}` variable (so the dashboard works with any Prometheus data source).

Prints one line per problem and exits 1 if there is any.
"""

import json
import re
import sys

import jsonschema

BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__name"}


def problems(schema, dashboard):
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(dashboard), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path)
        yield f"schema: at '/{path}': {error.message}"

    panels = dashboard.get("panels", [])
    ids = [p.get("id") for p in panels]
    for dup in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        yield f"panel id {dup} is used more than once"
    taken = {}
    for p in panels:
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy"):
            continue
        if g["x"] + g["w"] > 24:
            yield f"panel {p.get('id')} ({p.get('title')}) reaches past column 24"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in taken:
                    yield f"panel {p.get('id')} ({p.get('title')}) overlaps panel {taken[(x, y)]}"
                    break
                taken[(x, y)] = p.get("id")
            else:
                continue
            break

    defined = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    queries = [t.get("expr", "") for p in panels for t in p.get("targets", [])]
    queries += [
        v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "query"
    ]
    for q in queries:
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", q):
            if name not in defined and name not in BUILTIN_VARIABLES:
                yield f"query uses ${name}, which is not a dashboard variable: {q}"
    if "datasource" not in defined:
        yield "no `datasource` variable: the queries' ${datasource} has nothing to name"


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        schema = json.load(f)
    with open(argv[2]) as f:
        dashboard = json.load(f)
    found = list(problems(schema, dashboard))
    for line in found:
        print(line)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main(sys.argv)
