{{/* Per-component pod settings every workload template shares. */}}

{{/* Scheduling of a component's pods: (dict "root" $ "component" "teacher" "values" $v "spread" bool).
     spread: without user affinity, prefer one replica per node. */}}
{{- define "cotdistill.podPlacement" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .values.runtimeClassName }}
runtimeClassName: {{ . | quote }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or .values.affinity .spread }}
affinity:
  {{- include "cotdistill.affinity" (dict "root" .root "component" .component "affinity" .values.affinity) | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The user's environment of a container: (dict "values" $v). Goes last in `env`, so it can override. */}}
{{- define "cotdistill.extraEnv" -}}
{{- with .values.extraEnv }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{/* envFrom of a container: (dict "values" $v). */}}
{{- define "cotdistill.envFrom" -}}
{{- with .values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pods of the release, whoever labels them: KubeRay overwrites app.kubernetes.io/name on the
     Ray pods (to "kuberay"), but keeps instance and part-of. Used by the default-deny
     NetworkPolicy and the PodMonitor, which must cover the Ray pods too. */}}
{{- define "cotdistill.podsSelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: cotdistill
{{- end -}}
