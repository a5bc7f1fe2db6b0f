{{/* Container environment of a voxbus service: (dict "root" $ "c" "gateway").
Plain settings are collected in one map (typed keys, then `env`, then the component's `env`),
so a key set twice is overridden, never duplicated; Secrets and extraEnv follow. */}}

{{- define "voxbus.env" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $v := index $root.Values $c -}}
{{- $env := dict -}}
{{- $_ := set $env "VOXBUS_METRICS_PORT" (toString $root.Values.metrics.port) -}}
{{- $_ := set $env "VOXBUS_METRICS_HOST" $root.Values.metrics.host -}}
{{- $_ := set $env "VOXBUS_AGENT_FILE" (printf "/etc/voxbus/agent/%s" $root.Values.agent.fileKey) -}}
{{- if not $root.Values.externalNats.existingSecret.name -}}
{{- $_ := set $env "VOXBUS_NATS_URL" (required "externalNats.url (or externalNats.existingSecret.name) is required when nats.enabled=false" (include "voxbus.natsUrl" $root)) -}}
{{- end -}}
{{- $_ := set $env "VOXBUS_NATS_REPLICAS" (toString $root.Values.bus.streamReplicas) -}}
{{- $_ := set $env "VOXBUS_NATS_QUORUM_GRACE_S" (toString $root.Values.bus.quorumGraceSeconds) -}}
{{- if $root.Values.otel.endpoint -}}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" $root.Values.otel.endpoint -}}
{{- end -}}
{{- if eq $c "gateway" -}}
{{- $_ := set $env "VOXBUS_GATEWAY_HOST" "0.0.0.0" -}}
{{- $_ := set $env "VOXBUS_GATEWAY_PORT" (toString $v.ports.http) -}}
{{- $_ := set $env "VOXBUS_CARRIER_ALLOW_LOOPBACK_ONLY" (toString $v.carrierAllowLoopbackOnly) -}}
{{- $_ := set $env "VOXBUS_CONTROL_PORT" (ternary (toString $v.ports.grpc) "0" $v.control.enabled) -}}
{{- $_ := set $env "VOXBUS_AUDIOSOCKET_PORT" (ternary (toString $v.ports.audiosocket) "0" $v.audiosocket.enabled) -}}
{{- if $v.sip.enabled -}}
{{- $_ := set $env "VOXBUS_SIP_PORT" (toString $v.sip.port) -}}
{{- $_ := set $env "VOXBUS_SIP_TLS_PORT" (toString $v.sip.tlsPort) -}}
{{- $_ := set $env "VOXBUS_SIP_RTP_PORT_MIN" (toString $v.sip.rtpPortMin) -}}
{{- $_ := set $env "VOXBUS_SIP_RTP_PORT_MAX" (toString $v.sip.rtpPortMax) -}}
{{- $_ := set $env "VOXBUS_SIP_ALLOW" $v.sip.allow -}}
{{- $_ := set $env "VOXBUS_SIP_SRTP" $v.sip.srtp -}}
{{- with $v.sip.mediaAddress }}{{ $_ := set $env "VOXBUS_SIP_MEDIA_ADDRESS" . }}{{ end -}}
{{- end -}}
{{- $_ := set $env "VOXBUS_DRAIN_TIMEOUT_S" (ternary (toString $v.drain.timeoutSeconds) "0" $v.drain.enabled) -}}
{{- with $v.publicUrl }}{{ $_ := set $env "VOXBUS_PUBLIC_URL" . }}{{ end -}}
{{- if $v.tls.secretName -}}
{{- $_ := set $env "VOXBUS_TLS_CERT_FILE" "/etc/voxbus/tls/tls.crt" -}}
{{- $_ := set $env "VOXBUS_TLS_KEY_FILE" "/etc/voxbus/tls/tls.key" -}}
{{- end -}}
{{- else if eq $c "stt" -}}
{{- $_ := set $env "VOXBUS_STT_PROVIDER" $v.provider -}}
{{- $_ := set $env "VOXBUS_VAD_PROVIDER" $v.vadProvider -}}
{{- $_ := set $env "VOXBUS_STT_MAX_CALLS" (toString $v.maxCalls) -}}
{{- $_ := set $env "VOXBUS_WHISPER_THREADS" (toString $v.whisperThreads) -}}
{{- else if eq $c "llm" -}}
{{- $_ := set $env "VOXBUS_LLM_PROVIDER" $v.provider -}}
{{- $_ := set $env "VOXBUS_LLM_BASE_URL" (include "voxbus.llmBaseUrl" $root) -}}
{{- $_ := set $env "VOXBUS_LLM_MODEL" $v.model -}}
{{- $local := and (not $v.baseUrl) $root.Values.llmServer.enabled -}}
{{- $_ := set $env "VOXBUS_LLM_TOOL_FORMAT" ($v.toolFormat | default (ternary "json" "native" $local)) -}}
{{- if $local -}}
{{- /* each call keeps to one of the server's slots, whose prompt cache its next turn reuses */ -}}
{{- $_ := set $env "VOXBUS_LLM_PIN_SLOTS" (toString $root.Values.llmServer.slots) -}}
{{- end -}}
{{- $_ := set $env "VOXBUS_LLM_CONCURRENCY" (toString $v.concurrency) -}}
{{- with $v.fallback.baseUrl }}{{ $_ := set $env "VOXBUS_LLM_FALLBACK_BASE_URL" . }}{{ end -}}
{{- with $v.fallback.model }}{{ $_ := set $env "VOXBUS_LLM_FALLBACK_MODEL" . }}{{ end -}}
{{- else if eq $c "tts" -}}
{{- $_ := set $env "VOXBUS_TTS_PROVIDER" $v.provider -}}
{{- $_ := set $env "VOXBUS_TTS_CONCURRENCY" (toString $v.concurrency) -}}
{{- end -}}
{{- range $k, $val := $root.Values.env }}{{ $_ := set $env $k (toString $val) }}{{ end -}}
{{- range $k, $val := $v.env }}{{ $_ := set $env $k (toString $val) }}{{ end }}
- name: VOXBUS_INSTANCE_ID
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- range $k, $val := $env }}
- name: {{ $k }}
  value: {{ $val | quote }}
{{- end }}
{{- if $root.Values.externalNats.existingSecret.name }}
- name: VOXBUS_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.externalNats.existingSecret.name }}
      key: {{ $root.Values.externalNats.existingSecret.key }}
{{- end }}
{{- with $root.Values.natsAuth }}
{{- if .enabled }}
{{- $secret := index .serviceSecrets $c | required (printf "natsAuth.serviceSecrets.%s is required when natsAuth.enabled: the Secret with that service's VOXBUS_NATS_USER and VOXBUS_NATS_PASSWORD" $c) }}
{{- range $key := list "VOXBUS_NATS_USER" "VOXBUS_NATS_PASSWORD" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $key }}}
{{- end }}
{{- end }}
{{- if .tls.caSecret.name }}
- name: VOXBUS_NATS_TLS_CA
  value: /etc/voxbus/nats-tls/ca/{{ .tls.caSecret.key }}
{{- end }}
{{- if .tls.clientSecret }}
- name: VOXBUS_NATS_TLS_CERT
  value: /etc/voxbus/nats-tls/client/tls.crt
