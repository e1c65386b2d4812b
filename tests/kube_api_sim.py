"""A simulated Kubernetes API server on 127.0.0.1 that the real kubernetes client talks to (no test here).

No API server can run on this machine, so this one plays the parts of the cluster the platform meets, each as its
upstream counterpart behaves:
- the API server's REST paths, label selectors, JSON merge patch and Status bodies (404 `pods "x" not found`);
- RBAC: a request the given Role rules do not grant is answered 403 with the authorizer's message
  (kubernetes plugin/pkg/auth/authorizer/rbac: `User "..." cannot VERB resource "R" in API group "G" ...`);
- the training operator (kubeflow/training-operator pkg/controller.v1/pytorch): a created PyTorchJob gets a uid and a
  Created condition, its master pod `<job>-master-0` appears a moment later with the operator's labels, and the job's
  Running / Succeeded / Failed conditions follow the pod;
- the kubelet: a pod walks Pending (unschedulable) -> ContainerCreating -> Running -> Succeeded or Failed; its log
  answers 400 `container "pytorch" in pod "x" is waiting to start: ContainerCreating` until the container runs
  (kubernetes pkg/kubelet/kubelet_pods.go validateContainerLogStatus), streams with follow=true until the container
  ends, prefixes RFC 3339 nanosecond timestamps with timestamps=true and honours sinceSeconds / tailLines;
- a stream cut mid-way by a connection reset (`reset_stream_after` lines), as when a kubelet or API server restarts;
- the garbage collector: deleting a PyTorchJob deletes its pods and every object whose ownerReferences name its uid;
- KServe in Standard (raw Deployment) mode: a created or updated InferenceService gets a new generation and a new
  predictor revision; its Deployment rolls as the predictor's deploymentStrategy says (RollingUpdate: the new pod
  starts beside the old one, which keeps serving until the new one is Ready and then terminates; Recreate: the old pod
  goes first). The InferenceService reports Ready at the new generation while the Deployment is Available, which in a
  rolling update is before the new pod serves (KServe pkg/controller/v1beta1/inferenceservice/components/predictor.go
  propagates the Deployment's Available condition). Predictor pods carry KServe's labels
  (serving.kserve.io/inferenceservice, component=predictor) and its storage initializer, whose first argument is the
  storageUri they download (kserve pkg/webhook/admission/pod/storage_initializer_injector.go). A checkpoint listed
  in `RolloutScript.failing` makes the storage initializer exit with an error: KServe then reports the model
  BlockedByFailedLoad with a ModelLoadFailed lastFailureInfo (kserve pkg/apis/serving/v1beta1/
  inference_service_status.go, PropagateModelStatus), and a rolling update keeps the old pod serving.
Every request is recorded with the (API group, resource, verb) the authorizer would check.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

TRAINING_GROUP = "kubeflow.org"


@dataclass(frozen=True)
class Call:
    """One request as the authorizer sees it."""

    method: str
    group: str
    resource: str
    verb: str
    name: str


@dataclass
class PodScript:
    """How a job's master pod lives: seconds in each phase after the job is created, its log and how it ends."""

    no_pod_s: float = 0.3
    unschedulable_s: float = 0.3
    creating_s: float = 0.6
    lines: tuple[str, ...] = ("step 1 loss 2.0", "step 2 loss 1.5", "step 3 loss 1.1")
    line_every_s: float = 0.15
    exit_code: int = 0
    reason: str = ""
    reset_stream_after: int | None = None  # cut the first log stream after this many lines (connection reset)

    def phase(self, elapsed: float) -> str:
        """none, unschedulable, creating, running or ended at `elapsed` seconds after the job was created."""
        edges = (("none", self.no_pod_s), ("unschedulable", self.unschedulable_s), ("creating", self.creating_s),
                 ("running", self.line_every_s * (len(self.lines) + 1)))
        for name, seconds in edges:
            if elapsed < seconds:
                return name
            elapsed -= seconds
        return "ended"

    def started_after(self) -> float:
        """Seconds from the job's creation to the container's start."""
        return self.no_pod_s + self.unschedulable_s + self.creating_s


