"""Extract the Dask operator's CRD schemas from a dask-kubernetes wheel into this directory.

The operator's custom resources (DaskJob, DaskCluster, DaskWorkerGroup, DaskAutoscaler) have
no schema in kubernetes-validate; tests/test_deploy.py validates the rendered manifests
against these files instead, offline. The wheel ships the generated CRDs (the Helm chart's
crds/ directory: the full PodSpec of every container included).

    pip download --no-deps -d /tmp/dk dask-kubernetes==2026.3.0
    python deploy/kubernetes/schemas/extract_crd_schemas.py /tmp/dk/dask_kubernetes-2026.3.0-*.whl

Writes KIND.json for each CRD: {group, version, kind, source, openAPIV3Schema}. Pin the
operator installed on the cluster to the same release (docs/deployment.md).
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CRD_DIR = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds/"


def extract(wheel: Path, out: Path = HERE) -> list[Path]:
    match = re.match(r"dask_kubernetes-([^-]+)-", wheel.name)
    if not match:
        raise SystemExit(f"{wheel.name} is not a dask-kubernetes wheel")
    source = f"dask-kubernetes {match.group(1)} ({CRD_DIR})"
    written = []
    with zipfile.ZipFile(wheel) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(CRD_DIR) and n.endswith(".yaml"))
        if not names:
            raise SystemExit(f"no CRDs under {CRD_DIR} in {wheel.name}")
        for name in names:
            crd = yaml.safe_load(zf.read(name))
            spec = crd["spec"]
            for version in spec["versions"]:
                doc = {
                    "group": spec["group"],
                    "version": version["name"],
                    "kind": spec["names"]["kind"],
                    "source": source,
                    "openAPIV3Schema": version["schema"]["openAPIV3Schema"],
                }
                path = out / f"{doc['kind'].lower()}-{doc['version']}.json"
                path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
                written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for path in extract(Path(sys.argv[1])):
        print(path)
