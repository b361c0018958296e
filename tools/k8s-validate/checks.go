package main

// Checks beyond decoding: what the API server's validation (or a CRD's OpenAPI schema)
// would refuse at apply time, for the kinds Keyward's manifests use, and references
// between the objects of one input.

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (o *object) errs(list field.ErrorList) {
	for _, e := range list {
		o.problems = append(o.problems, e.Error())
	}
}

func (o *object) strs(path *field.Path, value string, msgs []string) {
	for _, m := range msgs {
		o.problems = append(o.problems, field.Invalid(path, value, m).Error())
	}
}

// clusterScoped lists the built-in kinds (GroupKind strings) that live outside namespaces.
var clusterScoped = map[string]bool{
	"Namespace": true, "Node": true, "PersistentVolume": true, "ComponentStatus": true,
	"ClusterRole.rbac.authorization.k8s.io": true, "ClusterRoleBinding.rbac.authorization.k8s.io": true,
	"StorageClass.storage.k8s.io": true, "CSIDriver.storage.k8s.io": true, "CSINode.storage.k8s.io": true,
	"VolumeAttachment.storage.k8s.io": true, "VolumeAttributesClass.storage.k8s.io": true,
	"PriorityClass.scheduling.k8s.io": true, "RuntimeClass.node.k8s.io": true, "IngressClass.networking.k8s.io": true,
	"IPAddress.networking.k8s.io": true, "ServiceCIDR.networking.k8s.io": true,
	"MutatingWebhookConfiguration.admissionregistration.k8s.io":     true,
	"ValidatingWebhookConfiguration.admissionregistration.k8s.io":   true,
	"ValidatingAdmissionPolicy.admissionregistration.k8s.io":        true,
	"ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io": true,
	"MutatingAdmissionPolicy.admissionregistration.k8s.io":          true,
	"MutatingAdmissionPolicyBinding.admissionregistration.k8s.io":   true,
	"CertificateSigningRequest.certificates.k8s.io":                 true,
	"ClusterTrustBundle.certificates.k8s.io":                        true,
	"FlowSchema.flowcontrol.apiserver.k8s.io":                       true,
	"PriorityLevelConfiguration.flowcontrol.apiserver.k8s.io":       true,
	"DeviceClass.resource.k8s.io":                                   true,
	"ResourceSlice.resource.k8s.io":                                 true,
	"TokenReview.authentication.k8s.io":                             true,
	"SelfSubjectReview.authentication.k8s.io":                       true,
	"SubjectAccessReview.authorization.k8s.io":                      true,
	"SelfSubjectAccessReview.authorization.k8s.io":                  true,
	"SelfSubjectRulesReview.authorization.k8s.io":                   true,
}

