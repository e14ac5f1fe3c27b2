{{/*
The objects' name: <release> when the release name contains the chart's name
(helm install logagent ...), else <release>-<chart name>.
*/}}
{{- define "logagent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "logagent.fullname" -}}
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

{{/*
Selector labels: stable for the DaemonSet's lifetime (its selector is immutable).
*/}}
{{- define "logagent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logagent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object. Helm's own helm.sh/chart and managed-by labels are
left out on purpose: the chart renders the same objects as deploy/kubernetes.
*/}}
{{- define "logagent.labels" -}}
{{ include "logagent.selectorLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "logagent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logagent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where the tls Secret's keys are mounted.
*/}}
{{- define "logagent.tlsDir" -}}/etc/logagent/tls{{- end }}

{{/*
The agent's configuration file: .Values.config, with config.forward.tls
pointed at the mounted tls Secret when tls.enabled.
*/}}
{{- define "logagent.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.tls.enabled }}
{{- $fwd := get $cfg "forward" | default dict }}
{{- $tls := get $fwd "tls" | default dict }}
{{- $_ := set $tls "enabled" true }}
{{- if .Values.tls.secretName }}
{{- if .Values.tls.caKey }}
{{- $_ := set $tls "ca_file" (printf "%s/%s" (include "logagent.tlsDir" .) .Values.tls.caKey) }}
{{- end }}
{{- if .Values.tls.certKey }}
{{- $_ := set $tls "cert_file" (printf "%s/%s" (include "logagent.tlsDir" .) .Values.tls.certKey) }}
{{- end }}
{{- if .Values.tls.keyKey }}
{{- $_ := set $tls "key_file" (printf "%s/%s" (include "logagent.tlsDir" .) .Values.tls.keyKey) }}
{{- end }}
{{- end }}
{{- if .Values.tls.serverName }}
{{- $_ := set $tls "server_name" .Values.tls.serverName }}
{{- end }}
{{- $_ := set $fwd "tls" $tls }}
{{- $_ := set $cfg "forward" $fwd }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The port of config.listen (":2020"), which serves /metrics, /healthz and /readyz.
*/}}
{{- define "logagent.port" -}}
{{- $port := regexFind "[0-9]+$" (toString (default ":2020" .Values.config.listen)) }}
{{- if not $port }}
{{- fail (printf "config.listen %q has no port" .Values.config.listen) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
Checks of values that would render a broken agent.
*/}}
{{- define "logagent.validate" -}}
{{- if and .Values.tls.secretName (not .Values.tls.enabled) }}
{{- fail "tls.secretName is set but tls.enabled is false" }}
{{- end }}
{{- if ne (empty .Values.tls.certKey) (empty .Values.tls.keyKey) }}
{{- fail "tls.certKey and tls.keyKey: set both or neither" }}
{{- end }}
{{- if and (or .Values.tls.certKey .Values.tls.keyKey) (not .Values.tls.secretName) }}
{{- fail "tls.certKey and tls.keyKey need tls.secretName" }}
{{- end }}
{{- if and (or .Values.sharedKey.usernameKey .Values.sharedKey.passwordKey) (not .Values.sharedKey.secretName) }}
{{- fail "sharedKey.usernameKey and sharedKey.passwordKey need sharedKey.secretName" }}
{{- end }}
{{- end }}