@dataclass
class RolloutScript:
    """How a predictor revision rolls out, in seconds after the InferenceService was created or updated."""

    observed_s: float = 0.2  # the InferenceService reports Ready at the new generation (Deployment Available)
    pod_ready_s: float = 1.0  # the new revision's pod is Ready (model downloaded and loaded)
    drain_s: float = 0.3  # a replaced pod terminates (deletionTimestamp set, not Ready) this long before it is gone
    failing: dict[str, str] = field(default_factory=dict)  # storageUri -> the storage initializer's error message


@dataclass
class Revision:
    """One predictor revision of an InferenceService: its generation, checkpoint, strategy and when it was made."""

    generation: int
    storage_uri: str
    strategy: str
    at: float


def stamp(when: datetime) -> str:
    """RFC 3339 with nanoseconds, as the kubelet writes log timestamps."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def iso(when: datetime) -> str:
    """RFC 3339 seconds, as the API server writes metadata times."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def rule_grants(rules: list[dict], group: str, resource: str, verb: str, name: str) -> bool:
    """Whether RBAC rules grant verb on group/resource (named `name`), wildcards and resourceNames included."""
    for rule in rules:
        if not ({group, "*"} & set(rule.get("apiGroups", []))):
            continue
        if not ({resource, "*"} & set(rule.get("resources", []))):
            continue
        if not ({verb, "*"} & set(rule.get("verbs", []))):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False


