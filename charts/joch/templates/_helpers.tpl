{{/*
Names, labels and derived settings shared by the templates. Values are documented in values.yaml and
README.md (both generated from joch.manifests.chart.Values).
*/}}

{{- define "joch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joch.fullname" -}}
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

{{/* Cluster-scoped objects carry the release namespace too: several namespace-scoped installs coexist. */}}
{{- define "joch.clusterName" -}}
{{- printf "%s-%s" (include "joch.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "joch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "joch.labels" -}}
helm.sh/chart: {{ include "joch.chart" . }}
{{ include "joch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: joch
{{- end }}

{{- define "joch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "joch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "joch.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "joch.leaseName" -}}
{{- printf "%s-leader" (include "joch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joch.webhookServiceName" -}}
{{- printf "%s-webhook" (include "joch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joch.apiServiceName" -}}
{{- printf "%s-api" (include "joch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Whether the /v1 API is served: api.enabled, and the webhooks' certificate to serve it with. */}}
{{- define "joch.apiServed" -}}
{{- if and .Values.api.enabled .Values.webhook.enabled }}true{{ end }}
{{- end }}

{{- define "joch.grpcServiceName" -}}
{{- printf "%s-grpc" (include "joch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Whether gRPC is served: grpc.enabled, and the webhooks' certificate to serve it with. */}}
{{- define "joch.grpcServed" -}}
{{- if and .Values.grpc.enabled .Values.webhook.enabled }}true{{ end }}
{{- end }}

{{/* Whether the operator reviews callers' tokens (TokenReview, cluster-scoped): gRPC always does, the
decision endpoint with decisions.callers. */}}
{{- define "joch.tokenReviews" -}}
{{- if or (include "joch.grpcServed" .) (and .Values.decisions.enabled .Values.decisions.callers) }}true{{ end }}
{{- end }}

{{- define "joch.metricsServiceName" -}}
{{- printf "%s-metrics" (include "joch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joch.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "joch.fullname" .)) .Values.webhook.tls.secretName }}
{{- end }}

{{/* The name of both the ValidatingWebhookConfiguration and the MutatingWebhookConfiguration. */}}
{{- define "joch.webhookConfigurationName" -}}
{{- include "joch.clusterName" . }}
{{- end }}

{{/* operator | certManager | helm: "auto" is operator in cluster scope, helm in namespace scope. */}}
{{- define "joch.webhookTLSMode" -}}
{{- if eq .Values.webhook.tls.mode "auto" }}
{{- if eq .Values.rbac.scope "cluster" }}operator{{ else }}helm{{ end }}
{{- else }}
{{- .Values.webhook.tls.mode }}
{{- end }}
{{- end }}

{{/* The namespaces the operator manages, one per line (empty: all). */}}
{{- define "joch.managedNamespaces" -}}
{{- if eq .Values.rbac.scope "namespace" }}
{{- range (uniq .Values.rbac.namespaces) }}
{{ . }}
{{- end }}
{{- else }}
{{- range (uniq .Values.operator.namespaces) }}
{{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The DNS names of the webhook Service, then of the API and gRPC Services when they are served (the
serving certificate's SANs). */}}
{{- define "joch.webhookDNSNames" -}}
{{- $ns := .Release.Namespace }}
{{- $services := list (include "joch.webhookServiceName" .) }}
{{- if include "joch.apiServed" . }}
{{- $services = append $services (include "joch.apiServiceName" .) }}
{{- end }}
{{- if include "joch.grpcServed" . }}
{{- $services = append $services (include "joch.grpcServiceName" .) }}
{{- end }}
{{- range $svc := $services }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}
{{- end }}

{{/* Checks that the schema cannot express; each fails the render with a sentence saying what to change. */}}
{{- define "joch.validate" -}}
{{- $mode := include "joch.webhookTLSMode" . }}
{{- if and (eq .Values.rbac.scope "namespace") (empty .Values.rbac.namespaces) }}
{{- fail "rbac.scope=namespace needs rbac.namespaces: the namespaces the operator manages (at least one)" }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.rbac.scope "namespace") (eq $mode "operator") }}
{{- fail "webhook.tls.mode=operator needs rbac.scope=cluster (it patches the cluster-scoped webhook configurations); use helm or certManager, or leave it auto" }}
{{- end }}
{{- if and (gt (int .Values.leaderElection.renewDeadlineSeconds) (int .Values.leaderElection.leaseDurationSeconds)) }}
{{- fail "leaderElection.renewDeadlineSeconds must not exceed leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.rbac.scope "cluster") (has .Release.Namespace .Values.operator.sharedNamespaces) }}
{{- fail (printf "the release namespace %s is exempt from admission, so it cannot also be a shared namespace (operator.sharedNamespaces=%s): list another namespace there (the default is joch-shared) or install into another namespace" .Release.Namespace (join "," .Values.operator.sharedNamespaces)) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would reconcile" }}
{{- end }}
{{- end }}