// checkObject runs the per-object checks of o's kind.
func checkObject(o *object) {
	accessor, ok := o.obj.(metav1.Object)
	if !ok {
		return
	}
	nameFn := apivalidation.NameIsDNSSubdomain
	if _, isService := o.obj.(*corev1.Service); isService {
		nameFn = apivalidation.NameIsDNS1035Label
	}
	// A manifest may leave a namespaced object's namespace to the client (helm, kubectl):
	// validate it as if it were in "default" then.
	meta := &metav1.ObjectMeta{
		Name:            accessor.GetName(),
		GenerateName:    accessor.GetGenerateName(),
		Namespace:       accessor.GetNamespace(),
		Labels:          accessor.GetLabels(),
		Annotations:     accessor.GetAnnotations(),
		OwnerReferences: accessor.GetOwnerReferences(),
		Finalizers:      accessor.GetFinalizers(),
	}
	namespaced := !clusterScoped[o.gvk.GroupKind().String()]
	if namespaced && meta.Namespace == "" {
		meta.Namespace = "default"
	}
	o.errs(apivalidation.ValidateObjectMeta(meta, namespaced, nameFn, field.NewPath("metadata")))

	switch v := o.obj.(type) {
	case *appsv1.Deployment:
		checkSelectorOwnsTemplate(o, v.Spec.Selector, &v.Spec.Template, field.NewPath("spec"))
		if v.Spec.Replicas != nil && *v.Spec.Replicas < 0 {
			o.errs(field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), *v.Spec.Replicas, "must be >= 0")})
		}
		checkPodSpec(o, &v.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))
	case *appsv1.StatefulSet:
		checkSelectorOwnsTemplate(o, v.Spec.Selector, &v.Spec.Template, field.NewPath("spec"))
		checkPodSpec(o, &v.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))
	case *appsv1.DaemonSet:
		checkSelectorOwnsTemplate(o, v.Spec.Selector, &v.Spec.Template, field.NewPath("spec"))
		checkPodSpec(o, &v.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))
	case *appsv1.ReplicaSet:
		checkSelectorOwnsTemplate(o, v.Spec.Selector, &v.Spec.Template, field.NewPath("spec"))
		checkPodSpec(o, &v.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))
	case *batchv1.Job:
		checkPodSpec(o, &v.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))
	case *batchv1.CronJob:
		checkPodSpec(o, &v.Spec.JobTemplate.Spec.Template.Spec, field.NewPath("spec", "jobTemplate", "spec", "template", "spec"))
	case *corev1.Pod:
		checkPodSpec(o, &v.Spec, field.NewPath("spec"))
	case *corev1.Service:
		checkService(o, v)
	case *corev1.ConfigMap:
		for key := range v.Data {
			o.strs(field.NewPath("data").Key(key), key, validation.IsConfigMapKey(key))
			if _, dup := v.BinaryData[key]; dup {
				o.errs(field.ErrorList{field.Duplicate(field.NewPath("binaryData").Key(key), key)})
			}
		}
		for key := range v.BinaryData {
			o.strs(field.NewPath("binaryData").Key(key), key, validation.IsConfigMapKey(key))
		}
	case *corev1.Secret:
		for key := range v.Data {
			o.strs(field.NewPath("data").Key(key), key, validation.IsConfigMapKey(key))
		}
		for key := range v.StringData {
			o.strs(field.NewPath("stringData").Key(key), key, validation.IsConfigMapKey(key))
		}
	case *corev1.ServiceAccount:
		// metadata only
	case *autoscalingv2.HorizontalPodAutoscaler:
		checkHPA(o, v)
	case *policyv1.PodDisruptionBudget:
		path := field.NewPath("spec")
		if (v.Spec.MinAvailable == nil) == (v.Spec.MaxUnavailable == nil) {
			o.errs(field.ErrorList{field.Invalid(path, "", "exactly one of minAvailable and maxUnavailable must be set")})
		}
		checkIntOrPercent(o, v.Spec.MinAvailable, path.Child("minAvailable"))
		checkIntOrPercent(o, v.Spec.MaxUnavailable, path.Child("maxUnavailable"))
		checkSelector(o, v.Spec.Selector, path.Child("selector"), true)
	case *networkingv1.NetworkPolicy:
		checkNetworkPolicy(o, v)
	case *monitoringv1.ServiceMonitor:
		checkServiceMonitor(o, v)
	case *monitoringv1.PrometheusRule:
		checkPrometheusRule(o, v)
	}
}

func checkSelector(o *object, selector *metav1.LabelSelector, path *field.Path, required bool) {
	if selector == nil {
		if required {
			o.errs(field.ErrorList{field.Required(path, "")})
		}
		return
	}
	o.errs(metav1validation.ValidateLabelSelector(selector, metav1validation.LabelSelectorValidationOptions{}, path))
	if required && len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0 {
		o.errs(field.ErrorList{field.Invalid(path, "{}", "an empty selector selects everything; name labels")})
	}
}

func checkSelectorOwnsTemplate(o *object, selector *metav1.LabelSelector, template *corev1.PodTemplateSpec, spec *field.Path) {
	checkSelector(o, selector, spec.Child("selector"), true)
	o.errs(metav1validation.ValidateLabels(template.Labels, spec.Child("template", "metadata", "labels")))
	o.errs(apivalidation.ValidateAnnotations(template.Annotations, spec.Child("template", "metadata", "annotations")))
	if selector == nil {
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return // reported by checkSelector
	}
	if !sel.Matches(labels.Set(template.Labels)) {
		o.errs(field.ErrorList{field.Invalid(spec.Child("template", "metadata", "labels"), template.Labels, "`selector` does not match template `labels`")})
	}
}

