{{/* Pod pieces every component shares: (dict "root" $ "c" "stt"). */}}

{{/* Placement, security and the plumbing that must hold for every pod. enableServiceLinks is
off because Kubernetes would otherwise inject <SERVICE>_PORT variables: a Service named
voxbus-gateway yields VOXBUS_GATEWAY_PORT=tcp://..., which is a voxbus setting. */}}
{{- define "voxbus.podCommon" -}}
{{- $v := index .root.Values (include "voxbus.componentKey" .c) -}}
enableServiceLinks: false
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Volumes of a voxbus service pod: the agent (file + knowledge) and a writable /tmp on a
read-only root filesystem. */}}
{{- define "voxbus.serviceVolumes" -}}
{{- $root := .root -}}
- name: agent
  projected:
    sources:
      {{- if $root.Values.agent.existingConfigMap }}
      - configMap:
          name: {{ $root.Values.agent.existingConfigMap }}
      {{- else }}
      - configMap:
          name: {{ include "voxbus.fullname" $root }}-agent
          items:
            - {key: {{ $root.Values.agent.fileKey }}, path: {{ $root.Values.agent.fileKey }}}
      {{- end }}
      {{- with $root.Values.agent.knowledge }}
      - configMap:
          name: {{ include "voxbus.fullname" $root }}-knowledge
          items:
            {{- range $file, $_ := . }}
            - {key: {{ $file | quote }}, path: {{ printf "knowledge/%s" $file | quote }}}
            {{- end }}
      {{- end }}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if and (eq .c "gateway") $root.Values.gateway.tls.secretName }}
- name: tls
  secret:
    secretName: {{ $root.Values.gateway.tls.secretName }}
{{- end }}
{{- with $root.Values.natsAuth.tls.caSecret.name }}
- name: nats-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- with $root.Values.natsAuth.tls.clientSecret }}
- name: nats-client
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "voxbus.serviceMounts" -}}
- {name: agent, mountPath: /etc/voxbus/agent, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- if and (eq .c "gateway") .root.Values.gateway.tls.secretName }}
- {name: tls, mountPath: /etc/voxbus/tls, readOnly: true}
{{- end }}
{{- if .root.Values.natsAuth.tls.caSecret.name }}
- {name: nats-ca, mountPath: /etc/voxbus/nats-tls/ca, readOnly: true}
{{- end }}
{{- if .root.Values.natsAuth.tls.clientSecret }}
- {name: nats-client, mountPath: /etc/voxbus/nats-tls/client, readOnly: true}
{{- end }}
{{- end -}}

{{/* Probes. The gateway answers GET /healthz (readiness: 503 while it drains, so no new call
is routed to it) and GET /livez (a draining gateway is alive) on its HTTP port. The workers' only HTTP
endpoint is /metrics on 9100, served by a thread from process start: it proves the process is
up, not that its model is loaded or its event loop is responsive (docs/deploy.md). */}}
{{- define "voxbus.probes" -}}
{{- if eq .c "gateway" -}}
{{- $scheme := ternary "HTTPS" "HTTP" (not (empty .root.Values.gateway.tls.secretName)) -}}
startupProbe:
  httpGet: {path: /livez, port: http, scheme: {{ $scheme }}}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  httpGet: {path: /healthz, port: http, scheme: {{ $scheme }}}
  periodSeconds: 5
  timeoutSeconds: 3
livenessProbe:
  httpGet: {path: /livez, port: http, scheme: {{ $scheme }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- else -}}
startupProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 3
livenessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
{{- end -}}
{{- end -}}

{{/* Container ports of a voxbus service. */}}
{{- define "voxbus.containerPorts" -}}
{{- $root := .root -}}
{{- if eq .c "gateway" -}}
{{- $g := $root.Values.gateway -}}
- {name: http, containerPort: {{ $g.ports.http }}, protocol: TCP}
{{- if $g.control.enabled }}
- {name: grpc, containerPort: {{ $g.ports.grpc }}, protocol: TCP}
{{- end }}
{{- if $g.audiosocket.enabled }}
- {name: audiosocket, containerPort: {{ $g.ports.audiosocket }}, protocol: TCP}
{{- end }}
{{- if $g.sip.enabled }}
- {name: sip-udp, containerPort: {{ $g.sip.port }}, protocol: UDP}
- {name: sip-tcp, containerPort: {{ $g.sip.port }}, protocol: TCP}
{{- if $g.sip.tlsPort }}
- {name: sip-tls, containerPort: {{ $g.sip.tlsPort }}, protocol: TCP}
{{- end }}
{{- end }}
{{ end -}}
- {name: metrics, containerPort: {{ $root.Values.metrics.port }}, protocol: TCP}
{{- end -}}
