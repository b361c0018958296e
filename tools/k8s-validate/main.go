// Command k8s-validate checks Kubernetes manifests offline, as strictly as an API server
// with strict field validation would decode them, and then some.
//
// It reads multi-document YAML (files named as arguments, or standard input when there
// are none or the argument is "-"), such as the output of `helm template`, and for every
// object:
//
//   - decodes it with the real Kubernetes API types (client-go's scheme, plus the
//     prometheus-operator monitoring.coreos.com/v1 types) through apimachinery's strict
//     YAML serializer: an unknown or duplicated field, a value of the wrong type, a bad
//     quantity or an unknown apiVersion/kind is an error;
//   - runs the checks the API server (or the CRD's OpenAPI schema) would otherwise make at
//     apply time, for the kinds Keyward's manifests use: object metadata (names, labels,
//     annotations), pod templates (container and port names, probes naming real ports,
//     mounts naming real volumes, env var names, requests within limits), Service ports,
//     ConfigMap and Secret keys, HPA bounds, PodDisruptionBudgets, NetworkPolicy CIDRs and
//     ports, ServiceMonitor endpoints and PrometheusRule groups (durations as the CRD's
//     patterns require);
//   - and, across all inputs together, that selectors select something that is there: a
//     Deployment's selector its own template, a Service's and a PodDisruptionBudget's and a
//     NetworkPolicy's selector some pod template, a Service's named target ports ports of
//     those pods, a ServiceMonitor's selector a Service with the named port, an HPA's target
//     a Deployment. A reference to a kind the input has none of is not checked (it may live
//     elsewhere).
//
// It prints one line per object, "ok" or "FAIL" with the document's file, index and line,
// helm's "# Source:" template when present, and the object's apiVersion, kind and name,
// then one indented line per problem naming the field. Exit status: 0 when every object is
// valid, 1 when any is not (or no object was found), 2 for a usage or read error.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	sigyaml "sigs.k8s.io/yaml"
)

// document is one YAML document of an input.
type document struct {
	file   string // input name ("<stdin>" for standard input)
	index  int    // 1-based among the non-empty documents of its file
	line   int    // line of the file where the document starts
	source string // helm's "# Source:" comment, if any
	data   []byte
}

func (d document) where() string {
	s := fmt.Sprintf("%s#%d (line %d", d.file, d.index, d.line)
	if d.source != "" {
		s += ", " + d.source
	}
	return s + ")"
}

// object is a decoded document with the problems found in it.
type object struct {
	doc      document
	gvk      schema.GroupVersionKind
	name     string
	obj      runtime.Object
	problems []string
}

func (o *object) label() string {
	kind := o.gvk.Kind
	if kind == "" {
		kind = "<no kind>"
	}
	api := o.gvk.GroupVersion().String()
	if api == "" {
		api = "<no apiVersion>"
	}
	name := o.name
	if name == "" {
		name = "<no name>"
	}
	return fmt.Sprintf("%s %s %s", api, kind, name)
}

func (o *object) fail(format string, args ...any) {
	o.problems = append(o.problems, fmt.Sprintf(format, args...))
}

