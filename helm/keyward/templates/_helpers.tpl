{{/*
The chart name, or nameOverride.
*/}}
{{- define "keyward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, or "<release>-<name>" (just
"<release>" when it already contains the name). 63 characters at most (DNS label); the
suffixed objects ("-tenants", "-api-key", "-ops") stay within 253.
*/}}
{{- define "keyward.fullname" -}}
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
The ops Service's name: a DNS-1035 label of at most 63 characters.
*/}}
{{- define "keyward.opsServiceName" -}}
{{- printf "%s-ops" (include "keyward.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}

{{/*
"name-version" of the chart, for the helm.sh/chart label.
*/}}
{{- define "keyward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels of every object.
*/}}
{{- define "keyward.labels" -}}
helm.sh/chart: {{ include "keyward.chart" . }}
{{ include "keyward.selectorLabels" . }}
app.kubernetes.io/version: {{ include "keyward.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: key-proxy
app.kubernetes.io/part-of: keyward
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the release's pods. Never change them: a Deployment's selector is
immutable.
*/}}
{{- define "keyward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "keyward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyward.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image tag: image.tag, or the chart's appVersion.
*/}}
{{- define "keyward.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The image reference: repository:tag, or repository:tag@digest when a digest is set.
*/}}
{{- define "keyward.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "keyward.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The tenants ConfigMap: the chart's, or tenants.existingConfigMap.
*/}}
{{- define "keyward.tenantsConfigMapName" -}}
{{- if .Values.tenants.existingConfigMap }}
{{- .Values.tenants.existingConfigMap }}
{{- else }}
{{- printf "%s-tenants" (include "keyward.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The tenants file's text, from tenants.inline: a string as it is, an object as YAML, null as
a file without tenants.
*/}}
{{- define "keyward.tenantsFile" -}}
{{- $inline := .Values.tenants.inline }}
{{- if kindIs "string" $inline }}
{{- $inline }}
{{- else if kindIs "invalid" $inline }}
{{- toYaml (dict "version" 1 "tenants" (dict)) }}
{{- else }}
{{- toYaml $inline }}
{{- end }}
{{- end }}

{{/*
The API key Secret: the chart's, or apiKey.existingSecret.
*/}}
{{- define "keyward.apiKeySecretName" -}}
{{- if .Values.apiKey.existingSecret }}
{{- .Values.apiKey.existingSecret }}
{{- else }}
{{- printf "%s-api-key" (include "keyward.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Where the TLS Secrets are mounted, and the file KEYWARD_TLS_CLIENT_CA names: in the server
certificate's directory when tls.clientCa.existingSecret is tls.existingSecret itself (one
volume), otherwise in a directory of its own.
*/}}
{{- define "keyward.tlsDir" -}}/etc/keyward/tls{{- end }}
{{- define "keyward.tlsClientCaDir" -}}/etc/keyward/tls-client-ca{{- end }}
{{- define "keyward.tlsClientCaSeparate" -}}
{{- $tls := .Values.tls }}
{{- if and $tls.enabled $tls.clientCa.existingSecret (ne $tls.clientCa.existingSecret $tls.existingSecret) }}true{{ end }}
{{- end }}
{{- define "keyward.tlsClientCaFile" -}}
{{- $dir := ternary (include "keyward.tlsClientCaDir" .) (include "keyward.tlsDir" .) (eq (include "keyward.tlsClientCaSeparate" .) "true") }}
{{- printf "%s/%s" $dir .Values.tls.clientCa.key }}
{{- end }}

{{/*
Whether more than one replica runs (for the PodDisruptionBudget): "true" or "".
*/}}
{{- define "keyward.multiReplica" -}}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) 1 }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
A Keyward duration (500ms, 10s, 5m, 1h) in milliseconds. Fails on anything else.
*/}}
{{- define "keyward.durationMs" -}}
{{- $d := toString . }}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h)$" $d) }}
{{- fail (printf "keyward: %q is not a duration like 500ms, 10s, 5m or 1h" $d) }}
{{- end }}
{{- $n := int64 (regexFind "^[0-9]+" $d) }}
{{- $unit := regexFind "(ms|s|m|h)$" $d }}
{{- if eq $unit "ms" }}{{ $n }}
{{- else if eq $unit "s" }}{{ mul $n 1000 }}
{{- else if eq $unit "m" }}{{ mul $n 60000 }}
{{- else }}{{ mul $n 3600000 }}
{{- end }}
{{- end }}

