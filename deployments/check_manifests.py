"""`make lint`'s check of the Kubernetes manifests, offline (CI runs no cluster).

    .venv/bin/python -m deployments.check_manifests [folder]

- the kustomization lists every manifest of the folder, and only those;
- every resource is valid, strictly (no unknown field), against the schemas of the
  Kubernetes version that kubernetes-validate ships;
- every ConfigMap and Secret (and key) that a container reads is defined: by a manifest,
  or by the kustomization's secretGenerator with the keys of its `.example` file;
- every workload's selector matches its own pods, and every Service selects the pods of
  some workload.

Prints each problem and exits 1 if there is any.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

FOLDER = Path(__file__).resolve().parent / "kubernetes"
KUSTOMIZATION = "kustomization.yaml"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def generated_secrets(folder: Path, kustomization: dict[str, Any]) -> dict[str, set[str]]:
    """The secretGenerator's Secrets and their keys, read from `<envs file>.example`."""
    secrets: dict[str, set[str]] = {}
    for generator in kustomization.get("secretGenerator", []):
        keys: set[str] = set()
        for env_file in generator.get("envs", []):
            for line in (folder / f"{env_file}.example").read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    keys.add(line.split("=", 1)[0].strip())
        secrets[generator["name"]] = keys
    return secrets


def _containers(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def references(resource: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key or None) of each ConfigMap and Secret a workload's containers read."""
    for container in _containers(resource):
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    yield kind, source[field]["name"], None
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in value_from:
                    yield kind, value_from[field]["name"], value_from[field]["key"]


def check(folder: Path) -> list[str]:
    problems: list[str] = []
    kustomization = documents(folder / KUSTOMIZATION)[0]
    listed = set(kustomization.get("resources", []))
    present = {path.name for path in folder.glob("*.yaml")} - {KUSTOMIZATION}
    problems += [
        f"{KUSTOMIZATION}: lists {name}, which does not exist" for name in sorted(listed - present)
    ]
    problems += [f"{KUSTOMIZATION}: does not list {name}" for name in sorted(present - listed)]

    version = kubernetes_validate.latest_version()
    resources: list[tuple[str, dict[str, Any]]] = []
    for name in sorted(listed & present):
        for resource in documents(folder / name):
            where = f"{name}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except (
                kubernetes_validate.ValidationError,
                kubernetes_validate.SchemaNotFoundError,
            ) as error:
                problems.append(f"{where}: {getattr(error, 'message', error)}")
            resources.append((where, resource))

    defined: dict[tuple[str, str], set[str]] = {
        ("Secret", name): keys for name, keys in generated_secrets(folder, kustomization).items()
    }
    for _, resource in resources:
        if resource.get("kind") in ("ConfigMap", "Secret"):
            data = {**resource.get("data", {}), **resource.get("stringData", {})}
            defined[(resource["kind"], resource["metadata"]["name"])] = set(data)
    pod_labels = [
        resource["spec"]["template"]["metadata"].get("labels", {})
        for _, resource in resources
        if resource.get("kind") in WORKLOADS
    ]
    for where, resource in resources:
        for kind, name, key in references(resource):
            if (kind, name) not in defined:
                problems.append(f"{where}: reads {kind} {name}, which is not defined")
            elif key is not None and key not in defined[(kind, name)]:
                problems.append(f"{where}: reads key {key} of {kind} {name}, which has no such key")
        if resource.get("kind") in WORKLOADS:
            match = resource["spec"].get("selector", {}).get("matchLabels", {})
            labels = resource["spec"]["template"]["metadata"].get("labels", {})
            if not match.items() <= labels.items():
                problems.append(f"{where}: its selector {match} does not match its pods {labels}")
        selector = (
            resource.get("spec", {}).get("selector") if resource.get("kind") == "Service" else None
        )
        if selector and not any(selector.items() <= labels.items() for labels in pod_labels):
            problems.append(f"{where}: selects no pod of any workload ({selector})")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else FOLDER
    problems = check(folder)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{folder}: every manifest valid and consistent")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