var sourceComment = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// splitDocuments splits a YAML stream at "---" lines, keeping where each document starts.
// Documents that hold nothing but comments and white space are dropped.
func splitDocuments(file string, data []byte) ([]document, error) {
	var docs []document
	var current bytes.Buffer
	start := 1
	index := 0
	flush := func() error {
		body := current.Bytes()
		current.Reset()
		var probe any
		if err := sigyaml.Unmarshal(body, &probe); err != nil {
			index++
			docs = append(docs, document{file: file, index: index, line: start, source: sourceOf(body), data: append([]byte(nil), body...)})
			return nil
		}
		if probe == nil {
			return nil
		}
		index++
		docs = append(docs, document{file: file, index: index, line: start, source: sourceOf(body), data: append([]byte(nil), body...)})
		return nil
	}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	lineNo := 0
	for scanner.Scan() {
		lineNo++
		line := scanner.Text()
		trimmed := strings.TrimRight(line, " \t\r")
		if trimmed == "---" || strings.HasPrefix(trimmed, "--- ") || trimmed == "..." {
			if err := flush(); err != nil {
				return nil, err
			}
			start = lineNo + 1
			continue
		}
		current.WriteString(line)
		current.WriteByte('\n')
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

func sourceOf(body []byte) string {
	if m := sourceComment.FindSubmatch(body); m != nil {
		return strings.TrimSpace(string(m[1]))
	}
	return ""
}

// newScheme holds every built-in Kubernetes type client-go knows, and monitoring.coreos.com/v1.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// typeAndName reads apiVersion, kind and metadata.name loosely, to name an object whose
// strict decoding fails.
func typeAndName(data []byte) (schema.GroupVersionKind, string) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = sigyaml.Unmarshal(data, &head)
	gv, _ := schema.ParseGroupVersion(head.APIVersion)
	return gv.WithKind(head.Kind), head.Metadata.Name
}

func decode(s *runtime.Scheme, doc document) *object {
	gvk, name := typeAndName(doc.data)
	o := &object{doc: doc, gvk: gvk, name: name}
	serializer := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
	obj, actual, err := serializer.Decode(doc.data, nil, nil)
	if actual != nil && actual.Kind != "" {
		o.gvk = *actual
	}
	strict, isStrict := runtime.AsStrictDecodingError(err)
	switch {
	case err == nil:
	case isStrict:
		// Unknown or duplicated fields: the object was still decoded, so it is checked
		// further as well.
		for _, e := range strict.Errors() {
			o.fail("%v", e)
		}
	case runtime.IsNotRegisteredError(err):
		o.fail("unknown kind: %s %s is neither a built-in Kubernetes type (client-go) nor monitoring.coreos.com/v1", o.gvk.GroupVersion(), o.gvk.Kind)
		return o
	case runtime.IsMissingKind(err):
		o.fail("the document has no kind")
		return o
	case runtime.IsMissingVersion(err):
		o.fail("the document has no apiVersion")
		return o
	default:
		o.fail("%v", err)
		return o
	}
	o.obj = obj
	return o
}

func main() {
	quiet := flag.Bool("quiet", false, "print only the objects that fail, and the summary")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: k8s-validate [-quiet] [file ...]\n\nStrictly validates Kubernetes manifests (multi-document YAML) with the real API types;\nreads standard input when no file (or \"-\") is given.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}

	s, err := newScheme()
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-validate: building the type scheme: %v\n", err)
		os.Exit(2)
	}

	var objects []*object
	for _, input := range inputs {
		var data []byte
		name := input
		if input == "-" {
			name = "<stdin>"
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(input)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8s-validate: reading %s: %v\n", name, err)
			os.Exit(2)
		}
		docs, err := splitDocuments(name, data)
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8s-validate: %v\n", err)
			os.Exit(2)
		}
		for _, doc := range docs {
			o := decode(s, doc)
			if o.obj != nil {
				checkObject(o)
			}
			objects = append(objects, o)
		}
	}
	checkReferences(objects)

	failed := 0
	for _, o := range objects {
		if len(o.problems) == 0 {
			if !*quiet {
				fmt.Printf("ok   %s %s\n", o.doc.where(), o.label())
			}
			continue
		}
		failed++
		fmt.Printf("FAIL %s %s\n", o.doc.where(), o.label())
		for _, p := range o.problems {
			fmt.Printf("       - %s\n", p)
		}
	}
	switch {
	case len(objects) == 0:
		fmt.Println("k8s-validate: no Kubernetes object found in the input")
		os.Exit(1)
	case failed > 0:
		fmt.Printf("k8s-validate: %d of %d objects invalid\n", failed, len(objects))
		os.Exit(1)
	default:
		fmt.Printf("k8s-validate: %d objects valid\n", len(objects))
	}
}
