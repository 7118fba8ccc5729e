{{/*
A Deployment of one of the appliance's services (adapter, worker, exporter, dashboard): one container
running `appliance <name> --config /etc/appliance/adapter.yaml` from the appliance's image, with the
configuration, the spool, /tmp and the job store's URL. Called with a dict:
  root: the chart's context; name: the service (also its component label); values: its values map;
  replicas: false to leave the count to an HPA; hostPort: whether the pod binds a node port;
  container: extra container fields (ports, probes, lifecycle) as YAML; mounts, volumes: extra ones.
*/}}
{{- define "appliance.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "appliance.component" (list $root .name) }}
  labels:
    {{- include "appliance.labels" (list $root .name) | nindent 4 }}
spec:
  {{- if or (not (hasKey . "replicas")) .replicas }}
  replicas: {{ $v.replicas }}
  {{- end }}
  {{- include "appliance.strategy" (list $root (.hostPort | default false)) | nindent 2 }}
  selector:
    matchLabels:
      {{- include "appliance.selectorLabels" (list $root .name) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "appliance.labels" (list $root .name) | nindent 8 }}
      annotations:
        {{- include "appliance.configChecksum" $root | nindent 8 }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "appliance.podCommon" $root | nindent 6 }}
      securityContext:
        {{- include "appliance.podSecurityContext" (list $root dict) | nindent 8 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .name }}
          image: {{ include "appliance.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [appliance, {{ .name }}, --config, /etc/appliance/adapter.yaml]
          {{- with .container }}
          {{- . | nindent 10 }}
          {{- end }}
          env:
            {{- include "appliance.env" $root | nindent 12 }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "appliance.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "appliance.volumeMounts" $root | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "appliance.volumes" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- include "appliance.scheduling" $v | nindent 6 }}
{{- end -}}
