{{- define "etcdop.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcdop.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "etcdop.fullname" .) -}}
{{- end -}}

{{- define "etcdop.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "etcdop.labels" -}}
app.kubernetes.io/name: etcdop
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- define "etcdop.selector" -}}
app.kubernetes.io/name: etcdop
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
