{{/* Chart name, truncated to a DNS label. */}}
{{- define "simplear.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource-name prefix: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "simplear.fullname" -}}
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

{{/* <fullname>-<suffix>, kept within a DNS label. */}}
{{- define "simplear.componentName" -}}
{{- printf "%s-%s" (include "simplear.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "simplear.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Namespace every namespaced object goes to. */}}
{{- define "simplear.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{/* Labels that select one component's pods; call with (dict "root" $ "component" "minio"). */}}
{{- define "simplear.selectorLabels" -}}
app.kubernetes.io/name: {{ include "simplear.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every object's labels; call with (dict "root" $ "component" "minio"). */}}
{{- define "simplear.labels" -}}
helm.sh/chart: {{ include "simplear.chart" .root }}
{{ include "simplear.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: simplear
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Label a pod must carry for the MinIO NetworkPolicy to admit it. */}}
{{- define "simplear.storeClientLabel" -}}
simplear.io/store-client: "true"
{{- end }}

{{/* Label of the chart's run-to-completion pods (jobs, tests): they accept no connections at all. */}}
{{- define "simplear.denyIngressLabel" -}}
simplear.io/ingress: deny
{{- end }}

{{/* Image reference registry/repository:tag[@digest]; call with an image block of values. */}}
{{- define "simplear.image" -}}
{{- $ref := printf "%s/%s:%s" .registry .repository .tag }}
{{- if .digest }}
{{- $ref = printf "%s@%s" $ref .digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* What every pod of the chart carries: pull secrets, pod security context and the placement of
one pool (nodeSelector, tolerations, affinity). Call with (dict "root" $ "pool" "cpu"). */}}
{{- define "simplear.podDefaults" -}}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{ include "simplear.poolPlacement" . }}
{{- end }}

{{/* Pull secrets and the placement of one pool (nodeSelector, tolerations, affinity): what a ServingRuntime
takes of the pod. Call with (dict "root" $ "pool" "serve"). */}}
{{- define "simplear.poolPlacement" -}}
{{- $pool := index .root.Values.pools .pool -}}
{{- with .root.Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with $pool.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $pool.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $pool.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Requests and limits of one pool's workload: its cpu and memory, and its GPUs when it has any. */}}
{{- define "simplear.poolResources" -}}
{{- $pool := index .root.Values.pools .pool }}
{{- $list := dict "cpu" ($pool.cpu | toString) "memory" ($pool.memory | toString) }}
{{- if gt (int $pool.gpus) 0 }}
{{- $_ := set $list $pool.gpuResource (int $pool.gpus) }}
{{- end -}}
requests:
  {{- toYaml $list | nindent 2 }}
limits:
  {{- toYaml $list | nindent 2 }}
{{- end }}

{{/* Container-level security context. */}}
{{- define "simplear.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/* Name of the Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */}}
{{- define "simplear.store.secretName" -}}
{{- if .Values.store.existingSecret }}
{{- .Values.store.existingSecret }}
{{- else if .Values.minio.enabled }}
{{- include "simplear.componentName" (dict "root" . "component" "store") }}
{{- else }}
{{- fail "store.existingSecret is required when minio.enabled=false: name a Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for store.endpoint" }}
{{- end }}
{{- end }}

{{/* host:port of the S3 endpoint: the bundled MinIO Service, or store.endpoint. */}}
{{- define "simplear.store.endpoint" -}}
{{- if .Values.minio.enabled }}
{{- if .Values.store.endpoint }}
{{- fail "store.endpoint names an external S3 endpoint, but minio.enabled=true serves the bundled MinIO: unset one of them" }}
{{- end }}
{{- printf "%s.%s.svc:%d" (include "simplear.componentName" (dict "root" . "component" "minio")) (include "simplear.namespace" .) (int .Values.minio.port) }}
{{- else }}
{{- required "store.endpoint (host:port of the S3 endpoint) is required when minio.enabled=false" .Values.store.endpoint }}
{{- end }}
{{- end }}

{{/* Whether the store is reached over HTTPS ("true"/"false"); the bundled MinIO serves HTTP. */}}
{{- define "simplear.store.secure" -}}
{{- and (not .Values.minio.enabled) .Values.store.secure | toString }}
{{- end }}

{{/* Environment a store client needs: endpoint, TLS, region and credentials from the Secret. */}}
{{- define "simplear.store.env" -}}
- name: SIMPLEAR_S3_ENDPOINT
  value: {{ include "simplear.store.endpoint" . | quote }}
- name: SIMPLEAR_S3_SECURE
  value: {{ include "simplear.store.secure" . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.store.region | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "simplear.store.secretName" . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "simplear.store.secretName" . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}

{{/* Writable scratch space for a read-only root filesystem: the volume. */}}
{{- define "simplear.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{/* Writable scratch space for a read-only root filesystem: the mount. */}}
{{- define "simplear.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* ServiceAccount of the chart's own pods (MinIO, jobs, tests); it holds no permissions. */}}
{{- define "simplear.serviceAccountName" -}}
{{- include "simplear.fullname" . }}
{{- end }}

{{/* ServiceAccount pipeline runs use; bound to the pipeline Role. */}}
{{- define "simplear.pipelineServiceAccountName" -}}
{{- include "simplear.componentName" (dict "root" . "component" "pipeline") }}
{{- end }}

{{/* ServiceAccount of the predictor, linking KServe to the store Secret. */}}
{{- define "simplear.serveServiceAccountName" -}}
{{- include "simplear.componentName" (dict "root" . "component" "serve") }}
{{- end }}

{{/* Name of the platform ConfigMap pipeline components read. */}}
{{- define "simplear.platformConfigName" -}}
{{- include "simplear.componentName" (dict "root" . "component" "platform") }}
{{- end }}

{{/* Name of the InferenceService the pipelines deploy to (and the model name it serves). */}}
{{- define "simplear.inferenceServiceName" -}}
{{- .Values.kserve.inferenceServiceName | default (include "simplear.fullname" .) }}
{{- end }}

{{/* Name of the (Cluster)ServingRuntime of model format simplear. */}}
{{- define "simplear.servingRuntimeName" -}}
{{- .Values.kserve.runtime.name | default (include "simplear.componentName" (dict "root" . "component" "runtime")) }}
{{- end }}

{{/* "true" when the KServe objects render: kserve.enabled on a cluster that serves KServe's kinds. Installing or
upgrading with kserve.enabled where they are missing fails and says which; `helm lint` renders without them. */}}
{{- define "simplear.kserve" -}}
{{- if .Values.kserve.enabled }}
{{- $runtime := printf "serving.kserve.io/v1alpha1/%s" (ternary "ClusterServingRuntime" "ServingRuntime" .Values.kserve.runtime.cluster) }}
{{- $missing := list }}
{{- range list $runtime "serving.kserve.io/v1beta1/InferenceService" }}
{{- if not ($.Capabilities.APIVersions.Has .) }}
{{- $missing = append $missing . }}
{{- end }}
{{- end }}
{{- if not $missing }}
{{- "true" }}
{{- else if or .Release.IsInstall .Release.IsUpgrade }}
{{- fail (printf "kserve.enabled=true, but this cluster has no %s: install KServe first, or set kserve.enabled=false (helm template: pass --api-versions for each)" (join " and " $missing)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The serve pool's deployment strategy: the value, else Recreate when the pool has GPUs (a new revision takes
the old one's instead of waiting for more), RollingUpdate on CPU. */}}
{{- define "simplear.deploymentStrategy" -}}
{{- .Values.kserve.deploymentStrategy | default (ternary "Recreate" "RollingUpdate" (gt (int .Values.pools.serve.gpus) 0)) }}
{{- end }}

{{/* In-cluster URL of the predictor's readiness route. */}}
{{- define "simplear.predictorReadyUrl" -}}
{{- printf "http://%s-predictor.%s.svc/v2/health/ready" (include "simplear.inferenceServiceName" .) (include "simplear.namespace" .) }}
{{- end }}
