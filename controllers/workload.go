package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/parley-dev/parley/api/v1alpha1"
)

const (
	// JobBackoffLimit is how many times a client-mode pod is retried.
	JobBackoffLimit = 3
)

// Volume names in connector pods.
const (
	volumeEngine = "engine"
	volumeTLS    = "tls"
	volumeTLSCA  = "tls-ca"
)

// target is what the connector serves or dials once its rules are resolved and the
// connector's overrides applied.
type target struct {
	rules     v1alpha1.RulesRef
	mode      v1alpha1.Mode
	transport v1alpha1.Transport
	ip        string
	port      int32
}

func (t target) protocol() corev1.Protocol {
	if t.transport == v1alpha1.TransportUDP {
		return corev1.ProtocolUDP
	}
	return corev1.ProtocolTCP
}

// endpoint is where third parties reach a server-mode connector (its Service), or the peer a
// client-mode connector dials.
func (t target) endpoint(ec *v1alpha1.ExternalConnector) string {
	if t.mode == v1alpha1.ModeClient {
		return net.JoinHostPort(t.ip, strconv.Itoa(int(t.port))) + "/" + string(t.protocol())
	}
	return fmt.Sprintf("%s.%s.svc:%d/%s", ec.Name, ec.Namespace, t.port, t.protocol())
}

// gracePeriod is spec.gracePeriod or its default.
func gracePeriod(ec *v1alpha1.ExternalConnector) time.Duration {
	if ec.Spec.GracePeriod != nil && ec.Spec.GracePeriod.Duration >= 0 {
		return ec.Spec.GracePeriod.Duration
	}
	return v1alpha1.DefaultGracePeriod
}

// defaultResources apply when spec.pod.resources is empty: a connector is small, and a limit
// keeps a flood of connections from taking the node's memory.
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
}

// lowPortNeedsSysctl says whether the pod must lower ip_unprivileged_port_start to bind port
// as a non-root user. On the host network the sysctl is not namespaced, so it is not set.
func lowPortNeedsSysctl(ec *v1alpha1.ExternalConnector, t target) bool {
	return t.mode == v1alpha1.ModeServer && t.port < 1024 && !ec.Spec.Pod.HostNetwork
}

// connectorArgs run `parley connector`. On the host network its metrics port (9090) would be
// the node's, which a second connector on the node could not bind: metrics are off there.
func connectorArgs(hostNetwork bool) []string {
	if hostNetwork {
		return []string{"connector", "--metrics-bind-address=0"}
	}
	return []string{"connector"}
}

// podTemplate is the pod of a connector: `parley connector` with its engine credentials and
// TLS material, locked down as docs/design.md §7 says.
func podTemplate(ec *v1alpha1.ExternalConnector, t target, d Defaults) corev1.PodTemplateSpec {
	pod := ec.Spec.Pod
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	for k, v := range v1alpha1.ConnectorLabels(ec.Name) {
		labels[k] = v
	}
	var annotations map[string]string
	if len(pod.Annotations) > 0 {
		annotations = map[string]string{}
		for k, v := range pod.Annotations {
			annotations[k] = v
		}
	}

	resources := pod.Resources
	if len(resources.Requests) == 0 && len(resources.Limits) == 0 && len(resources.Claims) == 0 {
		resources = defaultResources()
	}
	port := corev1.ContainerPort{Name: v1alpha1.PortName, ContainerPort: t.port, Protocol: t.protocol()}
	if pod.HostNetwork {
		// The API would default it; owning it means it goes away with hostNetwork.
		port.HostPort = t.port
	}
	secretVolume := func(name, secret string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, DefaultMode: to[int32](0o440)}}}
	}
	volumes := []corev1.Volume{secretVolume(volumeEngine, v1alpha1.EngineSecretName(ec.Name))}
	mounts := []corev1.VolumeMount{{Name: volumeEngine, MountPath: v1alpha1.EngineMountPath, ReadOnly: true}}
	if tls := ec.Spec.TLS; tls != nil {
		if tls.SecretName != "" {
			volumes = append(volumes, secretVolume(volumeTLS, tls.SecretName))
			mounts = append(mounts, corev1.VolumeMount{Name: volumeTLS, MountPath: v1alpha1.TLSMountPath, ReadOnly: true})
		}
		if tls.ClientCASecretName != "" {
			volumes = append(volumes, secretVolume(volumeTLSCA, tls.ClientCASecretName))
			mounts = append(mounts, corev1.VolumeMount{Name: volumeTLSCA, MountPath: v1alpha1.TLSCAMountPath, ReadOnly: true})
		}
	}

	security := &corev1.PodSecurityContext{
		RunAsNonRoot:   to(true),
		RunAsUser:      to[int64](v1alpha1.NonRootID),
		RunAsGroup:     to[int64](v1alpha1.NonRootID),
		FSGroup:        to[int64](v1alpha1.NonRootID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if lowPortNeedsSysctl(ec, t) {
		security.Sysctls = []corev1.Sysctl{{Name: v1alpha1.UnprivilegedSysctl, Value: strconv.Itoa(int(t.port))}}
	}
	// The metrics port serves /readyz too: a pod is ready once it serves and is connected to
	// the engine, so the Deployment's ready replicas (and the connector's Ready) mean that.
	// On the host network the port is off (connectorArgs), and so is the probe.
	ports := []corev1.ContainerPort{port}
	var readiness *corev1.Probe
	if !pod.HostNetwork {
		ports = append(ports, corev1.ContainerPort{Name: v1alpha1.MetricsPortName, ContainerPort: v1alpha1.MetricsPort, Protocol: corev1.ProtocolTCP})
		readiness = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: v1alpha1.ReadinessPath, Port: intstr.FromString(v1alpha1.MetricsPortName)}},
			PeriodSeconds: 5, FailureThreshold: 2, TimeoutSeconds: 2,
		}
	}
	dns := corev1.DNSClusterFirst
	if pod.HostNetwork {
		dns = corev1.DNSClusterFirstWithHostNet
	}
	grace := int64(math.Ceil(gracePeriod(ec).Seconds()))

	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  v1alpha1.ContainerName,
				Image: d.ConnectorImage,
				Args:  connectorArgs(pod.HostNetwork),
				Env: []corev1.EnvVar{
					{Name: v1alpha1.EnvConnector, Value: ec.Name},
					{Name: v1alpha1.EnvNamespace, Value: ec.Namespace},
					{Name: v1alpha1.EnvEngineAddress, Value: d.EngineAddress},
					// The hostname is the node's on the host network: say which pod this is.
					{Name: v1alpha1.EnvPodName, ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
				},
				Ports:          ports,
				ReadinessProbe: readiness,
				Resources:      resources,
				VolumeMounts:   mounts,
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot:             to(true),
					AllowPrivilegeEscalation: to(false),
					ReadOnlyRootFilesystem:   to(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes:                       volumes,
			SecurityContext:               security,
			AutomountServiceAccountToken:  to(false),
			EnableServiceLinks:            to(false),
			HostNetwork:                   pod.HostNetwork,
			DNSPolicy:                     dns,
			NodeSelector:                  pod.NodeSelector,
			Tolerations:                   pod.Tolerations,
			Affinity:                      pod.Affinity,
			TerminationGracePeriodSeconds: &grace,
		},
	}
}

