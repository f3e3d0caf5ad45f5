{{- define "etcdop.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcdop.labels" -}}
app.kubernetes.io/name: etcdop
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "etcdop.selector" -}}
app.kubernetes.io/name: etcdop
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
