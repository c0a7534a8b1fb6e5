#!/usr/bin/env python3
"""Validates Gateway API objects (rendered manifests, multi-document YAML) offline,
against the CRD schemas Gateway API publishes (config/crd/standard/ of the Go
module sigs.k8s.io/gateway-api), as `kubectl apply --validate=strict` would:

  - each object's kind and apiVersion must be one a standard CRD serves;
  - its fields must satisfy that version's openAPIV3Schema (types, required
    fields, enums, patterns, lengths, list sizes);
  - a field the schema does not define is an error (the API server would drop
    it, and kubectl's strict validation refuses it).

The CRDs' CEL rules (`x-kubernetes-validations`) need the API server's CEL
environment and are not evaluated; docs/lanes.md says so.

Usage: validate-gateway-api.py CRD_DIR FILE...   Exit 1 on any error.
Other kinds in FILE are skipped (the other validators check them).
"""

import copy
import glob
import os
import sys

import jsonschema
import yaml

GROUP = "gateway.networking.k8s.io"


def strict(schema):
    """The schema with unknown fields refused: every object schema that lists
    its properties, and does not say it keeps unknown fields, gets
    `additionalProperties: false`. Kubernetes' own `nullable` becomes a null
    allowed beside the type."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(s)
    # metadata is ObjectMeta, which the CRD leaves open.
    s.get("properties", {}).get("metadata", {}).pop("additionalProperties", None)
    return s


def schemas(crd_dir):
    """(kind, apiVersion) -> a validator, for every served version."""
    out = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, f"{GROUP}_*.yaml"))):
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                kind = crd["spec"]["names"]["kind"]
                for v in crd["spec"]["versions"]:
                    if not v.get("served"):
                        continue
                    schema = strict(v["schema"]["openAPIV3Schema"])
                    out[(kind, f"{GROUP}/{v['name']}")] = jsonschema.Draft7Validator(schema)
    return out


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(argv) < 3 else sys.stdout)
        return 0 if len(argv) >= 2 and argv[1] in ("-h", "--help") else 2
    crd_dir = argv[1]
    known = schemas(crd_dir)
    if not known:
        print(f"error: no Gateway API CRDs in {crd_dir}", file=sys.stderr)
        return 2
    errors = 0
    checked = 0
    for path in argv[2:]:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
        for i, doc in enumerate(docs, 1):
            if not doc or not str(doc.get("apiVersion", "")).startswith(GROUP + "/"):
                continue
            name = f"{doc.get('kind')} {doc.get('metadata', {}).get('namespace', 'default')}/{doc.get('metadata', {}).get('name')}"
            v = known.get((doc.get("kind"), doc.get("apiVersion")))
            if v is None:
                print(f"{path}: document {i} ({name}): no standard CRD serves {doc.get('apiVersion')} {doc.get('kind')}")
                errors += 1
                continue
            checked += 1
            for e in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
                at = ".".join(str(p) for p in e.path) or "(object)"
                print(f"{path}: document {i} ({name}): {at}: {e.message}")
                errors += 1
    if errors:
        print(f"Gateway API: {errors} error(s)", file=sys.stderr)
        return 1
    print(f"Gateway API: {checked} objects valid against {crd_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