func checkIntOrPercent(o *object, v *intstr.IntOrString, path *field.Path) {
	if v == nil {
		return
	}
	if v.Type == intstr.Int && v.IntVal < 0 {
		o.errs(field.ErrorList{field.Invalid(path, v.IntVal, "must be >= 0")})
	}
	if v.Type == intstr.String {
		o.strs(path, v.StrVal, validation.IsValidPercent(v.StrVal))
	}
}

func checkPort(o *object, port int32, path *field.Path) {
	o.strs(path, fmt.Sprint(port), validation.IsValidPortNum(int(port)))
}

func checkPodSpec(o *object, spec *corev1.PodSpec, path *field.Path) {
	volumes := map[string]bool{}
	for i, v := range spec.Volumes {
		p := path.Child("volumes").Index(i)
		o.strs(p.Child("name"), v.Name, validation.IsDNS1123Label(v.Name))
		if volumes[v.Name] {
			o.errs(field.ErrorList{field.Duplicate(p.Child("name"), v.Name)})
		}
		volumes[v.Name] = true
		if n := countVolumeSources(v.VolumeSource); n != 1 {
			o.errs(field.ErrorList{field.Invalid(p, v.Name, fmt.Sprintf("must have exactly one volume source, has %d", n))})
		}
	}
	names := map[string]bool{}
	check := func(c *corev1.Container, p *field.Path, probes bool) {
		o.strs(p.Child("name"), c.Name, validation.IsDNS1123Label(c.Name))
		if names[c.Name] {
			o.errs(field.ErrorList{field.Duplicate(p.Child("name"), c.Name)})
		}
		names[c.Name] = true
		if c.Image == "" {
			o.errs(field.ErrorList{field.Required(p.Child("image"), "")})
		}
		portNames := map[string]bool{}
		for j, port := range c.Ports {
			pp := p.Child("ports").Index(j)
			checkPort(o, port.ContainerPort, pp.Child("containerPort"))
			if port.Name != "" {
				o.strs(pp.Child("name"), port.Name, validation.IsValidPortName(port.Name))
				if portNames[port.Name] {
					o.errs(field.ErrorList{field.Duplicate(pp.Child("name"), port.Name)})
				}
				portNames[port.Name] = true
			}
		}
		for j, env := range c.Env {
			ep := p.Child("env").Index(j)
			o.strs(ep.Child("name"), env.Name, validation.IsRelaxedEnvVarName(env.Name))
			if env.ValueFrom != nil {
				if env.Value != "" {
					o.errs(field.ErrorList{field.Invalid(ep, env.Name, "may not have both value and valueFrom")})
				}
				vf := env.ValueFrom
				n := 0
				for _, set := range []bool{vf.FieldRef != nil, vf.ResourceFieldRef != nil, vf.ConfigMapKeyRef != nil, vf.SecretKeyRef != nil, vf.FileKeyRef != nil} {
					if set {
						n++
					}
				}
				if n != 1 {
					o.errs(field.ErrorList{field.Invalid(ep.Child("valueFrom"), env.Name, "must have exactly one source")})
				}
				if vf.SecretKeyRef != nil {
					o.strs(ep.Child("valueFrom", "secretKeyRef", "key"), vf.SecretKeyRef.Key, validation.IsConfigMapKey(vf.SecretKeyRef.Key))
					if vf.SecretKeyRef.Name == "" {
						o.errs(field.ErrorList{field.Required(ep.Child("valueFrom", "secretKeyRef", "name"), "")})
					}
				}
				if vf.ConfigMapKeyRef != nil {
					o.strs(ep.Child("valueFrom", "configMapKeyRef", "key"), vf.ConfigMapKeyRef.Key, validation.IsConfigMapKey(vf.ConfigMapKeyRef.Key))
				}
				if vf.FieldRef != nil && vf.FieldRef.FieldPath == "" {
					o.errs(field.ErrorList{field.Required(ep.Child("valueFrom", "fieldRef", "fieldPath"), "")})
				}
			}
		}
		mountPaths := map[string]bool{}
		for j, m := range c.VolumeMounts {
			mp := p.Child("volumeMounts").Index(j)
			if !volumes[m.Name] {
				o.errs(field.ErrorList{field.NotFound(mp.Child("name"), m.Name)})
			}
			if !strings.HasPrefix(m.MountPath, "/") {
				o.errs(field.ErrorList{field.Invalid(mp.Child("mountPath"), m.MountPath, "must be an absolute path")})
			}
			if mountPaths[m.MountPath] {
				o.errs(field.ErrorList{field.Duplicate(mp.Child("mountPath"), m.MountPath)})
			}
			mountPaths[m.MountPath] = true
		}
		for name, limit := range c.Resources.Limits {
			if request, ok := c.Resources.Requests[name]; ok && request.Cmp(limit) > 0 {
				o.errs(field.ErrorList{field.Invalid(p.Child("resources", "requests").Key(string(name)), request.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, limit.String()))})
			}
		}
		if !probes {
			return
		}
		for probeName, probe := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
			checkProbe(o, probe, portNames, p.Child(probeName))
		}
	}
	for i := range spec.InitContainers {
		// Restartable init containers (native sidecars) may have probes; others may not.
		c := &spec.InitContainers[i]
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if !sidecar && (c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil) {
			o.errs(field.ErrorList{field.Forbidden(path.Child("initContainers").Index(i), "an init container may not have probes unless restartPolicy is Always")})
		}
		check(c, path.Child("initContainers").Index(i), sidecar)
	}
	if len(spec.Containers) == 0 {
		o.errs(field.ErrorList{field.Required(path.Child("containers"), "")})
	}
	for i := range spec.Containers {
		check(&spec.Containers[i], path.Child("containers").Index(i), true)
	}
	if spec.TerminationGracePeriodSeconds != nil && *spec.TerminationGracePeriodSeconds < 0 {
		o.errs(field.ErrorList{field.Invalid(path.Child("terminationGracePeriodSeconds"), *spec.TerminationGracePeriodSeconds, "must be >= 0")})
	}
	for i, c := range spec.TopologySpreadConstraints {
		p := path.Child("topologySpreadConstraints").Index(i)
		if c.MaxSkew < 1 {
			o.errs(field.ErrorList{field.Invalid(p.Child("maxSkew"), c.MaxSkew, "must be greater than zero")})
		}
		if c.TopologyKey == "" {
			o.errs(field.ErrorList{field.Required(p.Child("topologyKey"), "")})
		}
		if c.WhenUnsatisfiable != corev1.DoNotSchedule && c.WhenUnsatisfiable != corev1.ScheduleAnyway {
			o.errs(field.ErrorList{field.NotSupported(p.Child("whenUnsatisfiable"), c.WhenUnsatisfiable, []string{string(corev1.DoNotSchedule), string(corev1.ScheduleAnyway)})})
		}
		checkSelector(o, c.LabelSelector, p.Child("labelSelector"), false)
	}
}

