{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name (sluice-agent). */}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.mode" -}}
{{- if not (has .Values.mode (list "daemonset" "deployment")) }}
{{- fail (printf "mode must be daemonset or deployment, not %q" .Values.mode) }}
{{- end }}
{{- .Values.mode }}
{{- end }}

{{- define "sluice.component" -}}
{{- if .Values.component }}
{{- .Values.component }}
{{- else if eq (include "sluice.mode" .) "daemonset" }}
{{- "agent" }}
{{- else }}
{{- "exporter" }}
{{- end }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/component: {{ include "sluice.component" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The Sluice config file. `config` is a YAML string (rendered as written) or a map. With
secrets.pulsarToken.existingSecret set, every `pulsar` / `pulsar/NAME` buffer without `auth`
gets `auth: { token: { env: PULSAR_TOKEN } }`.
*/}}
{{- define "sluice.config" -}}
{{- $raw := .Values.config }}
{{- if not $raw }}
{{- fail "config is required: the Sluice config (YAML string or map)" }}
{{- end }}
{{- $config := dict }}
{{- if kindIs "string" $raw }}
{{- $config = fromYaml $raw }}
{{- if hasKey $config "Error" }}
{{- fail (printf "config is not valid YAML: %s" (get $config "Error")) }}
{{- end }}
{{- else }}
{{- $config = deepCopy $raw }}
{{- end }}
{{- if not (hasKey $config "service") }}
{{- fail "config has no `service` section: give the whole Sluice config" }}
{{- end }}
{{- $secret := .Values.secrets.pulsarToken.existingSecret }}
{{- if and (kindIs "string" $raw) (not $secret) }}
{{- $raw }}
{{- else }}
{{- if $secret }}
{{- range $name, $buffer := (get $config "buffers" | default dict) }}
{{- if and (or (eq $name "pulsar") (hasPrefix "pulsar/" $name)) (kindIs "map" $buffer) }}
{{- if not (hasKey $buffer "auth") }}
{{- $_ := set $buffer "auth" (dict "token" (dict "env" "PULSAR_TOKEN")) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}
{{- end }}
