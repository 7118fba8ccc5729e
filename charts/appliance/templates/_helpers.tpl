{{/* Names, labels, images, security contexts and the configuration file, shared by the templates. */}}

{{- define "appliance.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: <fullname>-<component>. Call with (list $ "worker"). */}}
{{- define "appliance.component" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "appliance.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: stable across upgrades. Call with (list $ "worker"). */}}
{{- define "appliance.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every label of one component's objects. Call with (list $ "worker"). */}}
{{- define "appliance.labels" -}}
{{- $root := index . 0 -}}
{{ include "appliance.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: appliance
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "appliance.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "appliance.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "appliance.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "appliance.configName" -}}
{{- include "appliance.component" (list . "config") -}}
{{- end -}}

{{- define "appliance.spoolClaim" -}}
{{- .Values.spool.existingClaim | default (include "appliance.component" (list . "spool")) -}}
{{- end -}}

{{/*
Triton's restricted APIs (model control, shared memory, logging, trace: appliance.triton_access) answer
only requests carrying the key of this Secret, made once and kept across upgrades. The worker reads it
from the file the Secret's volume puts at appliance.tritonKeyFile.
*/}}
{{- define "appliance.tritonKeyed" -}}
{{- if and .Values.triton.enabled .Values.triton.restrictApis -}}true{{- end -}}
{{- end -}}

{{- define "appliance.tritonKeySecret" -}}
{{- include "appliance.component" (list . "triton-key") -}}
{{- end -}}

{{- define "appliance.tritonKeyFile" -}}/run/secrets/triton/key{{- end -}}

{{- define "appliance.tritonKeyVolume" -}}
- name: triton-key
  secret:
    secretName: {{ include "appliance.tritonKeySecret" . }}
    defaultMode: 0440
    items:
      - key: key
        path: key
{{- end -}}

{{- define "appliance.tritonKeyMount" -}}
- name: triton-key
  mountPath: {{ include "appliance.tritonKeyFile" . | dir }}
  readOnly: true
{{- end -}}

{{- define "appliance.postgresql.bundled" -}}
{{- if and (eq .Values.database.type "postgresql") (not .Values.database.external.url) -}}true{{- end -}}
{{- end -}}

{{/* The job store's storage.database-url: the external one as given, else the bundled server's. No password:
libpq takes it from PGPASSWORD (appliance.env). */}}
{{- define "appliance.databaseUrl" -}}
{{- if .Values.database.external.url -}}
{{- .Values.database.external.url -}}
{{- else -}}
{{- $pg := .Values.database.bundled -}}
{{- printf "postgresql://%s@%s:5432/%s" $pg.user (include "appliance.component" (list . "postgresql")) $pg.database -}}
{{- end -}}
{{- end -}}

{{/* The pod-level security context (runAsNonRoot, fsGroup, seccomp). Call with (list $ overrides). */}}
{{- define "appliance.podSecurityContext" -}}
{{- $root := index . 0 -}}
{{- toYaml (mergeOverwrite (deepCopy $root.Values.podSecurityContext) (index . 1)) -}}
{{- end -}}

{{- define "appliance.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* The pod-spec fields every pod of the chart shares. */}}
{{- define "appliance.podCommon" -}}
serviceAccountName: {{ include "appliance.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling of one component: nodeSelector, tolerations, affinity. Call with a values map. */}}
{{- define "appliance.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The configuration file: the values' config with the keys the chart owns set from its other values.
Rendered into the ConfigMap, and into the migrations hook's own copy.
*/}}
{{- define "appliance.configFile" -}}
{{- $config := deepCopy .Values.config -}}
{{- $dicom := get $config "dicom" | default (dict) -}}
{{- $scp := get $dicom "scp" | default (dict) -}}
{{- $_ := set $scp "port" (int .Values.adapter.containerPort) -}}
{{- $_ = set $scp "bind-address" "0.0.0.0" -}}
{{- $_ = set $dicom "scp" $scp -}}
{{- $_ = set $config "dicom" $dicom -}}
{{- $storage := get $config "storage" | default (dict) -}}
{{- $_ = set $storage "root" .Values.spool.mountPath -}}
{{- if eq .Values.database.type "postgresql" -}}
{{- $_ = set $storage "database-url" (include "appliance.databaseUrl" .) -}}
{{- end -}}
{{- $_ = set $config "storage" $storage -}}
{{- if .Values.triton.enabled -}}
{{- $worker := get $config "worker" | default (dict) -}}
{{- $triton := include "appliance.component" (list . "triton") -}}
{{- $urls := dict "http-url" (printf "%s:%d" $triton (int .Values.triton.ports.http)) "grpc-url" (printf "%s:%d" $triton (int .Values.triton.ports.grpc)) -}}
{{- if include "appliance.tritonKeyed" . -}}
{{- $_ = set $urls "key-file" (include "appliance.tritonKeyFile" .) -}}
{{- end -}}
{{- $_ = set $worker "triton" $urls -}}
{{- $_ = set $config "worker" $worker -}}
{{- end -}}
{{- if .Values.dashboard.enabled -}}
{{- $dashboard := get $config "dashboard" | default (dict) -}}
{{- $_ = set $dashboard "bind-address" "0.0.0.0" -}}
{{- $_ = set $dashboard "port" (int .Values.dashboard.port) -}}
{{- $_ = set $dashboard "users" .Values.dashboard.users -}}
{{- if .Values.dashboard.tls.existingSecret -}}
{{- $_ = set $dashboard "tls-certificate" "/etc/appliance-tls/tls.crt" -}}
{{- $_ = set $dashboard "tls-key" "/etc/appliance-tls/tls.key" -}}
{{- end -}}
{{- $_ = set $config "dashboard" $dashboard -}}
{{- end -}}
# The appliance's configuration (docs/adapter.md), rendered by the chart from its values.
# The job store's password is not here: libpq reads it from PGPASSWORD, set from a Secret.
{{ toYaml $config }}
{{- end -}}

{{/* Environment of every appliance container: the job store's password from its Secret (libpq's
PGPASSWORD; none for an external database without existingSecret), HOME on /tmp. */}}
{{- define "appliance.env" -}}
- name: HOME
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- $db := .Values.database }}
{{- if and (eq $db.type "postgresql") (or (include "appliance.postgresql.bundled" .) $db.external.existingSecret) }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      {{- if include "appliance.postgresql.bundled" . }}
      name: {{ include "appliance.component" (list . "postgresql") }}
      key: password
      {{- else }}
      name: {{ $db.external.existingSecret }}
      key: {{ $db.external.passwordKey }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Volumes every appliance pod mounts: the configuration, the spool, /tmp. */}}
{{- define "appliance.volumes" -}}
- name: config
  configMap:
    name: {{ include "appliance.configName" . }}
- name: spool
  persistentVolumeClaim:
    claimName: {{ include "appliance.spoolClaim" . }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{- define "appliance.volumeMounts" -}}
- name: config
  mountPath: /etc/appliance
  readOnly: true
- name: spool
  mountPath: {{ .Values.spool.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* A restart of every pod when the configuration changes. */}}
{{- define "appliance.configChecksum" -}}
checksum/config: {{ include "appliance.configFile" . | sha256sum }}
{{- end -}}

{{/*
Guards: values that cannot work stop the render with the reason and the fix. Included once, from the
ConfigMap's template.
*/}}
{{- define "appliance.guards" -}}
{{- $v := .Values -}}
{{- if eq $v.database.type "sqlite" -}}
{{- range $name := list "adapter" "worker" "exporter" -}}
{{- $replicas := int (get (get $v $name) "replicas") -}}
{{- if gt $replicas 1 -}}
{{- fail (printf "appliance: database.type sqlite allows one replica of each service, %s.replicas is %d: a SQLite job store is one file that one host's processes share. Set %s.replicas: 1, or database.type: postgresql (bundled or external) for more" $name $replicas $name) -}}
{{- end -}}
{{- end -}}
{{- if $v.worker.autoscaling.enabled -}}
{{- fail "appliance: database.type sqlite allows one replica of each service, and worker.autoscaling.enabled would add workers. Set worker.autoscaling.enabled: false, or database.type: postgresql" -}}
{{- end -}}
{{- end -}}
{{- if eq $v.adapter.service.type "NodePort" -}}
{{- $range := splitList "-" $v.adapter.service.nodePortRange -}}
{{- $low := int (index $range 0) -}}
{{- $high := int (index $range 1) -}}
{{- $port := int $v.adapter.service.nodePort -}}
{{- if or (lt $port $low) (gt $port $high) -}}
{{- fail (printf "appliance: adapter.service.nodePort %d is outside the cluster's NodePort range %s (adapter.service.nodePortRange, kube-apiserver --service-node-port-range); pick a port inside it, e.g. %d" $port $v.adapter.service.nodePortRange (add $low 104)) -}}
{{- end -}}
{{- end -}}
{{- if regexMatch "^[a-z]+://[^/@]*:[^/@]*@" ($v.database.external.url | default "") -}}
{{- fail "appliance: database.external.url holds a password, which would land in a ConfigMap. Give the URL without it (postgresql://USER@HOST:PORT/DATABASE) and the password in a Secret: database.external.existingSecret and passwordKey" -}}
{{- end -}}
{{- if and $v.triton.enabled (eq $v.triton.mode "gpu") (not $v.triton.gpu.resourceName) -}}
{{- fail "appliance: triton.mode gpu needs triton.gpu.resourceName, the extended resource the device plugin advertises (nvidia.com/gpu for NVIDIA's); set it, or triton.mode: cpu" -}}
{{- end -}}
{{- if and $v.dashboard.enabled (not $v.dashboard.users) -}}
{{- fail "appliance: dashboard.enabled needs at least one entry in dashboard.users (name, role, password-hash from 'appliance dashboard-password'): the dashboard refuses to start without one" -}}
{{- end -}}
{{- $scp := $v.config.dicom.scp | default (dict) -}}
{{- if and (get $scp "reject-unknown-sources") (not (get $scp "sources")) -}}
{{- fail "appliance: config.dicom.scp.reject-unknown-sources is true but config.dicom.scp.sources is empty: nobody could send a study. List the PACS and modalities (host-ip, ae-title), or set reject-unknown-sources: false" -}}
{{- end -}}
{{- end -}}

{{/*
Deployment strategy. Recreate where two pods of a component must not overlap: on SQLite (one process
per role holds the job store's lock) and with a hostPort (the new pod could not bind the node's port).
Else a surge pod first, none taken away before it is ready. Call with (list $ hostPortEnabled).
*/}}
{{- define "appliance.strategy" -}}
{{- $root := index . 0 -}}
{{- if or (eq $root.Values.database.type "sqlite") (index . 1) -}}
strategy:
  type: Recreate
{{- else -}}
strategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: 0
    maxSurge: 1
{{- end -}}
{{- end -}}

{{- define "appliance.postgresql.env" -}}
- name: PATH
  value: {{ printf "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" .Values.database.bundled.binDir }}
# A folder below the volume's root: initdb refuses a folder holding lost+found.
- name: PGDATA
  value: /var/lib/postgresql/data/pgdata
- name: POSTGRES_USER
  value: {{ .Values.database.bundled.user | quote }}
- name: POSTGRES_DB
  value: {{ .Values.database.bundled.database | quote }}
{{- end -}}

{{- define "appliance.postgresql.mounts" -}}
- name: data
  mountPath: /var/lib/postgresql/data
- name: config
  mountPath: /etc/postgresql-chart
  readOnly: true
- name: secret
  mountPath: /run/secrets/postgresql
  readOnly: true
- name: run
  mountPath: /var/run/postgresql
- name: tmp
  mountPath: /tmp
{{- end -}}