func checkProbe(o *object, probe *corev1.Probe, portNames map[string]bool, path *field.Path) {
	if probe == nil {
		return
	}
	h := probe.ProbeHandler
	n := 0
	for _, set := range []bool{h.Exec != nil, h.HTTPGet != nil, h.TCPSocket != nil, h.GRPC != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		o.errs(field.ErrorList{field.Invalid(path, "", fmt.Sprintf("must have exactly one handler, has %d", n))})
	}
	checkNamedPort := func(port intstr.IntOrString, p *field.Path) {
		if port.Type == intstr.String {
			o.strs(p, port.StrVal, validation.IsValidPortName(port.StrVal))
			if !portNames[port.StrVal] {
				o.errs(field.ErrorList{field.NotFound(p, port.StrVal)})
			}
		} else {
			checkPort(o, port.IntVal, p)
		}
	}
	if h.HTTPGet != nil {
		checkNamedPort(h.HTTPGet.Port, path.Child("httpGet", "port"))
		if !strings.HasPrefix(h.HTTPGet.Path, "/") {
			o.errs(field.ErrorList{field.Invalid(path.Child("httpGet", "path"), h.HTTPGet.Path, "must start with /")})
		}
	}
	if h.TCPSocket != nil {
		checkNamedPort(h.TCPSocket.Port, path.Child("tcpSocket", "port"))
	}
	for name, value := range map[string]int32{"timeoutSeconds": probe.TimeoutSeconds, "periodSeconds": probe.PeriodSeconds, "failureThreshold": probe.FailureThreshold, "successThreshold": probe.SuccessThreshold, "initialDelaySeconds": probe.InitialDelaySeconds} {
		if value < 0 {
			o.errs(field.ErrorList{field.Invalid(path.Child(name), value, "must be >= 0")})
		}
	}
}