{{/*
Checks between values that the schema cannot express; fails with a message naming the
values to change.
*/}}
{{- define "keyward.validate" -}}
{{- $k := .Values.apiKey }}
{{- if and $k.existingSecret $k.value }}
{{- fail "apiKey: set either apiKey.existingSecret (a Secret you manage; for production) or apiKey.value (the chart creates the Secret), not both" }}
{{- end }}
{{- if not (or $k.existingSecret $k.value) }}
{{- fail "apiKey: Keyward needs an API key. Set apiKey.existingSecret to the name of a Secret holding it (for production; e.g. kubectl create secret generic keyward-api-key --from-literal=api-key=\"$(openssl rand -base64 32)\"), or apiKey.value to have the chart create the Secret" }}
{{- end }}
{{- if and $k.value (lt (len $k.value) 16) }}
{{- fail "apiKey.value must be at least 16 characters (Keyward refuses shorter keys)" }}
{{- end }}
{{- if and $k.value2 (lt (len $k.value2) 16) }}
{{- fail "apiKey.value2 must be at least 16 characters (Keyward refuses shorter keys)" }}
{{- end }}
{{- if and $k.value2 (not $k.value) }}
{{- fail "apiKey.value2 (the second key of a rotation) needs apiKey.value" }}
{{- end }}
{{- if and $k.existingSecretKey2 (not $k.existingSecret) }}
{{- fail "apiKey.existingSecretKey2 needs apiKey.existingSecret" }}
{{- end }}
{{- if and $k.value2 (eq $k.value $k.value2) }}
{{- fail "apiKey.value2 must differ from apiKey.value" }}
{{- end }}
{{- $tls := .Values.tls }}
{{- if and $tls.enabled (not $tls.existingSecret) }}
{{- fail "tls.enabled needs tls.existingSecret: the name of a kubernetes.io/tls Secret (keys tls.crt and tls.key) in the release's namespace, for example the secretName of a cert-manager Certificate, or one made with kubectl create secret tls keyward-tls --cert=server.crt --key=server.key" }}
{{- end }}
{{- if and $tls.existingSecret (not $tls.enabled) }}
{{- fail "tls.existingSecret is set but tls.enabled is false: the API would be served over plain HTTP. Set tls.enabled=true to serve it over HTTPS, or leave tls.existingSecret empty for plain HTTP" }}
{{- end }}
{{- if and $tls.clientCa.existingSecret (not $tls.enabled) }}
{{- fail "tls.clientCa.existingSecret (client certificates, mutual TLS) needs TLS on the API port: set tls.enabled and tls.existingSecret too" }}
{{- end }}
{{- $chartEnv := list }}
{{- if $tls.enabled }}
{{- $chartEnv = concat $chartEnv (list "KEYWARD_TLS_CERT" "KEYWARD_TLS_KEY") }}
{{- if $tls.clientCa.existingSecret }}{{ $chartEnv = append $chartEnv "KEYWARD_TLS_CLIENT_CA" }}{{ end }}
{{- end }}
{{- if $k.tenants }}{{ $chartEnv = append $chartEnv "KEYWARD_API_KEY_TENANTS" }}{{ end }}
{{- range .Values.extraEnv }}
{{- if and (kindIs "map" .) (has .name $chartEnv) }}
{{- fail (printf "extraEnv sets %s, which the chart sets from %s: remove it from extraEnv" .name (ternary "apiKey.tenants" "the tls values" (eq .name "KEYWARD_API_KEY_TENANTS"))) }}
{{- end }}
{{- end }}
{{- $shutdownMs := int64 (include "keyward.durationMs" .Values.keyward.shutdownTimeout) }}
{{- $flushMs := int64 (include "keyward.durationMs" (default "5s" .Values.keyward.auditFlushTimeout)) }}
{{- if ge $flushMs $shutdownMs }}
{{- fail (printf "keyward.auditFlushTimeout (%s; Keyward's default is 5s) must be shorter than keyward.shutdownTimeout (%s)" (default "5s" .Values.keyward.auditFlushTimeout) .Values.keyward.shutdownTimeout) }}
{{- end }}
{{- $sleep := int64 .Values.lifecycle.preStopSleepSeconds }}
{{- $grace := int64 .Values.terminationGracePeriodSeconds }}
{{- if le (mul $grace 1000) (add $shutdownMs (mul $sleep 1000)) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than keyward.shutdownTimeout (%s) plus lifecycle.preStopSleepSeconds (%d), or Kubernetes kills Keyward before it has drained" $grace .Values.keyward.shutdownTimeout $sleep) }}
{{- end }}
{{- if and (not .Values.tenants.existingConfigMap) (kindIs "string" .Values.tenants.inline) (not (trim .Values.tenants.inline)) }}
{{- fail "tenants: set tenants.inline (the tenants file) or tenants.existingConfigMap" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling needs a metric: set autoscaling.targetCPUUtilizationPercentage and/or autoscaling.targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.opsService.enabled (eq (include "keyward.opsServiceName" .) (include "keyward.fullname" .)) }}
{{- fail "the ops Service's name would equal the main Service's" }}
{{- end }}
{{- end }}
