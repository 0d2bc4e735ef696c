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
The API groups and resources each router family reads and server-side applies (nothing for routers not in
use). Keys are families, values are lists of [group, resources...].
*/}}
{{- define "flagger-rs.routerGrants" -}}
istio: [[networking.istio.io, virtualservices, destinationrules]]
linkerd: [[split.smi-spec.io, trafficsplits]]
smi: [[split.smi-spec.io, trafficsplits]]
osm: [[split.smi-spec.io, trafficsplits]]
kuma: [[kuma.io, trafficroutes]]
appmesh: [[appmesh.k8s.aws, virtualnodes, virtualrouters, virtualservices]]
gatewayapi: [[gateway.networking.k8s.io, httproutes]]
nginx: [[networking.k8s.io, ingresses]]
skipper: [[networking.k8s.io, ingresses]]
traefik: [[traefik.io, traefikservices]]
contour: [[projectcontour.io, httpproxies]]
gloo: [[gloo.solo.io, upstreams], [gateway.solo.io, routetables]]
apisix: [[apisix.apache.org, apisixroutes]]
knative: [[serving.knative.dev, services, revisions]]
kubernetes: []
{{- end -}}

{{/* ClusterRole rules for the routers of meshProvider and rbac.extraProviders, one rule per API group. */}}
{{- define "flagger-rs.routerRules" -}}
{{- $grants := include "flagger-rs.routerGrants" . | fromYaml -}}
{{- $groups := dict -}}
{{- range $provider := prepend (default (list) .Values.rbac.extraProviders) .Values.meshProvider -}}
{{- range $grant := get $grants (include "flagger-rs.routerFamily" $provider) -}}
{{- $group := first $grant -}}
{{- $_ := set $groups $group (concat (get $groups $group | default (list)) (rest $grant) | uniq) -}}
{{- end -}}
{{- end -}}
{{- range $group := keys $groups | sortAlpha }}
- apiGroups: [{{ $group | quote }}]
  resources: [{{ get $groups $group | sortAlpha | join ", " }}]
  verbs: [get, list, watch, create, update, patch]
{{- end -}}
{{- end -}}
