//! Test fixtures: Flagger's podinfo example as the API server returns it (defaults filled in),
//! so the adapters are exercised against realistic objects.

use flagger_api::Canary;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use serde_json::{Value, json};

pub const CANARY_UID: &str = "5c3a4b1e-0d9c-4a2f-9d7e-2b1f6a8c9e01";
pub const FLAGGER_ID: &str = "7f3e2a10-5b4c-4d8e-9f01-a2b3c4d5e6f7";

pub fn canary_json() -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": CANARY_UID},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 80, "targetPort": 9898, "portDiscovery": true},
            "analysis": {"interval": "15s", "threshold": 5, "iterations": 10}
        }
    })
}

pub fn canary() -> Canary {
    serde_json::from_value(canary_json()).unwrap()
}

/// The canary with `patch` merged into its `spec` (one level deep per key).
pub fn canary_with(spec_patch: Value) -> Canary {
    let mut v = canary_json();
    merge(&mut v["spec"], spec_patch);
    serde_json::from_value(v).unwrap()
}

pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

pub fn pod_template_json() -> Value {
    json!({
        "metadata": {
            "labels": {"app": "podinfo", "version": "6.0.0"},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9797",
                "kustomize.toolkit.fluxcd.io/checksum": "abc"
            }
        },
        "spec": {
            "containers": [{
                "name": "podinfod",
                "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["./podinfo", "--port=9898", "--port-metrics=9797", "--grpc-port=9999"],
                "ports": [
                    {"name": "http", "containerPort": 9898, "protocol": "TCP"},
                    {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"},
                    {"name": "grpc", "containerPort": 9999, "protocol": "TCP"}
                ],
                "env": [
                    {"name": "PODINFO_UI_COLOR", "valueFrom": {"configMapKeyRef": {"name": "podinfo-config-env", "key": "color"}}},
                    {"name": "PODINFO_TOKEN", "valueFrom": {"secretKeyRef": {"name": "podinfo-secret-env", "key": "token"}}},
                    {"name": "PODINFO_LEVEL", "value": "info"}
                ],
                "envFrom": [
                    {"configMapRef": {"name": "podinfo-config-all"}},
                    {"secretRef": {"name": "podinfo-secret-all", "optional": true}}
                ],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/podinfo/config", "readOnly": true},
                    {"name": "secret", "mountPath": "/etc/podinfo/secret", "readOnly": true}
                ],
                "resources": {"limits": {"cpu": "2", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "initContainers": [{
                "name": "init",
                "image": "busybox:1.36",
                "envFrom": [{"configMapRef": {"name": "podinfo-config-init"}}]
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "podinfo-config-vol", "defaultMode": 420}},
                {"name": "secret", "secret": {"secretName": "podinfo-secret-vol", "defaultMode": 420}},
                {"name": "projected", "projected": {"sources": [
                    {"configMap": {"name": "podinfo-config-proj"}},
                    {"secret": {"name": "podinfo-secret-proj"}},
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
                ]}}
            ],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["podinfo"]}]}
                }
            }]}},
            "topologySpreadConstraints": [{
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "podinfo"}}
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "securityContext": {}
        }
    })
}

pub fn deployment_json() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "uid": "0b8f7a7e-1111-4222-8333-944455556666",
            "resourceVersion": "4242",
            "generation": 3,
            "labels": {
                "app": "podinfo",
                "app.kubernetes.io/part-of": "demo",
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "team": "web"
            },
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "kustomize.toolkit.fluxcd.io/reconcile": "enabled",
                "owner": "web-team"
            }
        },
        "spec": {
            "replicas": 2,
            "minReadySeconds": 3,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 60,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": pod_template_json()
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2
        }
    })
}

pub fn deployment() -> Deployment {
    serde_json::from_value(deployment_json()).unwrap()
}

pub fn deployment_with(patch: Value) -> Deployment {
    let mut v = deployment_json();
    merge(&mut v, patch);
    serde_json::from_value(v).unwrap()
}

pub fn daemonset_json() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "generation": 2,
            "labels": {"app": "podinfo"},
            "annotations": {"deprecated.daemonset.template.generation": "2"}
        },
        "spec": {
            "minReadySeconds": 3,
            "revisionHistoryLimit": 10,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": pod_template_json()
        },
        "status": {
            "observedGeneration": 2,
            "currentNumberScheduled": 3,
            "desiredNumberScheduled": 3,
            "numberMisscheduled": 0,
            "numberReady": 3,
            "numberAvailable": 3,
            "updatedNumberScheduled": 3
        }
    })
}

pub fn daemonset() -> DaemonSet {
    serde_json::from_value(daemonset_json()).unwrap()
}

pub fn daemonset_with(patch: Value) -> DaemonSet {
    let mut v = daemonset_json();
    merge(&mut v, patch);
    serde_json::from_value(v).unwrap()
}

pub fn configmap(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "test", "labels": {"app": "podinfo"}},
        "data": data
    }))
    .unwrap()
}

/// `data` values are given base64-encoded, as the API server sends them.
pub fn secret(name: &str, type_: &str, data: Value) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "test"},
        "type": type_,
        "data": data
    }))
    .unwrap()
}

pub fn hpa() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": {"app": "podinfo", "helm.toolkit.fluxcd.io/name": "podinfo"},
            "annotations": {"note": "scale on cpu"}
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
        }
    }))
    .unwrap()
}

pub fn service(v: Value) -> Service {
    serde_json::from_value(v).unwrap()
}