// countVolumeSources counts the non-nil members of a VolumeSource (exactly one is allowed).
func countVolumeSources(s corev1.VolumeSource) int {
	n := 0
	for _, set := range []bool{
		s.HostPath != nil, s.EmptyDir != nil, s.GCEPersistentDisk != nil, s.AWSElasticBlockStore != nil, s.GitRepo != nil,
		s.Secret != nil, s.NFS != nil, s.ISCSI != nil, s.Glusterfs != nil, s.PersistentVolumeClaim != nil, s.RBD != nil,
		s.FlexVolume != nil, s.Cinder != nil, s.CephFS != nil, s.Flocker != nil, s.DownwardAPI != nil, s.FC != nil,
		s.AzureFile != nil, s.ConfigMap != nil, s.VsphereVolume != nil, s.Quobyte != nil, s.AzureDisk != nil,
		s.PhotonPersistentDisk != nil, s.Projected != nil, s.PortworxVolume != nil, s.ScaleIO != nil, s.StorageOS != nil,
		s.CSI != nil, s.Ephemeral != nil, s.Image != nil,
	} {
		if set {
			n++
		}
	}
	return n
}

func checkService(o *object, svc *corev1.Service) {
	path := field.NewPath("spec")
	if len(svc.Spec.Ports) == 0 && svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		o.errs(field.ErrorList{field.Required(path.Child("ports"), "")})
	}
	names := map[string]bool{}
	for i, port := range svc.Spec.Ports {
		p := path.Child("ports").Index(i)
		if len(svc.Spec.Ports) > 1 && port.Name == "" {
			o.errs(field.ErrorList{field.Required(p.Child("name"), "a name is required when a Service has several ports")})
		}
		if port.Name != "" {
			o.strs(p.Child("name"), port.Name, validation.IsDNS1123Label(port.Name))
			if names[port.Name] {
				o.errs(field.ErrorList{field.Duplicate(p.Child("name"), port.Name)})
			}
			names[port.Name] = true
		}
		checkPort(o, port.Port, p.Child("port"))
		if port.TargetPort.Type == intstr.String {
			o.strs(p.Child("targetPort"), port.TargetPort.StrVal, validation.IsValidPortName(port.TargetPort.StrVal))
		} else if port.TargetPort.IntVal != 0 {
			checkPort(o, port.TargetPort.IntVal, p.Child("targetPort"))
		}
		switch port.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			o.errs(field.ErrorList{field.NotSupported(p.Child("protocol"), port.Protocol, []string{"TCP", "UDP", "SCTP"})})
		}
	}
	switch svc.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		o.errs(field.ErrorList{field.NotSupported(path.Child("type"), svc.Spec.Type, []string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"})})
	}
	o.errs(metav1validation.ValidateLabels(svc.Spec.Selector, path.Child("selector")))
}

func checkHPA(o *object, hpa *autoscalingv2.HorizontalPodAutoscaler) {
	path := field.NewPath("spec")
	if hpa.Spec.MaxReplicas < 1 {
		o.errs(field.ErrorList{field.Invalid(path.Child("maxReplicas"), hpa.Spec.MaxReplicas, "must be greater than or equal to 1")})
	}
	if hpa.Spec.MinReplicas != nil {
		if *hpa.Spec.MinReplicas < 1 {
			o.errs(field.ErrorList{field.Invalid(path.Child("minReplicas"), *hpa.Spec.MinReplicas, "must be greater than or equal to 1")})
		}
		if *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas {
			o.errs(field.ErrorList{field.Invalid(path.Child("maxReplicas"), hpa.Spec.MaxReplicas, "must be greater than or equal to `minReplicas`")})
		}
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind == "" || ref.Name == "" {
		o.errs(field.ErrorList{field.Required(path.Child("scaleTargetRef"), "kind and name are required")})
	}
	for i, m := range hpa.Spec.Metrics {
		p := path.Child("metrics").Index(i)
		if m.Type == autoscalingv2.ResourceMetricSourceType {
			if m.Resource == nil {
				o.errs(field.ErrorList{field.Required(p.Child("resource"), "")})
				continue
			}
			t := m.Resource.Target
			if t.Type == autoscalingv2.UtilizationMetricType && (t.AverageUtilization == nil || *t.AverageUtilization < 1) {
				o.errs(field.ErrorList{field.Invalid(p.Child("resource", "target", "averageUtilization"), t.AverageUtilization, "must be set and greater than 0 for type Utilization")})
			}
		}
	}
}

func checkNetworkPolicy(o *object, np *networkingv1.NetworkPolicy) {
	path := field.NewPath("spec")
	o.errs(metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, metav1validation.LabelSelectorValidationOptions{}, path.Child("podSelector")))
	for i, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			o.errs(field.ErrorList{field.NotSupported(path.Child("policyTypes").Index(i), t, []string{"Ingress", "Egress"})})
		}
	}
	checkPorts := func(ports []networkingv1.NetworkPolicyPort, p *field.Path) {
		for i, port := range ports {
			pp := p.Index(i)
			if port.Port != nil {
				if port.Port.Type == intstr.Int {
					checkPort(o, port.Port.IntVal, pp.Child("port"))
				} else {
					o.strs(pp.Child("port"), port.Port.StrVal, validation.IsValidPortName(port.Port.StrVal))
				}
			}
			if port.EndPort != nil && (port.Port == nil || port.Port.Type != intstr.Int || *port.EndPort < port.Port.IntVal) {
				o.errs(field.ErrorList{field.Invalid(pp.Child("endPort"), *port.EndPort, "needs a numeric port no greater than it")})
			}
		}
	}
	checkPeers := func(peers []networkingv1.NetworkPolicyPeer, p *field.Path) {
		for i, peer := range peers {
			pp := p.Index(i)
			if peer.IPBlock != nil {
				if peer.PodSelector != nil || peer.NamespaceSelector != nil {
					o.errs(field.ErrorList{field.Forbidden(pp, "ipBlock may not be combined with other peer selectors")})
				}
				_, cidr, err := net.ParseCIDR(peer.IPBlock.CIDR)
				if err != nil {
					o.errs(field.ErrorList{field.Invalid(pp.Child("ipBlock", "cidr"), peer.IPBlock.CIDR, "not a CIDR")})
					continue
				}
				for j, except := range peer.IPBlock.Except {
					_, ex, err := net.ParseCIDR(except)
					if err != nil || !cidr.Contains(ex.IP) {
						o.errs(field.ErrorList{field.Invalid(pp.Child("ipBlock", "except").Index(j), except, "must be a CIDR inside cidr")})
					}
				}
			} else if peer.PodSelector == nil && peer.NamespaceSelector == nil {
				o.errs(field.ErrorList{field.Required(pp, "one of podSelector, namespaceSelector or ipBlock")})
			}
			if peer.PodSelector != nil {
				checkSelector(o, peer.PodSelector, pp.Child("podSelector"), false)
			}
			if peer.NamespaceSelector != nil {
				checkSelector(o, peer.NamespaceSelector, pp.Child("namespaceSelector"), false)
			}
		}
	}
	for i, rule := range np.Spec.Ingress {
		checkPorts(rule.Ports, path.Child("ingress").Index(i).Child("ports"))
		checkPeers(rule.From, path.Child("ingress").Index(i).Child("from"))
	}
	for i, rule := range np.Spec.Egress {
		checkPorts(rule.Ports, path.Child("egress").Index(i).Child("ports"))
		checkPeers(rule.To, path.Child("egress").Index(i).Child("to"))
	}
}