@dataclass
class FakeCluster:
    """The simulated cluster's state; `serve()` starts its API server."""

    namespace: str = "ml"
    rules: list[dict] | None = None
    user: str = "system:serviceaccount:ml:simplear-pipeline"
    scripts: dict[str, PodScript] = field(default_factory=dict)
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    resets_done: set[str] = field(default_factory=set)
    rollouts: RolloutScript = field(default_factory=RolloutScript)
    revisions: dict[str, list[Revision]] = field(default_factory=dict)

    # --- controllers -------------------------------------------------------------------------------------------

    def script(self, job: str) -> PodScript:
        """The pod script of a job: the one registered under the longest prefix of its name, else the default."""
        matches = [prefix for prefix in self.scripts if job.startswith(prefix)]
        return self.scripts[max(matches, key=len)] if matches else PodScript()

    def _master_pod(self, job: dict) -> dict | None:
        """The master pod the operator and kubelet have made of a job by now, or None."""
        name = job["metadata"]["name"]
        script, elapsed = self.script(name), time.monotonic() - self.created[name]
        phase = script.phase(elapsed)
        if phase == "none":
            return None
        created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].rstrip("Z")).replace(tzinfo=UTC)
        template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        labels = {**template["metadata"].get("labels", {}), "training.kubeflow.org/job-name": name,
                  "training.kubeflow.org/operator-name": "pytorchjob-controller",
                  "training.kubeflow.org/replica-type": "master", "training.kubeflow.org/replica-index": "0",
                  "training.kubeflow.org/job-role": "master"}
        status: dict[str, Any] = {"phase": "Pending"}
        container: dict[str, Any] = {"name": "pytorch", "image": template["spec"]["containers"][0]["image"],
                                     "imageID": "", "ready": False, "restartCount": 0}
        started = created + timedelta(seconds=script.started_after())
        if phase == "unschedulable":
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]
        elif phase == "creating":
            status["containerStatuses"] = [{**container, "state": {"waiting": {"reason": "ContainerCreating"}}}]
        elif phase == "running":
            status["phase"] = "Running"
            status["containerStatuses"] = [{**container, "ready": True, "state": {"running": {
                "startedAt": iso(started)}}}]
        else:
            status["phase"] = "Succeeded" if script.exit_code == 0 else "Failed"
            ended = started + timedelta(seconds=script.line_every_s * (len(script.lines) + 1))
            status["containerStatuses"] = [{**container, "state": {"terminated": {
                "exitCode": script.exit_code, "reason": script.reason or ("Completed" if not script.exit_code
                                                                          else "Error"),
                "startedAt": iso(started), "finishedAt": iso(ended)}}}]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{name}-master-0", "namespace": self.namespace, "labels": labels,
                             "creationTimestamp": job["metadata"]["creationTimestamp"],
                             "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                                  "name": name, "uid": job["metadata"]["uid"], "controller": True}]},
                "spec": template["spec"], "status": status}

    def _log_lines(self, job_name: str) -> list[tuple[datetime, str]]:
        """(time, text) of every line the master container has written by now."""
        script = self.script(job_name)
        elapsed = time.monotonic() - self.created[job_name] - script.started_after()
        job = self.objects[(TRAINING_GROUP, "pytorchjobs", job_name)]
        created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].rstrip("Z")).replace(tzinfo=UTC)
        start = created + timedelta(seconds=script.started_after())
        written = int(elapsed // script.line_every_s)
        return [(start + timedelta(seconds=script.line_every_s * (i + 1)), line)
                for i, line in enumerate(script.lines[:max(0, written)])]

    def _job_with_status(self, job: dict) -> dict:
        """A PyTorchJob with the conditions the operator has written by now."""
        name = job["metadata"]["name"]
        at = job["metadata"]["creationTimestamp"]
        conditions = [{"type": "Created", "status": "True", "reason": "PyTorchJobCreated",
                       "message": f"PyTorchJob {name} is created.", "lastTransitionTime": at, "lastUpdateTime": at}]
        phase = self.script(name).phase(time.monotonic() - self.created[name])
        script = self.script(name)
        if phase in ("running", "ended"):
            conditions.append({"type": "Running", "status": "True" if phase == "running" else "False",
                               "reason": "PyTorchJobRunning", "message": f"PyTorchJob {name} is running.",
                               "lastTransitionTime": at, "lastUpdateTime": at})
        if phase == "ended":
            kind = "Succeeded" if script.exit_code == 0 else "Failed"
            conditions.append({"type": kind, "status": "True", "reason": f"PyTorchJob{kind}",
                               "message": f"PyTorchJob {name} is {kind.lower()}." if kind == "Succeeded"
                               else f"PyTorchJob {name} is failed because 1 Master replica(s) failed.",
                               "lastTransitionTime": at, "lastUpdateTime": at})
        return {**job, "status": {"conditions": conditions, "startTime": at}}

    def _pods(self) -> list[dict]:
        """Every pod that exists now."""
        jobs = [obj for (group, plural, _), obj in self.objects.items() if plural == "pytorchjobs"]
        pods = [pod for job in jobs if (pod := self._master_pod(job)) is not None]
        for name, revisions in self.revisions.items():
            if ("serving.kserve.io", "inferenceservices", name) in self.objects:
                pods += self._predictor_pods(name, revisions)
        return pods

    def new_revision(self, isvc: dict) -> None:
        """The KServe controller saw a new generation of an InferenceService: its predictor rolls to a new revision."""
        predictor = isvc["spec"]["predictor"]
        uri = predictor.get("model", {}).get("storageUri", "")
        strategy = predictor.get("deploymentStrategy", {}).get("type", "RollingUpdate")
        self.revisions.setdefault(isvc["metadata"]["name"], []).append(
            Revision(isvc["metadata"]["generation"], uri, strategy, time.monotonic()))

    def _predictor_pods(self, name: str, revisions: list[Revision]) -> list[dict]:
        """The predictor pods of an InferenceService now: the latest revision's and, until it is replaced, the one
        before it (its Deployment keeps one replica)."""
        now, script = time.monotonic(), self.rollouts
        latest = revisions[-1]
        pods = []
        fails = latest.storage_uri in script.failing
        if len(revisions) > 1:
            previous, since = revisions[-2], now - latest.at
            replaced_after = 0.0 if latest.strategy == "Recreate" else float("inf") if fails else script.pod_ready_s
            if since < replaced_after + script.drain_s:
                pods.append(self._predictor_pod(name, previous, ready=since < replaced_after,
                                                terminating=since >= replaced_after))
        start = script.drain_s if latest.strategy == "Recreate" and len(revisions) > 1 else 0.0
        if now - latest.at >= start:
            pods.append(self._predictor_pod(name, latest, ready=not fails and now - latest.at >= start +
                                            script.pod_ready_s, terminating=False))
        return pods

    def _predictor_pod(self, name: str, revision: Revision, ready: bool, terminating: bool) -> dict:
        """A predictor pod of one revision, as the API server returns it."""
        meta: dict[str, Any] = {
            "name": f"{name}-predictor-{revision.generation:05d}-7d9f8", "namespace": self.namespace,
            "labels": {"serving.kserve.io/inferenceservice": name, "component": "predictor",
                       "app": f"isvc.{name}-predictor"},
            "creationTimestamp": iso(datetime.now(UTC)),
        }
        if terminating:
            meta["deletionTimestamp"] = iso(datetime.now(UTC))
        spec = {"initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.15.0",
                                    "args": [revision.storage_uri, "/mnt/models"]}],
                "containers": [{"name": "kserve-container", "image": "ghcr.io/simplear/simplear-serve:0.1.0"}]}
        status: dict[str, Any] = {"phase": "Running" if ready else "Pending",
                                  "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        if revision.storage_uri in self.rollouts.failing:
            status["initContainerStatuses"] = [{"name": "storage-initializer", "ready": False, "restartCount": 0,
                                                "state": {"terminated": {"reason": "Error", "exitCode": 1, "message":
                                                          self.rollouts.failing[revision.storage_uri]}}}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}

    def _isvc_status(self, isvc: dict) -> dict:
        """An InferenceService's status now: Ready at its latest generation as KServe's raw mode reports it."""
        name, script = isvc["metadata"]["name"], self.rollouts
        revisions = self.revisions.get(name)
        if not revisions:
            return isvc.get("status", {})
        latest, since = revisions[-1], time.monotonic() - revisions[-1].at
        recreating = latest.strategy == "Recreate" and len(revisions) > 1
        observed = since >= (script.drain_s + script.pod_ready_s if recreating else script.observed_s)
        if not observed:
            return {**isvc.get("status", {}), "conditions": [{"type": "Ready", "status": "False",
                                                              "reason": "RevisionMissing"}],
                    "modelStatus": {"transitionStatus": "InProgress", "states": {"targetModelState": "Pending"}}}
        if latest.storage_uri in script.failing:
            # The Deployment is Available only while an old pod still serves (a rolling update that cannot finish).
            available = len(revisions) > 1 and latest.strategy != "Recreate"
            ready = {"type": "Ready", "status": "True"} if available else {
                "type": "Ready", "status": "False", "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability."}
            return {**isvc.get("status", {}), "observedGeneration": latest.generation, "conditions": [ready],
                    "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                                    "states": {"activeModelState": "Loaded" if available else "",
                                               "targetModelState": "FailedToLoad"},
                                    "lastFailureInfo": {"reason": "ModelLoadFailed", "exitCode": 1,
                                                        "message": script.failing[latest.storage_uri]}}}
        loaded = since >= script.pod_ready_s
        return {**isvc.get("status", {}), "observedGeneration": latest.generation,
                "url": f"http://{name}-{self.namespace}.example.com",
                "conditions": [{"type": "Ready", "status": "True"}],
                "modelStatus": {"transitionStatus": "UpToDate" if loaded else "InProgress",
                                "states": {"activeModelState": "Loaded",
                                           "targetModelState": "Loaded" if loaded else "Loading"}}}

    def _collect_garbage(self, owner_uid: str) -> None:
        """Delete every object an ownerReference ties to owner_uid, as the garbage collector does."""
        for key, obj in list(self.objects.items()):
            if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences", [])):
                del self.objects[key]

    # --- what the tests read -------------------------------------------------------------------------------------

    def kinds(self, plural: str) -> list[str]:
        """Names of the objects of one resource that exist now."""
        return sorted(name for (_, kind, name) in self.objects if kind == plural)

    def deleted(self, resource: str) -> list[str]:
        """Names of the objects of a resource a DELETE was asked for."""
        return [call.name for call in self.calls if call.verb == "delete" and call.resource == resource]

    def add(self, group: str, plural: str, obj: dict) -> None:
        """Put an object there as if someone had created it (the chart's ConfigMap, the InferenceService)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", self.namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", iso(datetime.now(UTC)))
        self.objects[(group, plural, obj["metadata"]["name"])] = obj
        if plural == "inferenceservices":  # serving for long already: its pod is up
            obj["metadata"].setdefault("generation", 1)
            obj["metadata"].setdefault("resourceVersion", "1")
            self.new_revision(obj)
            self.revisions[obj["metadata"]["name"]][-1].at -= 3600

    def serve(self) -> FakeApiServer:
        """Start the API server on 127.0.0.1 (stop it with `with` or .stop())."""
        return FakeApiServer(self)


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selector `a=b,c=d` against labels."""
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _flag(query: dict[str, list[str]], name: str) -> bool:
    """A boolean query parameter as the API server's strconv.ParseBool reads it."""
    return query.get(name, ["false"])[0].lower() in ("true", "1", "t")


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the simulated cluster."""

    protocol_version = "HTTP/1.1"
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _text(self, text: bytes) -> None:
        """A 200 plain-text answer (a non-follow log read)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def _route(self) -> tuple[str, str, str | None, str | None, dict[str, list[str]]]:
        """(group, resource, name, subresource, query) of the request path."""
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if parts[0] == "api":
            group, rest = "", parts[2:]
        else:
            group, rest = parts[1], parts[3:]
        if rest[:1] == ["namespaces"]:
            rest = rest[2:]
        resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        return group, resource, name, sub, parse_qs(url.query)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _handle(self, method: str) -> None:
        group, resource, name, sub, query = self._route()
        verb = {"GET": "get" if name else ("watch" if _flag(query, "watch") else "list"),
                "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        full = f"{resource}/{sub}" if sub else resource
        cluster = self.cluster
        with cluster.lock:
            cluster.calls.append(Call(method, group, full, verb, name or ""))
            if cluster.rules is not None and not rule_grants(cluster.rules, group, full, verb, name or ""):
                what = f"{resource}.{group}" if group else resource
                named = f' "{name}"' if name else ""
                self._status(403, "Forbidden",
                             f'{what}{named} is forbidden: User "{cluster.user}" cannot {verb} resource "{full}" in '
                             f'API group "{group}" in the namespace "{cluster.namespace}"')
                return
        if full == "pods/log":
            self._pod_log(name or "", query)
            return
        with cluster.lock:
            self._rest(method, group, resource, name, query)

    def _rest(self, method: str, group: str, resource: str, name: str | None, query: dict) -> None:
        cluster = self.cluster
        key = (group, resource, name or "")
        if resource == "pods":
            pods = {pod["metadata"]["name"]: pod for pod in cluster._pods()}
            if name:
                if name not in pods:
                    self._status(404, "NotFound", f'pods "{name}" not found')
                else:
                    self._send(200, pods[name])
                return
            selector = query.get("labelSelector", [""])[0]
            items = [pod for pod in pods.values() if _selector_matches(selector, pod["metadata"]["labels"])]
            self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
            return
        if method == "POST":
            obj = self._body()
            obj["metadata"].update(uid=str(uuid.uuid4()), namespace=cluster.namespace,
                                   creationTimestamp=iso(datetime.now(UTC)), generation=1, resourceVersion="1")
            key = (group, resource, obj["metadata"]["name"])
            if key in cluster.objects:
                self._status(409, "AlreadyExists", f'{resource} "{obj["metadata"]["name"]}" already exists')
                return
            cluster.objects[key] = obj
            cluster.created[obj["metadata"]["name"]] = time.monotonic()
            if resource == "inferenceservices":
                cluster.new_revision(obj)
            self._send(201, obj)
            return
        if name is None:
            selector = query.get("labelSelector", [""])[0]
            items = [self._view(resource, obj) for (g, r, _), obj in sorted(cluster.objects.items())
                     if (g, r) == (group, resource) and _selector_matches(selector, obj["metadata"].get("labels", {}))]
            self._send(200, {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
            return
        if key not in cluster.objects:
            what = f"{resource}.{group}" if group else resource
            self._status(404, "NotFound", f'{what} "{name}" not found')
            return
        if method == "DELETE":
            obj = cluster.objects.pop(key)
            cluster._collect_garbage(obj["metadata"]["uid"])
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
            return
        if method in ("PATCH", "PUT"):
            body = self._body()
            obj = cluster.objects[key]
            wanted = body.get("metadata", {}).get("resourceVersion")
            if (wanted or method == "PUT") and wanted != obj["metadata"].get("resourceVersion"):
                self._status(409, "Conflict", f'Operation cannot be fulfilled on {resource}.{group} "{name}": '
                                              "the object has been modified; please apply your changes to the "
                                              "latest version and try again")
                return
            changed = _merge(obj, body) if method == "PATCH" else {**body, "status": obj.get("status", {})}
            meta = changed["metadata"]
            for kept in ("uid", "creationTimestamp", "namespace"):
                meta[kept] = obj["metadata"][kept]
            meta["resourceVersion"] = str(int(obj["metadata"].get("resourceVersion", "1")) + 1)
            meta["generation"] = obj["metadata"].get("generation", 1) + int(changed.get("spec") != obj.get("spec"))
            cluster.objects[key] = changed
            if resource == "inferenceservices" and meta["generation"] != obj["metadata"].get("generation", 1):
                cluster.new_revision(changed)
            self._send(200, {**changed, "status": {}} if resource == "inferenceservices" else changed)
            return
        self._send(200, self._view(resource, cluster.objects[key]))

    def _view(self, resource: str, obj: dict) -> dict:
        """An object as a GET answers it now: jobs with their conditions, InferenceServices with their readiness."""
        if resource == "pytorchjobs":
            return self.cluster._job_with_status(obj)
        if resource == "inferenceservices":
            return {**obj, "status": self.cluster._isvc_status(obj)}
        return obj

    def _pod_log(self, pod_name: str, query: dict) -> None:
        """The kubelet's log endpoint: 404 without the pod, 400 while its container waits, else the (followed) log."""
        cluster = self.cluster
        with cluster.lock:
            pods = {pod["metadata"]["name"]: pod for pod in cluster._pods()}
            if pod_name not in pods:
                self._status(404, "NotFound", f'pods "{pod_name}" not found')
                return
            if pods[pod_name]["metadata"]["labels"].get("component") == "predictor":
                self._text(b"simplear serve: model loaded from /mnt/models\n")
                return
            state = pods[pod_name]["status"].get("containerStatuses", [{}])[0].get("state", {})
            if not state or "waiting" in state:
                reason = state.get("waiting", {}).get("reason", "PodInitializing")
                self._status(400, "BadRequest",
                             f'container "pytorch" in pod "{pod_name}" is waiting to start: {reason}')
                return
            job = pod_name.removesuffix("-master-0")
        follow = _flag(query, "follow")  # the Python client sends True as "True"; Go's ParseBool accepts both
        timestamps = _flag(query, "timestamps")
        since = float(query["sinceSeconds"][0]) if "sinceSeconds" in query else None
        tail = int(query["tailLines"][0]) if "tailLines" in query else None

        def visible() -> list[tuple[datetime, str]]:
            with cluster.lock:
                lines = cluster._log_lines(job)
            if since is not None:
                lines = [line for line in lines if line[0] >= datetime.now(UTC) - timedelta(seconds=since)]
            return lines

        def render(line: tuple[datetime, str]) -> bytes:
            return ((stamp(line[0]) + " " if timestamps else "") + line[1] + "\n").encode()

        if not follow:
            lines = visible()
            self._text(b"".join(render(line) for line in (lines[-tail:] if tail else lines)))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent, script = 0, cluster.script(job)
        reset = script.reset_stream_after if job not in cluster.resets_done else None
        while True:
            with cluster.lock:
                ended = cluster.script(job).phase(time.monotonic() - cluster.created[job]) == "ended"
                gone = (TRAINING_GROUP, "pytorchjobs", job) not in cluster.objects
            lines = visible()
            for line in lines[sent:]:
                if reset is not None and sent >= reset:
                    cluster.resets_done.add(job)
                    # SO_LINGER 0: close with RST, as a restarting kubelet or API server drops the stream.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                data = render(line)
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                sent += 1
            if ended or gone:
                break
            time.sleep(0.05)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class FakeApiServer:
    """The simulated cluster's API server on 127.0.0.1; a context manager that stops it."""

    def __init__(self, cluster: FakeCluster) -> None:
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self.cluster = cluster
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context is this server and the cluster's namespace."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sim",
            "clusters": [{"name": "sim", "cluster": {"server": self.url}}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "runner",
                                                     "namespace": self.cluster.namespace}}],
            "users": [{"name": "runner", "user": {"token": "sim-token"}}],
        }))
        return path

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
