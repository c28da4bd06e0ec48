{{/* Names, labels and the pieces every pod shares. */}}

{{- define "llm-council.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-council.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "llm-council.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llm-council.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "llm-council.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-council.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-council.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-council.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "llm-council.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "llm-council.secretName" -}}
{{- .Values.secret.existingSecret | default (include "llm-council.fullname" .) }}
{{- end }}

{{- define "llm-council.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Roll every pod when the settings change. */}}
{{- define "llm-council.checksums" -}}
checksum/config: {{ include (printf "%s/configmap.yaml" .Template.BasePath) . | sha256sum }}
checksum/secret: {{ include (printf "%s/secret.yaml" .Template.BasePath) . | sha256sum }}
{{- end }}

{{/* Settings: the ConfigMap whole, and each secret key by name (so a pod sees only those). */}}
{{- define "llm-council.envFrom" -}}
- configMapRef:
    name: {{ include "llm-council.fullname" . }}
{{- end }}

{{- define "llm-council.secretEnv" -}}
{{- $secret := include "llm-council.secretName" . }}
{{- range $key, $_ := .Values.secret.values }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}

{{- define "llm-council.podSpec" -}}
serviceAccountName: {{ include "llm-council.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {}
{{- end }}

{{- define "llm-council.container" -}}
image: {{ include "llm-council.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
  {{- include "llm-council.envFrom" . | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}
