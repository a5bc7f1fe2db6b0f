{{/* Names, labels, images and the NATS and autoscaling decisions shared by every template. */}}

{{- define "voxbus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "voxbus" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-voxbus" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Object name of one component: (dict "root" $ "c" "gateway"). */}}
{{- define "voxbus.name" -}}
{{- printf "%s-%s" (include "voxbus.fullname" .root) .c -}}
{{- end -}}

{{/* The values block of a component (llm-server lives under llmServer). */}}
{{- define "voxbus.componentKey" -}}
{{- if eq . "llm-server" }}llmServer{{ else }}{{ . }}{{ end -}}
{{- end -}}

{{/* Selector labels: `voxbus deploy status` finds components by exactly these. */}}
{{- define "voxbus.selectorLabels" -}}
app.kubernetes.io/name: voxbus
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c }}
{{- end -}}

{{- define "voxbus.labels" -}}
{{ include "voxbus.selectorLabels" . }}
app.kubernetes.io/part-of: voxbus
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* registry/repository:tag, or @digest when the tag is one. */}}
{{- define "voxbus.image" -}}
{{- $v := index .root.Values (include "voxbus.componentKey" .c) -}}
{{- $repo := required (printf "%s.image.repository is required" (include "voxbus.componentKey" .c)) $v.image.repository -}}
{{- if .root.Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $repo -}}
{{- end -}}
{{- $tag := $v.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* The NATS chart's object names follow its own fullname rule; mirror it. */}}
{{- define "voxbus.natsFullname" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "nats" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "voxbus.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc.%s:4222" (include "voxbus.natsFullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/* KEDA queries the monitoring port of the server that leads a consumer: with a clustered
bundled NATS that is <pod>.<headless service>, so the endpoint is the headless Service. */}}
{{- define "voxbus.natsMonitoringEndpoint" -}}
{{- if .Values.nats.enabled -}}
{{- printf "%s-headless.%s.svc.%s:8222" (include "voxbus.natsFullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- required "externalNats.monitoringEndpoint is required for KEDA's nats-jetstream scaler (host:8222 of the external NATS), or set autoscaling.mode=hpa" .Values.externalNats.monitoringEndpoint -}}
{{- end -}}
{{- end -}}

{{/* keda | hpa | none for the whole release. */}}
{{- define "voxbus.autoscalingMode" -}}
{{- $mode := .Values.autoscaling.mode -}}
{{- $keda := .Capabilities.APIVersions.Has "keda.sh/v1alpha1" -}}
{{- if eq $mode "auto" -}}
{{- ternary "keda" "hpa" $keda -}}
{{- else if and (eq $mode "keda") (not $keda) -}}
{{- fail "autoscaling.mode=keda, but the cluster serves no keda.sh/v1alpha1 API: install KEDA, use autoscaling.mode=hpa, or (helm template) pass --api-versions keda.sh/v1alpha1" -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{/* keda | hpa | none for one component: (dict "root" $ "c" "stt"). */}}
{{- define "voxbus.componentAutoscaling" -}}
{{- $v := index .root.Values (include "voxbus.componentKey" .c) -}}
{{- if $v.autoscaling.enabled -}}
{{- include "voxbus.autoscalingMode" .root -}}
{{- else -}}
none
{{- end -}}
{{- end -}}

{{/* The LLM endpoint: explicit, else the in-cluster llama.cpp server. */}}
{{- define "voxbus.llmBaseUrl" -}}
{{- if .Values.llm.baseUrl -}}
{{- .Values.llm.baseUrl -}}
{{- else if .Values.llmServer.enabled -}}
{{- printf "http://%s:8080/v1" (include "voxbus.name" (dict "root" . "c" "llm-server")) -}}
{{- else -}}
{{- fail "llm.baseUrl is required when llmServer.enabled=false (an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1)" -}}
{{- end -}}
{{- end -}}

{{/* TCP port of a URL: explicit, else the scheme's default. */}}
{{- define "voxbus.urlPort" -}}
{{- $u := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if $port }}{{ $port }}{{ else if eq $u.scheme "http" }}80{{ else }}443{{ end -}}
{{- end -}}

{{/* Stable hash of the agent file and knowledge: pods roll when the agent changes. */}}
{{- define "voxbus.agentChecksum" -}}
{{- printf "%s|%s|%s" .Values.agent.existingConfigMap .Values.agent.file (toJson .Values.agent.knowledge) | sha256sum -}}
{{- end -}}
