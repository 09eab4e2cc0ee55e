"""Route 53 Application Recovery Controller in the sandbox (moto has none of it): the
configuration API (`route53-recovery-control-config`, REST-JSON: clusters, control panels,
routing controls, assertion safety rules) and the cluster API (`route53-recovery-cluster`, JSON
1.0: get, update and list routing control states, safety rules enforced).

Served by the moto server: `moto_extensions` hands every request whose SigV4 scope names one of
the two services to `ArcWorld.wsgi`, so requests pass the AWS fault proxy like any other. A
cluster's five endpoints are that proxy's URL; a client signs for the endpoint's region, so a
region fault fails that endpoint only, as the loss of one regional cluster endpoint would.

Simplifications: every resource is DEPLOYED at once; gating rules, tags, resource policies,
pagination tokens and `WaitPeriodMs` are not simulated; a change is refused with
ConflictException when an assertion rule would not hold after it (ARC's answer too).
"""
from __future__ import annotations

import json
import threading
import uuid
from typing import Callable, Iterable
from urllib.parse import parse_qs, unquote

CONTROL_CONFIG = "route53-recovery-control-config"
CLUSTER = "route53-recovery-cluster"
SERVICES = (CONTROL_CONFIG, CLUSTER)
CLUSTER_ENDPOINT_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-2")
"""The five regions of an ARC cluster's endpoints."""


class ArcError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _not_found(kind: str, arn: str) -> ArcError:
    return ArcError(404, "ResourceNotFoundException", f"{kind} {arn} not found")


