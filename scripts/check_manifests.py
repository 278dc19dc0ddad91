"""Validate every manifest under deploy/k8s against its schema (`make check`).

Built-in kinds (Deployment, Service, HPA autoscaling/v2, PodDisruptionBudget, ConfigMap,
Secret) go to kubernetes-validate, strict (an unknown or misspelt field is an error), against
the Kubernetes version below, from the OpenAPI schemas the package ships: no cluster, no
network. KEDA's ScaledObject is a CRD that package does not know: it goes to
scripts/check_keda.mjs, which runs the validator that @kubernetes-models/keda (npm) generated
from KEDA's published CRD schema (types, required fields, enums; not unknown fields, which
the CRD's schema allows). Without node or that package, the ScaledObject is reported as not
checked, and the run still fails on anything else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests must apply to (autoscaling/v2, policy/v1: >= 1.23).
KUBERNETES_VERSION = "1.27.0"
KEDA_MODULES = ROOT / ".venv" / "node-keda" / "node_modules"
KEDA_CHECK = ROOT / "scripts" / "check_keda.mjs"


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((str(path.relative_to(ROOT)), doc))
    return out


def check_keda(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Errors for the KEDA objects, or a note (printed, not an error) when it cannot run."""
    node = shutil.which("node")
    if node is None or not KEDA_MODULES.is_dir():
        where = ", ".join(sorted({w for w, _ in docs}))
        print(f"NOTE: node or @kubernetes-models/keda missing: {where} not schema-checked")
        return []
    result = subprocess.run(
        [node, str(KEDA_CHECK), str(KEDA_MODULES)],
        input=json.dumps([{"where": w, "doc": d} for w, d in docs]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 and not result.stdout.strip():
        return [f"scripts/check_keda.mjs failed: {result.stderr.strip()}"]
    return [line for line in result.stdout.splitlines() if line.strip()]


def main() -> int:
    errors: list[str] = []
    keda: list[tuple[str, dict[str, Any]]] = []
    docs = documents()
    for where, doc in docs:
        if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
            keda.append((where, doc))
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            at = "/".join(str(p) for p in exc.path)
            errors.append(f"{where}: {doc.get('kind')} {at}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError:
            errors.append(f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
    errors += check_keda(keda)
    for line in errors:
        print(line, file=sys.stderr)
    if not errors:
        print(f"{len(docs)} manifests valid (Kubernetes {KUBERNETES_VERSION} schemas, KEDA CRD)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