- name: VOXBUS_NATS_TLS_KEY
  value: /etc/voxbus/nats-tls/client/tls.key
{{- end }}
{{- end }}
{{- range $item := (include "voxbus.secretsOf" $c | fromJsonArray) }}
{{- include "voxbus.secretEnv" (dict "root" $root "env" (index $item 0) "ref" (index $root.Values.secrets (index $item 1))) }}
{{- end }}
{{- if and (eq $c "gateway") $root.Values.gateway.sip.enabled $root.Values.gateway.sip.authSecret }}
{{- range $key, $field := dict "VOXBUS_SIP_AUTH_USER" "username" "VOXBUS_SIP_AUTH_PASSWORD" "password" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.gateway.sip.authSecret }}, key: {{ $field }}}
{{- end }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* [env var, secrets.<entry>] pairs each component takes from Secrets. */}}
{{- define "voxbus.secretsOf" -}}
{{- if eq . "gateway" -}}
[["VOXBUS_TWILIO_AUTH_TOKEN", "twilioAuthToken"], ["VOXBUS_MEDIA_TOKEN_KEYS", "mediaTokenKeys"], ["VOXBUS_CONTROL_TOKENS", "controlTokens"], ["VOXBUS_CONTROL_ADMIN_TOKENS", "controlAdminTokens"], ["VOXBUS_CONTROL_JWT_SECRET", "controlJwtSecret"]]
{{- else if eq . "llm" -}}
[["VOXBUS_LLM_API_KEY", "llmApiKey"], ["VOXBUS_LLM_FALLBACK_API_KEY", "llmFallbackApiKey"]]
{{- else if or (eq . "stt") (eq . "tts") -}}
[["VOXBUS_OPENAI_AUDIO_API_KEY", "openaiAudioApiKey"], ["VOXBUS_AZURE_SPEECH_KEY", "azureSpeechKey"]]
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* One secretKeyRef entry, or nothing when no Secret is named (see values.yaml). */}}
{{- define "voxbus.secretEnv" -}}
{{- $name := .ref.name | default .root.Values.secrets.existingSecret -}}
{{- if $name }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ .ref.key }}
      optional: {{ empty .ref.name }}
{{- end -}}
{{- end -}}
