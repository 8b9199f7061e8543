{{/* Name of the namespaced objects and prefix of the cluster-wide ones. */}}
{{- define "lma.name" -}}
{{- .Values.name | default "llm-metrics-adapter" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lma.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* Selector labels: deliberately only the name, so the selectors equal deploy/base's. */}}
{{- define "lma.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lma.name" . }}
{{- end -}}

{{- define "lma.labels" -}}
{{ include "lma.selectorLabels" . }}
app.kubernetes.io/part-of: llm-metrics-adapter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "lma.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The backend flag: --gmp-project (GMP with Workload Identity credentials) for
backend.gmpProjectId, else --prometheus-url for backend.prometheusUrl. */}}
{{- define "lma.backendArg" -}}
{{- $b := .Values.backend -}}
{{- if and $b.gmpProjectId $b.prometheusUrl -}}
{{- fail "backend: set gmpProjectId or prometheusUrl, not both" -}}
{{- else if $b.gmpProjectId -}}
{{- printf "--gmp-project=%s" $b.gmpProjectId -}}
{{- else if $b.prometheusUrl -}}
{{- printf "--prometheus-url=%s" $b.prometheusUrl -}}
{{- else -}}
{{- fail "backend: set gmpProjectId (Managed Prometheus) or prometheusUrl" -}}
{{- end -}}
{{- end -}}

{{- define "lma.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existing-secret" -}}
{{- required "tls.existingSecret is required with tls.mode=existing-secret" .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "lma.name" .) -}}
{{- end -}}
{{- end -}}

{{- define "lma.validateTls" -}}
{{- if not (has .Values.tls.mode (list "self-signed" "helm" "existing-secret" "cert-manager")) -}}
{{- fail (printf "tls.mode must be self-signed, helm, existing-secret or cert-manager, not %q" .Values.tls.mode) -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "cert-manager") (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name is required with tls.mode=cert-manager (an Issuer or ClusterIssuer of yours)" -}}
{{- end -}}
{{- end -}}

{{/* "chart" when .Values.rules is prometheus-adapter's chart shape (default, custom, external,
existing), "file" when it is a rules file (native `metrics:` or prometheus-adapter's `rules:`),
"" when empty. */}}
{{- define "lma.rulesShape" -}}
{{- $r := .Values.rules | default dict -}}
{{- if not $r -}}
{{- else if or (hasKey $r "default") (hasKey $r "custom") (hasKey $r "external") (hasKey $r "existing") -}}
chart
{{- else -}}
file
{{- end -}}
{{- end -}}

{{/* The ConfigMap the rules are read from: the chart's own, or rules.existing. */}}
{{- define "lma.rulesConfigMap" -}}
{{- if and (eq (include "lma.rulesShape" .) "chart") .Values.rules.existing -}}
{{- .Values.rules.existing -}}
{{- else -}}
{{- include "lma.name" . }}-rules
{{- end -}}
{{- end -}}

{{/* The key of the rules file in that ConfigMap: prometheus-adapter's config.yaml for an
existing one, rules.yaml for the chart's. */}}
{{- define "lma.rulesKey" -}}
{{- if and (eq (include "lma.rulesShape" .) "chart") .Values.rules.existing -}}
config.yaml
{{- else -}}
rules.yaml
{{- end -}}
{{- end -}}

{{/* prometheus-adapter's chart default rule set (its rules.default: true), as that chart
renders it: cAdvisor container_* series per pod (seconds counters as rates, other counters as
rates, the rest summed), then every other namespaced series by <<.Resource>> (gauges summed,
counters as rates). docs/migration.md lists the PromQL. */}}
{{- define "lma.defaultRules" -}}
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  seriesFilters: []
  resources:
    overrides:
      namespace:
        resource: namespace
      pod:
        resource: pod
  name:
    matches: ^container_(.*)_seconds_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  seriesFilters:
  - isNot: ^container_.*_seconds_total$
  resources:
    overrides:
      namespace:
        resource: namespace
      pod:
        resource: pod
  name:
    matches: ^container_(.*)_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  seriesFilters:
  - isNot: ^container_.*_total$
  resources:
    overrides:
      namespace:
        resource: namespace
      pod:
        resource: pod
  name:
    matches: ^container_(.*)$
    as: ""
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>,container!="POD"}) by (<<.GroupBy>>)
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  seriesFilters:
  - isNot: .*_total$
  resources:
    template: <<.Resource>>
  name:
    matches: ""
    as: ""
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  seriesFilters:
  - isNot: .*_seconds_total
  resources:
    template: <<.Resource>>
  name:
    matches: ^(.*)_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  seriesFilters: []
  resources:
    template: <<.Resource>>
  name:
    matches: ^(.*)_seconds_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)
{{- end }}
