{{/* Names and labels shared by every template. */}}

{{- define "lepton-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; objects of two releases in one cluster never collide. */}}
{{- define "lepton-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lepton-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "lepton-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lepton-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lepton-operator.labels" -}}
helm.sh/chart: {{ include "lepton-operator.chart" . }}
{{ include "lepton-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: lepton
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lepton-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lepton-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lepton-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "lepton-operator.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtime.image.repository (default .Chart.AppVersion .Values.runtime.image.tag) }}
{{- end }}

{{/*
Permissions in the namespaces the operator watches: exactly the API calls it makes
(operator/lepton_operator/k8s.py and handlers/) plus Kopf's own. tests/helm_chart.py holds the
same list as a table, and tests/test_chart.py checks the rendered roles against it.
*/}}
{{- define "lepton-operator.namespacedRules" -}}
# Kopf lists and watches Lepton's resources and patches its progress annotations and the
# lepton.ai/finalizer onto them; handlers get a fresh copy before computing status.
- apiGroups: [lepton.ai]
  resources: [leptontrainingjobs, leptoncompressions, leptonendpoints, leptonsearches]
  verbs: [get, list, watch, patch]
# Status goes through the status subresource as a merge patch; nothing ever sends an update.
- apiGroups: [lepton.ai]
  resources: [leptontrainingjobs/status, leptoncompressions/status, leptonendpoints/status, leptonsearches/status]
  verbs: [get, patch]
# A search's trials are LeptonTrainingJobs it creates (a POST: an existing trial is never
# overwritten).
- apiGroups: [lepton.ai]
  resources: [leptontrainingjobs]
  verbs: [create]
# Children are written with server-side apply (a patch; the API server also checks `create`
# when the patch creates the object), read back for status, and deleted when the spec no longer
# asks for them (an HPA or PDB). PyTorchJobs and Deployments are also watched: their changes
# update the owner's status. No `update`: apply never sends a PUT.
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# A finished job's master pod carries the runtime's summary in its termination message; the
# pods of Lepton's children are watched for what keeps them from starting (a missing Secret,
# an image that cannot be pulled), which is how the operator reports those without reading
# Secrets: it has no access to Secrets at all.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Jobs with scheduling.queueName: Kueue's Workloads say why they wait or which queues
# admitted them (read only; without Kueue's CRDs nothing is watched).
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list, watch]
# pvc:// URIs: the operator checks that the claim exists before creating pods that would hang.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# Kopf posts Events (core v1, always new objects) for phase changes and handler errors. The
# operator watches the controllers' pod-creation Events: a pod the API server refuses (a Pod
# Security level, a ResourceQuota) never exists, and only that Event says why.
- apiGroups: [""]
  resources: [events]
  verbs: [list, watch, create]
{{- end }}

{{/* Cluster-scoped permissions Kopf needs in every mode, and in namespaced mode. */}}
{{- define "lepton-operator.clusterRules" -}}
# Kopf lists CRDs, then watches them, to notice resources that appear or go after start-up.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# GPU admission: the inventory is every node's allocatable GPUs minus what bound pods of any
# owner (in any namespace) request, so nodes and pods are read cluster-wide: listed once, then
# watched (the queue's view). Read-only; without it admission is off and the operator logs so.
# A job's priority is the value of its PriorityClass, read by name.
- apiGroups: [""]
  resources: [nodes, pods]
  verbs: [list, watch]
- apiGroups: [scheduling.k8s.io]
  resources: [priorityclasses]
  verbs: [get]
{{- if .Values.watchNamespaces }}
# With a namespace list, Kopf lists and watches namespaces to start and stop its per-namespace
# watches as they come and go; cluster-wide it watches across all namespaces and needs no list.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}

{{/*
Does the cluster serve prometheus-operator's ServiceMonitor? `helm install` sees both the
group/version and group/version/Kind forms; Argo CD passes group/versions only.
*/}}
{{- define "lepton-operator.hasServiceMonitor" -}}
{{- if or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
true
{{- end }}
{{- end }}

{{/* The same question for prometheus-operator's PrometheusRule. */}}
{{- define "lepton-operator.hasPrometheusRule" -}}
{{- if or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
true
{{- end }}
{{- end }}
