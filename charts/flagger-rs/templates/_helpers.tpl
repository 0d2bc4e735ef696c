{{/* The chart's name. */}}
{{- define "flagger-rs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Object names: a release whose name already says "flagger" (`flagger`, `flagger-rs`) names its objects after
itself, like Flagger's chart does for the release `flagger`; any other release gets `<release>-<chart>`.
*/}}
{{- define "flagger-rs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "flagger" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "flagger-rs.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flagger-rs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flagger-rs.labels" -}}
helm.sh/chart: {{ include "flagger-rs.chart" . }}
app.kubernetes.io/name: {{ include "flagger-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "flagger-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flagger-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flagger-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flagger-rs.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flagger-rs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{/* The multi-cluster mesh kubeconfig: controlplane.kubeconfig, or Flagger's older istio.kubeconfig. */}}
{{- define "flagger-rs.meshKubeconfig" -}}
{{- if .Values.controlplane.kubeconfig.secretName -}}
{{- toJson .Values.controlplane.kubeconfig -}}
{{- else if (((.Values.istio).kubeconfig).secretName) -}}
{{- toJson .Values.istio.kubeconfig -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/*
The router family of a provider value: `gatewayapi:v1beta1` -> gatewayapi, `smi:v1alpha3:istio` -> smi, empty ->
istio (the controller's default provider, as in Flagger). An unknown provider fails the render: the ClusterRole
could not grant what its router needs.
*/}}
{{- define "flagger-rs.routerFamily" -}}
{{- $family := regexReplaceAll ":.*$" (default "istio" (toString .)) "" -}}
{{- $known := list "kubernetes" "istio" "linkerd" "smi" "osm" "kuma" "appmesh" "gatewayapi" "nginx" "skipper" "traefik" "contour" "gloo" "apisix" "knative" -}}
{{- if not (has $family $known) -}}
{{- fail (printf "meshProvider %q is not a provider flagger-rs knows (one of: %s)" (toString .) (join ", " $known)) -}}
{{- end -}}
{{- $family -}}
{{- end -}}

{{/*
The ClusterRole's rules: those of rbac.yaml (next to Chart.yaml, where each grant says why) that these values
need: core, keda with rbac.keda, and the routers of meshProvider and rbac.extraProviders, each rule once.
*/}}
{{- define "flagger-rs.rules" -}}
{{- $rbac := .Files.Get "rbac.yaml" | fromYaml -}}
{{- $rules := $rbac.core -}}
{{- if .Values.rbac.keda -}}
{{- $rules = concat $rules $rbac.keda -}}
{{- end -}}
{{- range $type := default (list) .Values.rbac.metricProviders -}}
{{- $rules = concat $rules (get $rbac.metricProviders $type | default (list)) -}}
{{- end -}}
{{- range $provider := prepend (default (list) .Values.rbac.extraProviders) .Values.meshProvider -}}
{{- $rules = concat $rules (get $rbac.routers (include "flagger-rs.routerFamily" $provider)) -}}
{{- end -}}
{{- $seen := list -}}
{{- range $rule := $rules -}}
{{- $r := pick $rule "apiGroups" "resources" "verbs" -}}
{{- if not (has $r $seen) -}}
{{- $seen = append $seen $r }}
- apiGroups: {{ $r.apiGroups | toJson }}
  resources: {{ $r.resources | toJson }}
  verbs: {{ $r.verbs | toJson }}
{{- end -}}
{{- end -}}
{{- end -}}
