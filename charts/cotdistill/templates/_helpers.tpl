{{/* Names, labels and the pieces every component shares. */}}

{{- define "cotdistill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource-name prefix: <release>-cotdistill, or the release name when it already says cotdistill. */}}
{{- define "cotdistill.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: cotdistill.component (dict "root" $ "component" "teacher"). */}}
{{- define "cotdistill.componentName" -}}
{{- printf "%s-%s" (include "cotdistill.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cotdistill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "cotdistill.labels" -}}
helm.sh/chart: {{ include "cotdistill.chart" . }}
app.kubernetes.io/name: {{ include "cotdistill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cotdistill
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector of every pod of this release (NetworkPolicy default deny). */}}
{{- define "cotdistill.releaseSelector" -}}
app.kubernetes.io/name: {{ include "cotdistill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "teacher"). */}}
{{- define "cotdistill.selectorLabels" -}}
{{ include "cotdistill.releaseSelector" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects. */}}
{{- define "cotdistill.componentLabels" -}}
{{ include "cotdistill.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cotdistill.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cotdistill.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of a component: (dict "root" $ "component" "teacher" "values" .Values.teacher). */}}
{{- define "cotdistill.image" -}}
{{- if .values.imageOverride -}}
{{- .values.imageOverride -}}
{{- else -}}
{{- printf "%s/%s:%s-%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) .values.variant -}}
{{- end -}}
{{- end -}}

{{- define "cotdistill.artifactsClaim" -}}
{{- default (printf "%s-artifacts" (include "cotdistill.fullname" .)) .Values.artifacts.existingClaim -}}
{{- end -}}

{{/* Pod-level settings every pod shares. */}}
{{- define "cotdistill.podCommon" -}}
serviceAccountName: {{ include "cotdistill.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Settings env of a service: (dict "root" $ "component" "teacher" "values" .Values.teacher). */}}
{{- define "cotdistill.serviceEnv" -}}
{{- $prefix := printf "COTDISTILL_%s_" (upper .component) -}}
- name: {{ $prefix }}HOST
  value: "0.0.0.0"
- name: {{ $prefix }}PORT
  value: {{ .values.port | quote }}
{{- if .values.metricsPort }}
- name: {{ $prefix }}METRICS_HOST
  value: "0.0.0.0"
- name: {{ $prefix }}METRICS_PORT
  value: {{ .values.metricsPort | quote }}
{{- end }}
- name: {{ $prefix }}LOG_JSON
  value: {{ .root.Values.logJson | quote }}
- name: {{ $prefix }}LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: {{ $prefix }}GRACE_PERIOD_S
  value: {{ .values.gracePeriodSeconds | quote }}
- name: {{ $prefix }}ARTIFACTS_DIR
  value: {{ ternary .root.Values.artifacts.mountPath "/tmp/artifacts" .root.Values.artifacts.enabled | quote }}
{{- include "cotdistill.commonEnv" .root }}
{{- end -}}

{{/* Environment of every cotdistill container: where models and datasets are. */}}
{{- define "cotdistill.commonEnv" -}}
{{- /* Registry names resolve against the models cache the `models` init containers fill. */}}
- name: COTDISTILL_MODELS_CACHE
  value: {{ include "cotdistill.modelsCacheDir" . | quote }}
{{- with .Values.datasets.dir }}
- name: COTDISTILL_DATA_DIR
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Writable volumes every service container needs with a read-only root filesystem. */}}
{{- define "cotdistill.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: /var/cache/cotdistill
{{- if .Values.artifacts.enabled }}
- name: artifacts
  mountPath: {{ .Values.artifacts.mountPath }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "tmpSize" "2Gi" "cacheSize" "1Gi" "shmSize" "") */}}
{{- define "cotdistill.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize | default "2Gi" }}
- name: cache
  emptyDir:
    sizeLimit: {{ .cacheSize | default "5Gi" }}
{{- if .shmSize }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .shmSize }}
{{- end }}
{{- if .root.Values.artifacts.enabled }}
- name: artifacts
  persistentVolumeClaim:
    claimName: {{ include "cotdistill.artifactsClaim" .root }}
{{- end }}
{{- end -}}

{{/* Spread replicas over nodes unless the user set affinity: (dict "root" $ "component" "x" "affinity" .Values.x.affinity) */}}
{{- define "cotdistill.affinity" -}}
{{- if .affinity -}}
{{- toYaml .affinity -}}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "cotdistill.selectorLabels" (dict "root" .root "component" .component) | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* PromQL: requests waiting in this release's teacher replicas (KEDA's scaling signal). */}}
{{- define "cotdistill.teacherQueueQuery" -}}
sum(cotdistill_teacher_queue_depth_requests{namespace="{{ .Release.Namespace }}", pod=~"{{ include "cotdistill.componentName" (dict "root" . "component" "teacher") }}-.*"})
{{- end -}}

{{/* PromQL: the sampling backlog of every pipeline driver in the namespace (exists while no teacher
     runs), capped so that a backlog asks for replicasWhileSampling replicas at most. */}}
{{- define "cotdistill.samplingBacklogQuery" -}}
clamp_max(sum(cotdistill_sampling_units_pending{namespace="{{ .Release.Namespace }}"}), {{ .Values.teacher.keda.replicasWhileSampling }})
{{- end -}}

{{- define "cotdistill.rayClusterName" -}}
{{- printf "%s-ray" (include "cotdistill.fullname" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "cotdistill.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "cotdistill.componentName" (dict "root" . "component" "server"))) .Values.server.apiKeys.existingSecret -}}
{{- end -}}

{{/* Where pipeline runs keep their artifacts (a recipe's output_dir) on the shared artifacts volume,
     beside the trainer's own runs/<run id> folders. */}}
{{- define "cotdistill.runsDir" -}}
{{- printf "%s/pipeline" .Values.artifacts.mountPath -}}
{{- end -}}
