{{/*
Names, labels and images shared by every template. Names are truncated to 63 characters (the
limit of a DNS label and of a label value) with any trailing "-" removed.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "airt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's objects: fullnameOverride, else "<release>-<chart>" (only the
release name when it already contains the chart's name).
*/}}
{{- define "airt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>", still at most 63 characters. Call with (list $ "suffix"). */}}
{{- define "airt.suffixed" -}}
{{- $top := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $base := include "airt.fullname" $top | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "airt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels a selector uses: never change them after the first install. */}}
{{- define "airt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The standard labels, on every object the chart creates. */}}
{{- define "airt.labels" -}}
helm.sh/chart: {{ include "airt.chart" . }}
{{ include "airt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: airt
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The operator's labels: the standard ones and its component. */}}
{{- define "airt.operatorLabels" -}}
{{ include "airt.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "airt.operatorSelectorLabels" -}}
{{ include "airt.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "airt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "airt.suffixed" (list . "operator")) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ClusterKopfPeering the operator replicas join: peering.name, else the release's full name. */}}
{{- define "airt.peeringName" -}}
{{- default (include "airt.fullname" .) .Values.peering.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
An image reference from {repository, tag, digest}: "repo@sha256:..." when a digest is set
(the tag is then informational only and left out), else "repo:tag" with the chart's appVersion
as the default tag. Call with (list $ .Values.images.operator).
*/}}
{{- define "airt.image" -}}
{{- $top := index . 0 -}}
{{- $img := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $top.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The documents to render for one custom resource of the given "group/version/Kind", as a JSON
list of the extra annotations of each. Call with (list $ "airt.dev/v1alpha1/InferenceRuntime"
"<name>") and render the object once per element:
- [{}]: the API server serves the kind, an ordinary release object;
- [post-install hook]: it does not yet (a first install): created after this release's CRDs;
- [{}, pre-upgrade hook]: the upgrade that follows such an install (the live object still says
  post-install). Helm adopts the object into the release but computes a custom resource's patch
  from the rendered manifests only, so the adopting upgrade alone would never apply changed
  values; the pre-upgrade hook of the same name replaces it with what this upgrade renders
  first. This happens once: from then on the object is in the release's manifest.
*/}}
{{- define "airt.crDocuments" -}}
{{- $top := index . 0 -}}
{{- $gvk := index . 1 -}}
{{- $name := index . 2 -}}
{{- $owner := dict "meta.helm.sh/release-name" $top.Release.Name "meta.helm.sh/release-namespace" $top.Release.Namespace -}}
{{- if not ($top.Capabilities.APIVersions.Has $gvk) -}}
{{- toJson (list (merge (dict "helm.sh/hook" "post-install" "helm.sh/hook-weight" "0") $owner)) -}}
{{- else -}}
{{- $parts := splitList "/" $gvk -}}
{{- $live := lookup (printf "%s/%s" (index $parts 0) (index $parts 1)) (index $parts 2) "" $name -}}
{{- $hook := (($live.metadata | default dict).annotations | default dict) | dig "helm.sh/hook" "" -}}
{{- if and $top.Release.IsUpgrade (eq $hook "post-install") -}}
{{- toJson (list (dict) (merge (dict "helm.sh/hook" "pre-upgrade" "helm.sh/hook-weight" "0") $owner)) -}}
{{- else -}}
{{- toJson (list (dict)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Who owns an object that already exists, when it is not this release: "" when Helm would adopt
it into this release as it is (its ownership metadata names this release), else a phrase for
the preflight's message. Call with (list $ object), the object from `lookup`.
*/}}
{{- define "airt.foreignOwner" -}}
{{- $top := index . 0 -}}
{{- $meta := (index . 1).metadata -}}
{{- $ann := $meta.annotations | default dict -}}
{{- $labels := $meta.labels | default dict -}}
{{- $name := index $ann "meta.helm.sh/release-name" | default "" -}}
{{- $ns := index $ann "meta.helm.sh/release-namespace" | default "" -}}
{{- if or (not $name) (ne (index $labels "app.kubernetes.io/managed-by" | default "") "Helm") -}}
created outside Helm
{{- else if or (ne $name $top.Release.Name) (ne $ns $top.Release.Namespace) -}}
owned by the release {{ $name }} in namespace {{ $ns }}
{{- end -}}
{{- end -}}