class ArcWorld:
    """The ARC resources and routing control states of the sandbox (one account)."""

    def __init__(self, account_id: str):
        self.account_id = account_id
        self.endpoint_url = ""
        """What each cluster endpoint names: the sandbox's AWS fault proxy (set by the seeding)."""
        self._lock = threading.Lock()
        self.clusters: dict[str, dict] = {}
        self.panels: dict[str, dict] = {}
        self.controls: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.states: dict[str, str] = {}
        self._listeners: list[Callable[[], None]] = []

    def clear(self) -> None:
        with self._lock:
            for table in (self.clusters, self.panels, self.controls, self.rules, self.states):
                table.clear()

    def on_change(self, callback: Callable[[], None]) -> None:
        """`callback()` after routing control states change (health checks follow them)."""
        self._listeners.append(callback)

    def state(self, control_arn: str) -> str | None:
        """ON, OFF, or None for an unknown control: what a RECOVERY_CONTROL health check reads."""
        return self.states.get(control_arn)

    # -- the configuration API -------------------------------------------------------------
    def _arn(self, kind: str) -> str:
        return f"arn:aws:route53-recovery-control::{self.account_id}:{kind}/{uuid.uuid4().hex}"

    def create_cluster(self, name: str, network_type: str = "IPV4") -> dict:
        with self._lock:
            arn = self._arn("cluster")
            self.clusters[arn] = {
                "ClusterArn": arn, "Name": name, "Status": "DEPLOYED", "Owner": self.account_id,
                "NetworkType": network_type,
                "ClusterEndpoints": [{"Endpoint": self.endpoint_url, "Region": r} for r in CLUSTER_ENDPOINT_REGIONS]}
            return self.clusters[arn]

    def create_control_panel(self, cluster_arn: str, name: str) -> dict:
        with self._lock:
            if cluster_arn not in self.clusters:
                raise _not_found("cluster", cluster_arn)
            arn = f"{self._arn('controlpanel')}"
            self.panels[arn] = {"ClusterArn": cluster_arn, "ControlPanelArn": arn, "DefaultControlPanel": False,
                                "Name": name, "RoutingControlCount": 0, "Status": "DEPLOYED",
                                "Owner": self.account_id}
            return self.panels[arn]

    def create_routing_control(self, cluster_arn: str, panel_arn: str, name: str) -> dict:
        with self._lock:
            if cluster_arn not in self.clusters:
                raise _not_found("cluster", cluster_arn)
            panel = self.panels.get(panel_arn)
            if panel is None or panel["ClusterArn"] != cluster_arn:
                raise _not_found("control panel", panel_arn)
            arn = f"{panel_arn}/routingcontrol/{uuid.uuid4().hex[:16]}"
            self.controls[arn] = {"ControlPanelArn": panel_arn, "Name": name, "RoutingControlArn": arn,
                                  "Status": "DEPLOYED", "Owner": self.account_id}
            self.states[arn] = "OFF"  # ARC creates a routing control OFF
            panel["RoutingControlCount"] += 1
            return self.controls[arn]

    def create_assertion_rule(self, rule: dict) -> dict:
        with self._lock:
            panel = rule.get("ControlPanelArn", "")
            if panel not in self.panels:
                raise _not_found("control panel", panel)
            asserted = list(rule.get("AssertedControls") or [])
            unknown = [a for a in asserted if self.controls.get(a, {}).get("ControlPanelArn") != panel]
            if not asserted or unknown:
                raise ArcError(400, "ValidationException",
                               f"asserted controls must be routing controls of {panel}: {unknown or 'none given'}")
            config = rule.get("RuleConfig") or {}
            if config.get("Type") not in ("ATLEAST", "AND", "OR") or not isinstance(config.get("Threshold"), int):
                raise ArcError(400, "ValidationException", f"RuleConfig {config} needs Type ATLEAST, AND or OR and "
                                                           "an integer Threshold")
            arn = f"{panel}/safetyrule/{uuid.uuid4().hex[:16]}"
            self.rules[arn] = {"SafetyRuleArn": arn, "ControlPanelArn": panel, "Name": rule.get("Name", ""),
                               "AssertedControls": asserted, "RuleConfig": config,
                               "WaitPeriodMs": int(rule.get("WaitPeriodMs") or 0), "Status": "DEPLOYED",
                               "Owner": self.account_id}
            return self.rules[arn]

    # -- the cluster API (data plane) ------------------------------------------------------
    def routing_control_view(self, arn: str) -> dict:
        control = self.controls[arn]
        panel = self.panels[control["ControlPanelArn"]]
        return {"ControlPanelArn": panel["ControlPanelArn"], "ControlPanelName": panel["Name"],
                "RoutingControlArn": arn, "RoutingControlName": control["Name"],
                "RoutingControlState": self.states[arn], "Owner": self.account_id}

    def update_states(self, entries: Iterable[dict], overrides: Iterable[str] = ()) -> None:
        """Apply every entry at once, or none: refused when an assertion rule not overridden would
        fail on the resulting states."""
        with self._lock:
            changes = {}
            for entry in entries:
                arn, state = entry.get("RoutingControlArn", ""), entry.get("RoutingControlState")
                if arn not in self.controls:
                    raise _not_found("routing control", arn)
                if state not in ("On", "Off", "ON", "OFF"):
                    raise ArcError(400, "ValidationException", f"RoutingControlState {state!r} is not On or Off")
                changes[arn] = state.upper()
            after = {**self.states, **changes}
            skipped = set(overrides)
            for rule in self.rules.values():
                if rule["SafetyRuleArn"] in skipped or not any(a in changes for a in rule["AssertedControls"]):
                    continue
                on = sum(after[a] == "ON" for a in rule["AssertedControls"])
                config = rule["RuleConfig"]
                need = {"ATLEAST": int(config["Threshold"]), "AND": len(rule["AssertedControls"]), "OR": 1}[
                    config["Type"]]
                holds = on >= need
                if config.get("Inverted"):
                    holds = not holds
                if not holds:
                    raise ArcError(409, "ConflictException",
                                   f"the change would violate safety rule {rule['Name']} ({rule['SafetyRuleArn']}): "
                                   f"{on} of {len(rule['AssertedControls'])} asserted controls ON, "
                                   f"{config['Type']} {config['Threshold']} required")
            self.states.update(changes)
        for listener in self._listeners:
            listener()

    # -- HTTP ------------------------------------------------------------------------------
    def wsgi(self, service: str, environ: dict, start_response) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            if service == CLUSTER:
                target = (environ.get("HTTP_X_AMZ_TARGET") or "").rsplit(".", 1)[-1]
                status, document = 200, self._cluster_api(target, body)
            else:
                query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
                # The raw path: an ARN in it is percent-encoded, '/' included.
                raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
                status, document = 200, self._config_api(environ["REQUEST_METHOD"], raw_path.split("?", 1)[0],
                                                         query, body)
        except ArcError as exc:
            return _error(service, start_response, exc)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(service, start_response, ArcError(400, "ValidationException", f"bad request: {exc}"))
        payload = json.dumps(document).encode()
        start_response(f"{status} OK", [("Content-Type", _content_type(service)),
                                        ("Content-Length", str(len(payload)))])
        return [payload]

    def _cluster_api(self, action: str, body: dict) -> dict:
        if action == "GetRoutingControlState":
            arn = body.get("RoutingControlArn", "")
            if arn not in self.controls:
                raise _not_found("routing control", arn)
            view = self.routing_control_view(arn)
            return {k: view[k] for k in ("RoutingControlArn", "RoutingControlState", "RoutingControlName")}
        if action == "UpdateRoutingControlState":
            self.update_states([body], body.get("SafetyRulesToOverride") or [])
            return {}
        if action == "UpdateRoutingControlStates":
            self.update_states(body.get("UpdateRoutingControlStateEntries") or [],
                               body.get("SafetyRulesToOverride") or [])
            return {}
        if action == "ListRoutingControls":
            panel = body.get("ControlPanelArn")
            return {"RoutingControls": [self.routing_control_view(arn) for arn, c in self.controls.items()
                                        if panel in (None, c["ControlPanelArn"])]}
        raise ArcError(400, "UnknownOperationException", f"{action} is not simulated by the sandbox")

    def _config_api(self, method: str, path: str, query: dict, body: dict) -> dict:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        if (method, parts) == ("POST", ["cluster"]):
            return {"Cluster": self.create_cluster(body["ClusterName"], body.get("NetworkType", "IPV4"))}
        if (method, parts) == ("GET", ["cluster"]):
            return {"Clusters": list(self.clusters.values())}
        if method == "GET" and len(parts) == 2 and parts[0] == "cluster":
            cluster = self.clusters.get(parts[1])
            if cluster is None:
                raise _not_found("cluster", parts[1])
            return {"Cluster": cluster}
        if (method, parts) == ("POST", ["controlpanel"]):
            return {"ControlPanel": self.create_control_panel(body["ClusterArn"], body["ControlPanelName"])}
        if (method, parts) == ("GET", ["controlpanels"]):
            cluster = query.get("ClusterArn")
            return {"ControlPanels": [p for p in self.panels.values() if cluster in (None, p["ClusterArn"])]}
        if (method, parts) == ("POST", ["routingcontrol"]):
            return {"RoutingControl": self.create_routing_control(body["ClusterArn"], body.get("ControlPanelArn", ""),
                                                                  body["RoutingControlName"])}
        if method == "GET" and len(parts) == 3 and parts[0] == "controlpanel" and parts[2] == "routingcontrols":
            if parts[1] not in self.panels:
                raise _not_found("control panel", parts[1])
            return {"RoutingControls": [c for c in self.controls.values() if c["ControlPanelArn"] == parts[1]]}
        if (method, parts) == ("POST", ["safetyrule"]):
            if "AssertionRule" not in body:
                raise ArcError(400, "ValidationException", "the sandbox simulates assertion rules only")
            return {"AssertionRule": self.create_assertion_rule(body["AssertionRule"])}
        if method == "GET" and len(parts) == 3 and parts[0] == "controlpanel" and parts[2] == "safetyrules":
            return {"SafetyRules": [{"ASSERTION": r} for r in self.rules.values() if r["ControlPanelArn"] == parts[1]]}
        raise ArcError(404, "UnknownOperationException", f"{method} {path} is not simulated by the sandbox")


def _error(service: str, start_response, exc: ArcError) -> list[bytes]:
    payload = json.dumps({"__type": exc.code, "message": exc.message}).encode()
    start_response(f"{exc.status} Error", [("Content-Type", _content_type(service)),
                                           ("x-amzn-ErrorType", exc.code), ("Content-Length", str(len(payload)))])
    return [payload]


def _content_type(service: str) -> str:
    return "application/x-amz-json-1.0" if service == CLUSTER else "application/json"
