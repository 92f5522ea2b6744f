package admission

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// ConnectorValidator refuses ExternalConnectors that cannot work, whatever rules they come
// to run. Rules that do not exist yet are not its business: ConversationRules and
// ExternalConnectors may be applied in any order, and the RulesResolved condition reports
// what is missing.
type ConnectorValidator struct{}

var _ admission.Validator[*v1alpha1.ExternalConnector] = ConnectorValidator{}

// ValidateCreate refuses a connector that cannot work, with every reason.
func (ConnectorValidator) ValidateCreate(_ context.Context, ec *v1alpha1.ExternalConnector) (admission.Warnings, error) {
	return refuseConnector(ec)
}

// ValidateUpdate refuses a changed spec that cannot work. An unchanged spec passes: the
// operator removes its finalizer from connectors being deleted, and a connector stored
// before the webhook must still go.
func (ConnectorValidator) ValidateUpdate(_ context.Context, old, ec *v1alpha1.ExternalConnector) (admission.Warnings, error) {
	if apiequality.Semantic.DeepEqual(old.Spec, ec.Spec) {
		return nil, nil
	}
	return refuseConnector(ec)
}

// ValidateDelete never refuses.
func (ConnectorValidator) ValidateDelete(context.Context, *v1alpha1.ExternalConnector) (admission.Warnings, error) {
	return nil, nil
}

func refuseConnector(ec *v1alpha1.ExternalConnector) (admission.Warnings, error) {
	errs, warnings := CheckConnector(ec.Name, &ec.Spec)
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("ExternalConnector").GroupKind(), ec.Name, errs)
	}
	return warnings, nil
}

// CheckConnector is every reason an ExternalConnector named name cannot work whatever its
// rules say, and warnings for what it asks that will not happen. Each check is a pure
// function of one part of the spec, below.
func CheckConnector(name string, spec *v1alpha1.ExternalConnectorSpec) (field.ErrorList, []string) {
	root := field.NewPath("spec")
	var errs field.ErrorList
	var warnings []string
	for _, check := range []func() (field.ErrorList, []string){
		func() (field.ErrorList, []string) { return checkName(name, field.NewPath("metadata", "name")) },
		func() (field.ErrorList, []string) { return checkRulesSelection(spec, root), nil },
		func() (field.ErrorList, []string) { return checkIP(spec.IP, root.Child("ip")), nil },
		func() (field.ErrorList, []string) { return checkService(&spec.Service, root.Child("service")) },
		func() (field.ErrorList, []string) { return checkTLS(spec.TLS, root.Child("tls")) },
		func() (field.ErrorList, []string) {
			return checkActivities(&spec.Activities, root.Child("activities")), nil
		},
		func() (field.ErrorList, []string) { return checkPod(&spec.Pod, root.Child("pod")) },
		func() (field.ErrorList, []string) { return checkGracePeriod(spec, root.Child("gracePeriod")), nil },
	} {
		e, w := check()
		errs, warnings = append(errs, e...), append(warnings, w...)
	}
	return errs, warnings
}

// checkName: the connector's name names its Deployment or Job, its pods' label, its engine
// Secret and its Service. A label value and a Job take at most 63 characters and no dots,
// in any mode; a Service name must also start with a letter, which only server mode needs.
func checkName(name string, path *field.Path) (field.ErrorList, []string) {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(path, name, "names the connector's workload, pods and Service: "+strings.Join(msgs, "; "))}, nil
	}
	if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
		return nil, []string{fmt.Sprintf("%s: %q cannot name a Service (%s): rules in Server mode will not run (Ready=False, InvalidName); client mode is fine",
			path, name, strings.Join(msgs, "; "))}
	}
	return nil, nil
}

// checkRulesSelection: exactly one of rules (the name of a ConversationRules, which need not
// exist yet) or group.
func checkRulesSelection(spec *v1alpha1.ExternalConnectorSpec, root *field.Path) field.ErrorList {
	switch {
	case spec.Rules == "" && spec.Group == "":
		return field.ErrorList{field.Required(root.Child("rules"), "set rules (a ConversationRules name) or group")}
	case spec.Rules != "" && spec.Group != "":
		return field.ErrorList{field.Forbidden(root.Child("group"), "set rules or group, not both")}
	case spec.Rules != "":
		if msgs := apivalidation.NameIsDNSSubdomain(spec.Rules, false); len(msgs) > 0 {
			return field.ErrorList{field.Invalid(root.Child("rules"), spec.Rules, "no ConversationRules can have this name: "+strings.Join(msgs, "; "))}
		}
	}
	return nil
}

// checkIP: the override is a bind address (server mode) or a target (client mode): an IP
// address or a host name.
func checkIP(ip string, path *field.Path) field.ErrorList {
	if ip == "" || net.ParseIP(ip) != nil {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(strings.ToLower(ip)); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(path, ip, "neither an IP address nor a host name")}
	}
	return nil
}