// controllerRef makes ec the controlling owner of what it runs.
func controllerRef(ec *v1alpha1.ExternalConnector) metav1.OwnerReference {
	return *metav1.NewControllerRef(ec, v1alpha1.GroupVersion.WithKind("ExternalConnector"))
}

func objectMeta(ec *v1alpha1.ExternalConnector, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: ec.Namespace,
		Labels:          v1alpha1.ConnectorLabels(ec.Name),
		OwnerReferences: []metav1.OwnerReference{controllerRef(ec)},
	}
}

// deploymentFor is the Deployment of a server-mode connector.
func deploymentFor(ec *v1alpha1.ExternalConnector, t target, d Defaults) *appsv1.Deployment {
	strategy := appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType}
	if ec.Spec.Pod.HostNetwork {
		// A new pod cannot bind the port on a node where the old one still holds it.
		strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{
			MaxSurge:       to(intstr.FromInt32(0)),
			MaxUnavailable: to(intstr.FromInt32(1)),
		}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(ec, ec.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: to(replicas(ec)),
			Selector: &metav1.LabelSelector{MatchLabels: v1alpha1.ConnectorLabels(ec.Name)},
			Template: podTemplate(ec, t, d),
			Strategy: strategy,
		},
	}
}

// jobFor is the Job of a client-mode connector: it runs until every conversation has ended.
func jobFor(ec *v1alpha1.ExternalConnector, t target, d Defaults) *batchv1.Job {
	tmpl := podTemplate(ec, t, d)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	job := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: objectMeta(ec, ec.Name),
		Spec: batchv1.JobSpec{
			BackoffLimit: to[int32](JobBackoffLimit),
			Template:     tmpl,
		},
	}
	job.Annotations = map[string]string{
		v1alpha1.AnnotationTemplateHash:        specHash(job.Spec),
		v1alpha1.AnnotationConnectorGeneration: strconv.FormatInt(ec.Generation, 10),
	}
	return job
}

// serviceFor is the Service in front of a server-mode connector.
func serviceFor(ec *v1alpha1.ExternalConnector, t target) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(ec, ec.Name),
		Spec: corev1.ServiceSpec{
			Type:     serviceType(ec),
			Selector: v1alpha1.ConnectorLabels(ec.Name),
			Ports: []corev1.ServicePort{{
				Name: v1alpha1.PortName, Port: t.port, Protocol: t.protocol(), TargetPort: intstr.FromString(v1alpha1.PortName),
			}},
		},
	}
	if len(ec.Spec.Service.Annotations) > 0 {
		svc.Annotations = ec.Spec.Service.Annotations
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		svc.Spec.ExternalTrafficPolicy = ec.Spec.Service.ExternalTrafficPolicy
	}
	return svc
}

func serviceType(ec *v1alpha1.ExternalConnector) corev1.ServiceType {
	if ec.Spec.Service.Type == "" {
		return corev1.ServiceTypeClusterIP
	}
	return ec.Spec.Service.Type
}

// specHash is a stable digest of a spec, for comparing what is with what should be.
func specHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err)) // plain API data always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// to points at a copy of v.
func to[T any](v T) *T { return &v }

// replicas is spec.replicas or its default, 1.
func replicas(ec *v1alpha1.ExternalConnector) int32 {
	if ec.Spec.Replicas == nil {
		return 1
	}
	return *ec.Spec.Replicas
}

// convert turns an API object into another shape with the same JSON (a typed object into its
// apply configuration and back).
func convert(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}