// The CRD's patterns (kubebuilder:validation:Pattern) for monitoring.coreos.com durations.
var (
	promDuration = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)
	promLabel    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	promMetric   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

func checkPromDuration(o *object, d string, path *field.Path) {
	if d != "" && !promDuration.MatchString(d) {
		o.errs(field.ErrorList{field.Invalid(path, d, "not a Prometheus duration (e.g. 30s, 1m, 1h30m)")})
	}
}

func checkServiceMonitor(o *object, sm *monitoringv1.ServiceMonitor) {
	path := field.NewPath("spec")
	if len(sm.Spec.Endpoints) == 0 {
		o.errs(field.ErrorList{field.Required(path.Child("endpoints"), "")})
	}
	checkSelector(o, &sm.Spec.Selector, path.Child("selector"), true)
	for i, ep := range sm.Spec.Endpoints {
		p := path.Child("endpoints").Index(i)
		if ep.Port == "" && ep.TargetPort == nil {
			o.errs(field.ErrorList{field.Required(p.Child("port"), "port (a Service port name) or targetPort")})
		}
		if ep.Path != "" && !strings.HasPrefix(ep.Path, "/") {
			o.errs(field.ErrorList{field.Invalid(p.Child("path"), ep.Path, "must start with /")})
		}
		checkPromDuration(o, string(ep.Interval), p.Child("interval"))
		checkPromDuration(o, string(ep.ScrapeTimeout), p.Child("scrapeTimeout"))
	}
}

