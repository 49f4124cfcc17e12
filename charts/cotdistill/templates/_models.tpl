{{/*
Model sources: every component names its models as one of
  a registry name        smollm2-135m-instruct       -> pulled
  a hub id               hf://ORG/NAME               -> pulled (token from models.hfToken)
  an object-store URI    s3://BUCKET/PATH            -> pulled (credentials from models.s3)
  a path on a claim      pvc://CLAIM/PATH            -> mounted read-only; a .gguf file is pulled (converted)
  a path in the pod      /var/lib/cotdistill/...     -> used as it is (e.g. a checkpoint on the artifacts volume)
"Pulled" means the pod's `models` init container runs `cotdistill models pull SOURCE` into the
models cache (COTDISTILL_MODELS_CACHE) and links the directory it materialized at
/var/run/cotdistill/models/<slug>, which is the path the service is given.
*/}}

{{- define "cotdistill.modelsCacheDir" -}}/var/cache/cotdistill/models{{- end -}}
{{- define "cotdistill.modelLinksDir" -}}/var/run/cotdistill/models{{- end -}}
{{- define "cotdistill.modelSourcesDir" -}}/var/lib/cotdistill/model-sources{{- end -}}

{{/* A source's link name: hf://Qwen/Qwen2.5-0.5B -> hf-Qwen-Qwen2.5-0.5B. */}}
{{- define "cotdistill.modelSlug" -}}
{{- regexReplaceAll "[^A-Za-z0-9._-]+" (replace "://" "-" .) "-" | trimAll "-" | trunc 100 -}}
{{- end -}}

{{/*
What a pod's model sources need: (dict "sources" (list SOURCE ...))
-> YAML {pulls: [{source, link}], paths: {SOURCE: path the service reads}, claims: {CLAIM: mountPath}}
*/}}
{{- define "cotdistill.modelPlan" -}}
{{- $pulls := list -}}
{{- $paths := dict -}}
{{- $claims := dict -}}
{{- $links := include "cotdistill.modelLinksDir" . -}}
{{- range $src := .sources -}}
{{- if and $src (not (hasKey $paths $src)) -}}
{{- $slug := include "cotdistill.modelSlug" $src -}}
{{- if hasPrefix "/" $src -}}
{{- $_ := set $paths $src $src -}}
{{- else if hasPrefix "pvc://" $src -}}
{{- $parts := splitList "/" (trimPrefix "pvc://" $src) -}}
{{- $claim := first $parts -}}
{{- $mount := printf "%s/%s" (include "cotdistill.modelSourcesDir" $) $claim -}}
{{- $_ := set $claims $claim $mount -}}
{{- $local := printf "%s/%s" $mount (join "/" (rest $parts)) | trimSuffix "/" -}}
{{- if hasSuffix ".gguf" $local -}}
{{- $pulls = append $pulls (dict "source" $local "link" $slug) -}}
{{- $_ := set $paths $src (printf "%s/%s" $links $slug) -}}
{{- else -}}
{{- $_ := set $paths $src $local -}}
{{- end -}}
{{- else -}}
{{- $pulls = append $pulls (dict "source" $src "link" $slug) -}}
{{- $_ := set $paths $src (printf "%s/%s" $links $slug) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "pulls" $pulls "paths" $paths "claims" $claims) -}}
{{- end -}}

{{/* The models init container: (dict "root" $ "plan" $plan "image" IMAGE). Renders nothing without pulls. */}}
{{- define "cotdistill.modelsInitContainer" -}}
{{- $m := .root.Values.models -}}
{{- if .plan.pulls }}
- name: models
  image: {{ .image | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  # `cotdistill models pull` is idempotent: a source already in the cache is not fetched again.
  command: ["/bin/sh", "-ec"]
  args:
    - |
      pull() {
        echo "models: pulling $1"
        cotdistill models pull "$1" --cache-dir "$COTDISTILL_MODELS_CACHE"
        ln -sfn "$(cotdistill models path "$1")" "{{ include "cotdistill.modelLinksDir" . }}/$2"
        echo "models: $1 -> $(readlink "{{ include "cotdistill.modelLinksDir" . }}/$2")"
      }
      {{- range .plan.pulls }}
      pull {{ .source | squote }} {{ .link | squote }}
      {{- end }}
  env:
    - {name: COTDISTILL_MODELS_CACHE, value: {{ include "cotdistill.modelsCacheDir" . | quote }}}
    - {name: HF_HOME, value: /var/cache/cotdistill/huggingface}
    {{- if $m.hfToken.secretName }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef: {name: {{ $m.hfToken.secretName | quote }}, key: {{ $m.hfToken.secretKey | quote }}}
    {{- end }}
    {{- with $m.s3.endpointUrl }}
    - {name: AWS_ENDPOINT_URL, value: {{ . | quote }}}
    {{- end }}
    {{- with $m.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $m.s3.credentialsSecret }}
  envFrom:
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_REGION) for s3:// sources, read by fsspec.
    - secretRef: {name: {{ $m.s3.credentialsSecret | quote }}}
  {{- end }}
  resources:
    {{- toYaml $m.pullResources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: cache, mountPath: /var/cache/cotdistill}
    {{- include "cotdistill.modelMounts" (dict "root" .root "plan" .plan "writable" true) | nindent 4 }}
{{- end }}
{{- end -}}

{{/* Mounts of the models cache, the links and the source claims: (dict "root" $ "plan" $plan "writable" bool) */}}
{{- define "cotdistill.modelMounts" -}}
- {name: models-cache, mountPath: {{ include "cotdistill.modelsCacheDir" . }}{{ if not .writable }}, readOnly: true{{ end }}}
- {name: model-links, mountPath: {{ include "cotdistill.modelLinksDir" . }}{{ if not .writable }}, readOnly: true{{ end }}}
{{- range $claim, $mount := .plan.claims }}
- {name: {{ printf "model-src-%s" $claim | trunc 63 | trimSuffix "-" }}, mountPath: {{ $mount }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* Volumes of the models cache, the links and the source claims: (dict "root" $ "plan" $plan) */}}
{{- define "cotdistill.modelVolumes" -}}
{{- $c := .root.Values.models.cache -}}
{{- if $c.persistent }}
- name: models-cache
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-models" (include "cotdistill.fullname" .root)) $c.existingClaim }}
{{- else }}
- name: models-cache
  emptyDir:
    sizeLimit: {{ $c.size }}
{{- end }}
- name: model-links
  emptyDir:
    sizeLimit: 1Mi
{{- range $claim, $mount := .plan.claims }}
- name: {{ printf "model-src-%s" $claim | trunc 63 | trimSuffix "-" }}
  persistentVolumeClaim:
    claimName: {{ $claim }}
    readOnly: true
{{- end }}
{{- end -}}