// checkService: the type, and annotations the API server takes; externalTrafficPolicy is
// applied only to Services that reach outside the cluster.
func checkService(s *v1alpha1.ConnectorService, path *field.Path) (field.ErrorList, []string) {
	var errs field.ErrorList
	var warnings []string
	types := []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}
	if s.Type != "" && !slices.Contains(types, s.Type) {
		errs = append(errs, field.NotSupported(path.Child("type"), s.Type, types))
	}
	policies := []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}
	switch {
	case s.ExternalTrafficPolicy == "":
	case !slices.Contains(policies, s.ExternalTrafficPolicy):
		errs = append(errs, field.NotSupported(path.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, policies))
	case s.Type == "" || s.Type == corev1.ServiceTypeClusterIP:
		warnings = append(warnings, fmt.Sprintf("%s: ignored: a ClusterIP Service takes no traffic from outside the cluster; set type NodePort or LoadBalancer",
			path.Child("externalTrafficPolicy")))
	}
	errs = append(errs, apivalidation.ValidateAnnotations(s.Annotations, path.Child("annotations"))...)
	return errs, warnings
}

// checkTLS: the Secrets' names must be names a Secret can have; a server name is a host
// name, and pointless with insecureSkipVerify.
func checkTLS(t *v1alpha1.ConnectorTLS, path *field.Path) (field.ErrorList, []string) {
	if t == nil {
		return nil, nil
	}
	var errs field.ErrorList
	var warnings []string
	secret := func(name string, p *field.Path) {
		if name == "" {
			return
		}
		if msgs := apivalidation.NameIsDNSSubdomain(name, false); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p, name, "not a Secret name: "+strings.Join(msgs, "; ")))
		}
	}
	secret(t.SecretName, path.Child("secretName"))
	secret(t.ClientCASecretName, path.Child("clientCASecretName"))
	if t.ServerName != "" && net.ParseIP(t.ServerName) == nil {
		if msgs := validation.IsDNS1123Subdomain(strings.ToLower(t.ServerName)); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Child("serverName"), t.ServerName, "not a host name: "+strings.Join(msgs, "; ")))
		}
	}
	if t.ServerName != "" && t.InsecureSkipVerify {
		warnings = append(warnings, fmt.Sprintf("%s: ignored: insecureSkipVerify accepts any server certificate, whatever name it carries", path.Child("serverName")))
	}
	return errs, warnings
}

// checkActivities: a retention that would delete Activities before they are written.
func checkActivities(a *v1alpha1.ActivityPolicy, path *field.Path) field.ErrorList {
	if a.TTL != nil && a.TTL.Duration < 0 {
		return field.ErrorList{field.Invalid(path.Child("ttl"), a.TTL.Duration.String(), "must not be negative")}
	}
	return nil
}

// checkPod: what the API server would refuse in the pod template, which would leave the
// connector without pods: label and annotation syntax, requests above limits. Labels the
// operator sets itself are replaced.
func checkPod(p *v1alpha1.ConnectorPod, path *field.Path) (field.ErrorList, []string) {
	var errs field.ErrorList
	var warnings []string
	errs = append(errs, metav1validation.ValidateLabels(p.Labels, path.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(p.Annotations, path.Child("annotations"))...)
	errs = append(errs, metav1validation.ValidateLabels(p.NodeSelector, path.Child("nodeSelector"))...)
	reserved := v1alpha1.ConnectorLabels("")
	var replaced []string
	for k := range p.Labels {
		if _, ok := reserved[k]; ok {
			replaced = append(replaced, k)
		}
	}
	slices.Sort(replaced)
	for _, k := range replaced {
		warnings = append(warnings, fmt.Sprintf("%s: ignored: the operator sets this label on connector pods itself", path.Child("labels").Key(k)))
	}
	res := path.Child("resources")
	for _, name := range sortedResourceNames(p.Resources.Requests) {
		req := p.Resources.Requests[name]
		if req.Sign() < 0 {
			errs = append(errs, field.Invalid(res.Child("requests").Key(string(name)), req.String(), "must not be negative"))
			continue
		}
		if limit, ok := p.Resources.Limits[name]; ok && req.Cmp(limit) > 0 {
			errs = append(errs, field.Invalid(res.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to the limit %s", limit.String())))
		}
	}
	for _, name := range sortedResourceNames(p.Resources.Limits) {
		if limit := p.Resources.Limits[name]; limit.Sign() < 0 {
			errs = append(errs, field.Invalid(res.Child("limits").Key(string(name)), limit.String(), "must not be negative"))
		}
	}
	return errs, warnings
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// checkGracePeriod: a negative grace period is not one the pods can be given.
func checkGracePeriod(spec *v1alpha1.ExternalConnectorSpec, path *field.Path) field.ErrorList {
	if g := spec.GracePeriod; g != nil && g.Duration < 0 {
		return field.ErrorList{field.Invalid(path, g.Duration.String(), "must not be negative")}
	}
	return nil
}
