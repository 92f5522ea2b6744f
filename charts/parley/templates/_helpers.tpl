{{/*
The chart's name, or nameOverride.
*/}}
{{- define "parley.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it
contains the chart name, else "<release>-<chart>". Kept to 50 characters so that the
longest derived name ("<fullname>-engine-tls") stays a valid DNS label.
*/}}
{{- define "parley.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "parley.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "parley.labels" -}}
helm.sh/chart: {{ include "parley.chart" . }}
{{ include "parley.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Labels that select the operator pods. app.kubernetes.io/component=operator keeps connector
pods (app.kubernetes.io/name=parley, component=connector) out of the chart's Services.
*/}}
{{- define "parley.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parley.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "parley.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "parley.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator image: repository@digest, or repository:tag (tag defaults to appVersion).
*/}}
{{- define "parley.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The connector pods' image: connector.image, else the operator's.
*/}}
{{- define "parley.connectorImage" -}}
{{- default (include "parley.image" .) .Values.connector.image -}}
{{- end -}}

{{/*
The watched namespaces as a list: watchNamespaces may be a list or a comma-separated string.
*/}}
{{- define "parley.watchNamespaces" -}}
{{- $list := list -}}
{{- $raw := .Values.watchNamespaces | default list -}}
{{- if kindIs "string" $raw -}}
{{- $raw = splitList "," $raw -}}
{{- end -}}
{{- range $raw -}}
{{- $ns := . | toString | trim -}}
{{- if $ns -}}
{{- $list = append $list $ns -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $list) -}}
{{- end -}}

{{/*
The engine Service's name.
*/}}
{{- define "parley.engineServiceName" -}}
{{- printf "%s-engine" (include "parley.fullname" .) -}}
{{- end -}}

{{/*
What connector pods dial: engine.address, else the engine Service.
*/}}
{{- define "parley.engineAddress" -}}
{{- if .Values.engine.address -}}
{{- .Values.engine.address -}}
{{- else -}}
{{- printf "%s.%s.svc:%v" (include "parley.engineServiceName" .) .Release.Namespace .Values.engine.port -}}
{{- end -}}
{{- end -}}

{{/*
The Secret holding the engine's CA and serving certificate.
*/}}
{{- define "parley.engineSecretName" -}}
{{- default (printf "%s-engine-tls" (include "parley.fullname" .)) .Values.engine.secretName -}}
{{- end -}}

{{/*
DNS names of the engine's serving certificate, comma-separated: the engine Service's
names, then engine.extraDNSNames.
*/}}
{{- define "parley.engineDNSNames" -}}
{{- $svc := include "parley.engineServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns (.Values.clusterDomain | trimSuffix ".")) -}}
{{- range .Values.engine.extraDNSNames -}}
{{- $names = append $names (. | toString | trim) -}}
{{- end -}}
{{- join "," (uniq $names) -}}
{{- end -}}

{{/*
The webhook Service.
*/}}
{{- define "parley.webhookServiceName" -}}
{{- printf "%s-webhook" (include "parley.fullname" .) -}}
{{- end -}}

{{/*
The Secret holding the webhook's serving certificate: the operator's, or cert-manager's.
*/}}
{{- define "parley.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "parley.fullname" .)) .Values.webhook.secretName -}}
{{- end -}}

{{/*
The names the API server dials to reach the webhook, comma-separated: the Service's, or the
host of webhook.address.
*/}}
{{- define "parley.webhookHosts" -}}
{{- if .Values.webhook.address -}}
{{- $hostPort := splitList ":" .Values.webhook.address -}}
{{- if ne (len $hostPort) 2 -}}
{{- fail (printf "webhook.address must be host:port, not %q" .Values.webhook.address) -}}
{{- end -}}
{{- first $hostPort -}}
{{- else -}}
{{- $svc := include "parley.webhookServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- join "," (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns (.Values.clusterDomain | trimSuffix "."))) -}}
{{- end -}}
{{- end -}}
