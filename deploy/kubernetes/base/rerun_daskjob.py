"""Run a DaskJob again: replace it with a fresh copy of itself.

The nightly CronJob (cronjob.yaml) runs this in the triage image with nothing but the
standard library. A DaskJob runs once, when it is created; so this reads the DaskJob that
`kubectl apply -k` put there (the spec the kustomization rendered: image, workers,
resources), deletes it with foreground propagation (its finished runner pod and any cluster
go first, so the new job's cluster and runner pod can take their names) and creates it again.
The operator sees a new object and starts a new cluster and runner.

A job still running is replaced all the same: a sweep killed half-way and rerun loses
nothing (README), and the runner's activeDeadlineSeconds ends a sweep before the next night
anyway. What the copy keeps: name, labels, annotations except the operator's own bookkeeping
(kopf.zalando.org/*, which would make the operator take the new object for one it has already
handled), spec. Not status, uid, resourceVersion, finalizers or managed fields.

    python rerun_daskjob.py            # in the cluster: DASKJOB_NAME, the pod's namespace
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any

GROUP_VERSION = "kubernetes.dask.org/v1"
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Annotations of the operator's framework (kopf): its record of what it handled.
OPERATOR_ANNOTATION_PREFIXES = ("kopf.zalando.org/",)
FINAL_STATES = ("Successful", "Failed")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Api:
    """The few Kubernetes API calls this needs, as JSON over HTTPS (or HTTP in the tests)."""

    def __init__(
        self, base: str, token: str | None = None, context: ssl.SSLContext | None = None
    ) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.context = context

    @classmethod
    def in_cluster(cls) -> Api:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        with open(f"{SERVICE_ACCOUNT}/token", encoding="ascii") as f:
            token = f.read().strip()
        context = ssl.create_default_context(cafile=f"{SERVICE_ACCOUNT}/ca.crt")
        return cls(f"https://{host}:{port}", token, context)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            raise ApiError(exc.code, str(message)) from None


def fresh_copy(job: dict[str, Any]) -> dict[str, Any]:
    """What to create again: the DaskJob as it was applied, without what the API server and
    the operator added to it."""
    meta = job["metadata"]
    copy_meta: dict[str, Any] = {"name": meta["name"]}
    if meta.get("namespace"):
        copy_meta["namespace"] = meta["namespace"]
    if meta.get("labels"):
        copy_meta["labels"] = dict(meta["labels"])
    annotations = {
        key: value
        for key, value in (meta.get("annotations") or {}).items()
        if not key.startswith(OPERATOR_ANNOTATION_PREFIXES)
    }
    if annotations:
        copy_meta["annotations"] = annotations
    return {
        "apiVersion": job.get("apiVersion", GROUP_VERSION),
        "kind": job.get("kind", "DaskJob"),
        "metadata": copy_meta,
        "spec": job["spec"],
    }


def rerun(
    api: Api,
    namespace: str,
    name: str,
    *,
    wait_seconds: float = 300.0,
    poll_seconds: float = 2.0,
    log: Any = print,
) -> dict[str, Any]:
    """Replace the DaskJob `name` with a fresh copy of itself; returns what was created."""
    collection = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/daskjobs"
    path = f"{collection}/{name}"
    try:
        job = api.request("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            raise SystemExit(
                f"no DaskJob {name} in namespace {namespace}: apply the kustomization first "
                f"(kubectl apply -k deploy/kubernetes/overlays/...); it is the template of "
                f"every night's sweep"
            ) from None
        raise
    state = (job.get("status") or {}).get("jobStatus")
    if state is None:
        log(f"DaskJob {name} has no status: is the Dask operator running? Replacing it anyway")
    elif state not in FINAL_STATES:
        log(f"DaskJob {name} is still {state}: replacing it (the new sweep resumes its work)")
    else:
        log(f"DaskJob {name}: last run {state}")
    new = fresh_copy(job)
    uid = job["metadata"].get("uid")
    api.request(
        "DELETE",
        path,
        {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Foreground",
            **({"preconditions": {"uid": uid}} if uid else {}),
        },
    )
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            current = api.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                break
            raise
        if current["metadata"].get("uid") != uid:
            raise SystemExit(f"DaskJob {name} was created again by someone else meanwhile")
        if time.monotonic() > deadline:
            raise SystemExit(
                f"DaskJob {name} still being deleted after {wait_seconds:.0f} s "
                f"(finalizers: {current['metadata'].get('finalizers')})"
            )
        time.sleep(poll_seconds)
    created = api.request("POST", collection, new)
    log(f"DaskJob {name} created again: a new sweep starts")
    return created


def main() -> int:
    name = os.environ.get("DASKJOB_NAME", "triage-sweep")
    with open(f"{SERVICE_ACCOUNT}/namespace", encoding="ascii") as f:
        namespace = f.read().strip()
    try:
        rerun(Api.in_cluster(), namespace, name)
    except (ApiError, OSError) as exc:
        print(f"cannot run DaskJob {name} again: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