func checkPrometheusRule(o *object, pr *monitoringv1.PrometheusRule) {
	path := field.NewPath("spec", "groups")
	if len(pr.Spec.Groups) == 0 {
		o.errs(field.ErrorList{field.Required(path, "")})
	}
	groups := map[string]bool{}
	for i, g := range pr.Spec.Groups {
		gp := path.Index(i)
		if g.Name == "" {
			o.errs(field.ErrorList{field.Required(gp.Child("name"), "")})
		}
		if groups[g.Name] {
			o.errs(field.ErrorList{field.Duplicate(gp.Child("name"), g.Name)})
		}
		groups[g.Name] = true
		if g.Interval != nil {
			checkPromDuration(o, string(*g.Interval), gp.Child("interval"))
		}
		if len(g.Rules) == 0 {
			o.errs(field.ErrorList{field.Required(gp.Child("rules"), "")})
		}
		for j, r := range g.Rules {
			rp := gp.Child("rules").Index(j)
			switch {
			case (r.Record == "") == (r.Alert == ""):
				o.errs(field.ErrorList{field.Invalid(rp, "", "exactly one of record and alert must be set")})
			case r.Record != "" && !promMetric.MatchString(r.Record):
				o.errs(field.ErrorList{field.Invalid(rp.Child("record"), r.Record, "not a valid metric name")})
			case r.Record != "" && (r.For != nil || len(r.Annotations) > 0):
				o.errs(field.ErrorList{field.Forbidden(rp, "a recording rule has no for or annotations")})
			}
			if r.Expr.String() == "" || r.Expr.String() == "0" && r.Expr.Type == intstr.String {
				o.errs(field.ErrorList{field.Required(rp.Child("expr"), "")})
			}
			if r.For != nil {
				checkPromDuration(o, string(*r.For), rp.Child("for"))
			}
			for name := range r.Labels {
				if !promLabel.MatchString(name) {
					o.errs(field.ErrorList{field.Invalid(rp.Child("labels").Key(name), name, "not a valid Prometheus label name")})
				}
			}
		}
	}
}

// --- references between objects ------------------------------------------------------

type podTemplate struct {
	owner  *object
	labels map[string]string
	spec   *corev1.PodSpec
}

func podTemplateOf(o *object) *podTemplate {
	switch v := o.obj.(type) {
	case *appsv1.Deployment:
		return &podTemplate{o, v.Spec.Template.Labels, &v.Spec.Template.Spec}
	case *appsv1.StatefulSet:
		return &podTemplate{o, v.Spec.Template.Labels, &v.Spec.Template.Spec}
	case *appsv1.DaemonSet:
		return &podTemplate{o, v.Spec.Template.Labels, &v.Spec.Template.Spec}
	case *appsv1.ReplicaSet:
		return &podTemplate{o, v.Spec.Template.Labels, &v.Spec.Template.Spec}
	case *corev1.Pod:
		return &podTemplate{o, v.Labels, &v.Spec}
	}
	return nil
}

func namespaceOf(o *object) string {
	if m, ok := o.obj.(metav1.Object); ok {
		return m.GetNamespace()
	}
	return ""
}

func describe(o *object) string {
	return fmt.Sprintf("%s %s (%s)", o.gvk.Kind, o.name, o.doc.where())
}

