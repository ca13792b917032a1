{{/* Chart name, truncated to 63 characters. */}}
{{- define "postern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless the release name contains it. */}}
{{- define "postern.fullname" -}}
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

{{- define "postern.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "postern.labels" -}}
helm.sh/chart: {{ include "postern.chart" . }}
{{ include "postern.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: postern
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels the Deployment selects its pods by. */}}
{{- define "postern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "postern.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "postern.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from a dict with repository, tag, digest and the chart root:
repository@digest, else repository:tag (tag defaults to appVersion); with
.Values.imageRegistry the repository's own registry (a first path segment with a
dot or colon) is replaced by it.
*/}}
{{- define "postern.imageRef" -}}
{{- $repo := .image.repository }}
{{- with .root.Values.imageRegistry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) (regexReplaceAll "^[^/]*[.:][^/]*/" $repo "") }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The operator image. */}}
{{- define "postern.image" -}}
{{- include "postern.imageRef" (dict "image" .Values.image "root" .) }}
{{- end }}

{{/* The default listener image, handed to the operator. */}}
{{- define "postern.listenerImage" -}}
{{- include "postern.imageRef" (dict "image" .Values.listener.image "root" .) }}
{{- end }}

{{/*
The rules the operator needs where it watches EsmtpListeners, derived from
operator/src (controller.rs, apply.rs, leader.rs, kube-runtime's event Recorder).
docs/chart.md says why each is there; e2e/tests/chart.rs runs the operator with
a token of this ServiceAccount, so a missing verb fails a test.
*/}}
{{- define "postern.rules" -}}
# The operator's own resources: watched (list+watch), status written with a merge patch.
- apiGroups: ["postern.io"]
  resources: ["esmtplisteners"]
  verbs: ["list", "watch"]
- apiGroups: ["postern.io"]
  resources: ["esmtplisteners/status"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion owner references; with the
# OwnerReferencesPermissionEnforcement admission plugin that needs this.
- apiGroups: ["postern.io"]
  resources: ["esmtplisteners/finalizers"]
  verbs: ["update"]
# What it creates: cached (list+watch), looked up by name before the first apply so an
# object it does not own is never adopted (get), server-side applied (create+patch),
# and deleted: replicas on scale-down, ConfigMaps of finished rollouts.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# TLS and Vault-token Secrets: read-only and watched as metadata only (whether they
# exist; no value is ever read).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
# Listener pods: watched (crash loops, pull errors); on scale-down a surplus pod is
# labelled out of the Service (patch) before it drains, and a drained pod whose
# ordinal is wanted again is restarted (delete).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch", "delete"]
# Events about EsmtpListeners (events.k8s.io/v1; patch updates a repeated event's series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
