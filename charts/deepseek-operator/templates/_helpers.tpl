{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "deepseek-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "deepseek-operator.fullname" -}}
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

{{- define "deepseek-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "deepseek-operator.labels" -}}
helm.sh/chart: {{ include "deepseek-operator.chart" . }}
{{ include "deepseek-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "deepseek-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deepseek-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "deepseek-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deepseek-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "deepseek-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The operator's config file (see operator/src/config.rs). */}}
{{- define "deepseek-operator.config" -}}
declaredPools:
  {{- toYaml .Values.config.declaredPools | nindent 2 }}
images:
  {{- toYaml .Values.config.images | nindent 2 }}
{{- with .Values.config.cacheHostPath }}
cacheHostPath: {{ . | quote }}
{{- end }}
caches:
  {{- toYaml .Values.config.caches | nindent 2 }}
{{- with .Values.config.prometheusAddress }}
prometheusAddress: {{ . | quote }}
{{- end }}
podSizing:
  {{- toYaml .Values.config.podSizing | nindent 2 }}
amdRenderGroups:
  {{- toYaml .Values.config.amdRenderGroups | nindent 2 }}
allowRootHostPathCache: {{ .Values.config.allowRootHostPathCache }}
allowCustomPrometheusQueries: {{ .Values.config.allowCustomPrometheusQueries }}
unreachableNodeTimeoutSeconds: {{ .Values.config.unreachableNodeTimeoutSeconds | int64 }}
rankNotReadyTimeoutSeconds: {{ .Values.config.rankNotReadyTimeoutSeconds | int64 }}
capacityPendingTimeoutSeconds: {{ .Values.config.capacityPendingTimeoutSeconds | int64 }}
capacityRetrySeconds: {{ .Values.config.capacityRetrySeconds | int64 }}
drainSeconds: {{ .Values.config.drainSeconds | int64 }}
{{- with .Values.config.runtimeImageTag }}
runtimeImageTag: {{ . | quote }}
{{- end }}
{{- if .Values.config.catalog.models }}
catalogModelsFile: /etc/deepseek-operator/catalog-models.yaml
{{- end }}
{{- if .Values.config.catalog.accelerators }}
catalogAcceleratorsFile: /etc/deepseek-operator/catalog-accelerators.yaml
{{- end }}
networkPolicy:
  enabled: {{ .Values.networkPolicy.models.enabled }}
  operatorNamespace: {{ .Release.Namespace | quote }}
  allowFromNamespaces:
    {{- toYaml .Values.networkPolicy.models.allowFromNamespaces | nindent 4 }}
{{- with .Values.config.crashLoopBackoff }}
crashLoopBackoff:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.config.helperPods }}
helperPods:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Rules for models and their children: in the ClusterRole, or in a Role per watched
namespace (watchNamespaces). */}}
{{- define "deepseek-operator.modelRules" -}}
# The controller watches models; the autoscaler patches their replicas. A disaggregated
# model's role models are read and server-side applied (create + patch).
- apiGroups: ["inference.deepseek-operator.dev"]
  resources: ["deepseekmodels"]
  verbs: ["list", "watch", "get", "create", "patch"]
- apiGroups: ["inference.deepseek-operator.dev"]
  resources: ["deepseekmodels/status", "deepseekmodels/scale"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion owner references; with the
# OwnerReferencesPermissionEnforcement admission plugin that needs update on finalizers.
- apiGroups: ["inference.deepseek-operator.dev"]
  resources: ["deepseekmodels/finalizers"]
  verbs: ["update"]
# Replica-group pods and model Services: server-side apply (create + patch), delete.
- apiGroups: [""]
  resources: ["pods", "services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# A disaggregated model's router: its Service (read before applying), its ServiceAccount,
# a Role letting it list and watch pods in its namespace (its service discovery; the
# operator can grant only what it holds, above) and the RoleBinding, read and
# server-side applied; the Deployment is also watched for its readiness. Removed by
# garbage collection with the model (owner references), so no delete.
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Events about models (kube-runtime Recorder, events.k8s.io/v1).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Karpenter's FailedScheduling Event on a rank of a partly placed group (core/v1, where
# Karpenter writes it), read for the CapacityPending condition.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
# KEDA ScaledObjects: the operator's own are watched (metadata only) once KEDA's API is
# served, and read with get until that watch has listed; with autoscaling.provider=keda
# the model's is server-side applied, otherwise the operator's is deleted.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The model's NetworkPolicy: the operator's own are watched (metadata only; get before the first apply, to never take over another's, or before
# that watch has listed), server-side applied when changed, deleted when
# networkPolicy.models.enabled is false.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