// checkReferences checks that selectors and names resolve to objects of the same input.
// Objects in different explicit namespaces never match; an object without a namespace
// matches any (helm template leaves namespaces to the release).
func checkReferences(objects []*object) {
	var pods []*podTemplate
	var services []*corev1.Service
	deployments := map[string]bool{}
	for _, o := range objects {
		if o.obj == nil {
			continue
		}
		if t := podTemplateOf(o); t != nil {
			pods = append(pods, t)
		}
		if s, ok := o.obj.(*corev1.Service); ok {
			services = append(services, s)
		}
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			deployments[d.Name] = true
		}
	}
	sameNamespace := func(a, b string) bool { return a == "" || b == "" || a == b }

	matchingPods := func(o *object, selector labels.Selector) []*podTemplate {
		var found []*podTemplate
		for _, t := range pods {
			if sameNamespace(namespaceOf(o), namespaceOf(t.owner)) && selector.Matches(labels.Set(t.labels)) {
				found = append(found, t)
			}
		}
		return found
	}

	for _, o := range objects {
		switch v := o.obj.(type) {
		case *corev1.Service:
			if len(v.Spec.Selector) == 0 || len(pods) == 0 {
				continue
			}
			matched := matchingPods(o, labels.SelectorFromSet(v.Spec.Selector))
			if len(matched) == 0 {
				o.fail("spec.selector: %v selects no pod template of the input", v.Spec.Selector)
				continue
			}
			for i, port := range v.Spec.Ports {
				if port.TargetPort.Type != intstr.String {
					continue
				}
				for _, t := range matched {
					if !hasContainerPort(t.spec, port.TargetPort.StrVal) {
						o.fail("spec.ports[%d].targetPort: %q is not a container port name of %s", i, port.TargetPort.StrVal, describe(t.owner))
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector == nil || len(pods) == 0 {
				continue
			}
			if sel, err := metav1.LabelSelectorAsSelector(v.Spec.Selector); err == nil && len(matchingPods(o, sel)) == 0 {
				o.fail("spec.selector selects no pod template of the input")
			}
		case *networkingv1.NetworkPolicy:
			if len(pods) == 0 {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(&v.Spec.PodSelector)
			if err != nil {
				continue
			}
			matched := matchingPods(o, sel)
			if len(matched) == 0 {
				o.fail("spec.podSelector selects no pod template of the input")
			}
			for i, rule := range v.Spec.Ingress {
				for j, port := range rule.Ports {
					if port.Port == nil || port.Port.Type != intstr.String {
						continue
					}
					for _, t := range matched {
						if !hasContainerPort(t.spec, port.Port.StrVal) {
							o.fail("spec.ingress[%d].ports[%d].port: %q is not a container port name of %s", i, j, port.Port.StrVal, describe(t.owner))
						}
					}
				}
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := v.Spec.ScaleTargetRef
			if ref.Kind == "Deployment" && len(deployments) > 0 && !deployments[ref.Name] {
				o.fail("spec.scaleTargetRef: no Deployment %q in the input", ref.Name)
			}
		case *monitoringv1.ServiceMonitor:
			if len(services) == 0 {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(&v.Spec.Selector)
			if err != nil {
				continue
			}
			var matched []*corev1.Service
			for _, s := range services {
				if (len(v.Spec.NamespaceSelector.MatchNames) == 0 || contains(v.Spec.NamespaceSelector.MatchNames, s.Namespace) || s.Namespace == "") && sel.Matches(labels.Set(s.Labels)) {
					matched = append(matched, s)
				}
			}
			if len(matched) == 0 {
				o.fail("spec.selector selects no Service of the input")
				continue
			}
			for i, ep := range v.Spec.Endpoints {
				if ep.Port == "" {
					continue
				}
				for _, s := range matched {
					if !hasServicePort(s, ep.Port) {
						o.fail("spec.endpoints[%d].port: %q is not a port name of Service %s", i, ep.Port, s.Name)
					}
				}
			}
		}
	}
}

func hasContainerPort(spec *corev1.PodSpec, name string) bool {
	for _, c := range append(append([]corev1.Container{}, spec.Containers...), spec.InitContainers...) {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func hasServicePort(s *corev1.Service, name string) bool {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
