{{/*
The Ray cluster of the trainer (head + one worker group), shared by the long-lived RayCluster
(trainer.ray.enabled) and the clusters KubeRay creates for each RayJob (trainer.rayJobs).
(dict "root" $ "headVolumes" [...] "headMounts" [...]) -> a RayClusterSpec.
Every Ray pod mounts the artifacts volume (checkpoints are written there by rank 0 and read back
on resume) and the models cache (the student weights the workers load).
*/}}
{{- define "cotdistill.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $t := $root.Values.trainer -}}
{{- $r := $t.ray -}}
{{- $ctx := dict "root" $root "component" "trainer" "values" $t -}}
{{- $image := include "cotdistill.image" $ctx -}}
{{- $plan := include "cotdistill.modelPlan" (dict "sources" $t.models) | fromYaml -}}
rayVersion: {{ $r.rayVersion | quote }}
enableInTreeAutoscaling: {{ $r.enableInTreeAutoscaling }}
{{- if $r.enableInTreeAutoscaling }}
autoscalerOptions:
  upscalingMode: Default
  idleTimeoutSeconds: 300
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  resources: {requests: {cpu: 200m, memory: 256Mi}, limits: {cpu: 500m, memory: 512Mi}}
  securityContext:
    {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  env:
    - {name: TMPDIR, value: /tmp}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
{{- end }}
headGroupSpec:
  rayStartParams:
    # The head schedules only: no training task lands on it.
    num-cpus: "0"
    dashboard-host: "0.0.0.0"
    metrics-export-port: "8080"
  template:
    metadata:
      labels:
        {{- include "cotdistill.componentLabels" (dict "root" $root "component" "ray") | nindent 8 }}
        {{- if $plan.pulls }}
        cotdistill.io/models-pull: "true"
        {{- end }}
    spec:
      {{- if $r.enableInTreeAutoscaling }}
      # No serviceAccountName: KubeRay gives the head its own account with the RBAC its
      # autoscaler sidecar needs to add and remove worker pods (and mounts that token).
      enableServiceLinks: false
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- else }}
      {{- include "cotdistill.podCommon" $root | nindent 6 }}
      {{- end }}
      {{- include "cotdistill.podPlacement" (dict "root" $root "component" "ray" "values" $r.head "spread" false) | nindent 6 }}
      {{- with include "cotdistill.modelsInitContainer" (dict "root" $root "plan" $plan "image" $image) }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ $image | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - {name: gcs, containerPort: 6379, protocol: TCP}
            - {name: dashboard, containerPort: 8265, protocol: TCP}
            - {name: client, containerPort: 10001, protocol: TCP}
            - {name: metrics, containerPort: 8080, protocol: TCP}
          env:
            - {name: RAY_TMPDIR, value: /tmp/ray}
            - {name: RAY_USAGE_STATS_ENABLED, value: "0"}
            {{- include "cotdistill.commonEnv" $root | nindent 12 }}
            {{- include "cotdistill.extraEnv" $ctx | nindent 12 }}
          {{- include "cotdistill.envFrom" $ctx | nindent 10 }}
          readinessProbe:
            httpGet: {path: /api/gcs_healthz, port: 8265}
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 6
          livenessProbe:
            httpGet: {path: /api/gcs_healthz, port: 8265}
            initialDelaySeconds: 30
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 12
          resources:
            {{- toYaml $r.head.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "cotdistill.scratchMounts" $root | nindent 12 }}
            {{- include "cotdistill.modelMounts" (dict "root" $root "plan" $plan) | nindent 12 }}
            - {name: dshm, mountPath: /dev/shm}
            {{- with .headMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $t.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "cotdistill.scratchVolumes" (dict "root" $root "tmpSize" "10Gi" "cacheSize" "10Gi" "shmSize" $r.head.shmSize) | nindent 8 }}
        {{- include "cotdistill.modelVolumes" (dict "root" $root "plan" $plan) | nindent 8 }}
        {{- with .headVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $t.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
workerGroupSpecs:
  - groupName: {{ if gt (int $r.workers.gpus) 0 }}gpu{{ else }}cpu{{ end }}-workers
    replicas: {{ $r.workers.replicas }}
    minReplicas: {{ $r.workers.minReplicas }}
    maxReplicas: {{ $r.workers.maxReplicas }}
    rayStartParams:
      metrics-export-port: "8080"
      {{- if gt (int $r.workers.gpus) 0 }}
      num-gpus: {{ $r.workers.gpus | quote }}
      {{- end }}
    template:
      metadata:
        labels:
          {{- include "cotdistill.componentLabels" (dict "root" $root "component" "ray") | nindent 10 }}
          {{- if $plan.pulls }}
          cotdistill.io/models-pull: "true"
          {{- end }}
      spec:
        {{- include "cotdistill.podCommon" $root | nindent 8 }}
        {{- include "cotdistill.podPlacement" (dict "root" $root "component" "ray" "values" $r.workers "spread" false) | nindent 8 }}
        {{- with include "cotdistill.modelsInitContainer" (dict "root" $root "plan" $plan "image" $image) }}
        initContainers:
          {{- . | nindent 10 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ $image | quote }}
            imagePullPolicy: {{ $root.Values.image.pullPolicy }}
            ports:
              - {name: metrics, containerPort: 8080, protocol: TCP}
            env:
              - {name: RAY_TMPDIR, value: /tmp/ray}
              - {name: RAY_USAGE_STATS_ENABLED, value: "0"}
              {{- include "cotdistill.commonEnv" $root | nindent 14 }}
              {{- include "cotdistill.extraEnv" $ctx | nindent 14 }}
            {{- include "cotdistill.envFrom" $ctx | nindent 12 }}
            readinessProbe:
              httpGet: {path: /api/local_raylet_healthz, port: 52365}
              initialDelaySeconds: 10
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 6
            livenessProbe:
              httpGet: {path: /api/local_raylet_healthz, port: 52365}
              initialDelaySeconds: 30
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 12
            resources:
              {{- $res := deepCopy $r.workers.resources }}
              {{- if gt (int $r.workers.gpus) 0 }}
              {{- $limits := default dict $res.limits }}
              {{- $_ := set $limits $r.workers.gpuResourceName $r.workers.gpus }}
              {{- $_ := set $res "limits" $limits }}
              {{- end }}
              {{- toYaml $res | nindent 14 }}
            securityContext:
              {{- toYaml $root.Values.containerSecurityContext | nindent 14 }}
            volumeMounts:
              {{- include "cotdistill.scratchMounts" $root | nindent 14 }}
              {{- include "cotdistill.modelMounts" (dict "root" $root "plan" $plan) | nindent 14 }}
              - {name: dshm, mountPath: /dev/shm}
              {{- with $t.extraVolumeMounts }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
        volumes:
          {{- include "cotdistill.scratchVolumes" (dict "root" $root "tmpSize" "20Gi" "cacheSize" "50Gi" "shmSize" $r.workers.shmSize) | nindent 10 }}
          {{- include "cotdistill.modelVolumes" (dict "root" $root "plan" $plan) | nindent 10 }}
          {{- with $t.extraVolumes }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
{{- end -}}
