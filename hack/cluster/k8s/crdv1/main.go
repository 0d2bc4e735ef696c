// Command crdv1 rewrites apiextensions.k8s.io/v1beta1 CustomResourceDefinitions (as some vendors still publish
// them) into apiextensions.k8s.io/v1 with the API server's own conversion functions, so the vendor's schema is
// installed unchanged on an API server that no longer serves v1beta1. Other documents pass through untouched.
//
// With -serve-all every version of a converted CRD is served: vendors that ship one served version in the SDK
// (SMI) leave the choice of served versions to each mesh's installer, and the meshes serve the older ones.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	v1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func main() {
	serveAll := flag.Bool("serve-all", false, "serve every version of a converted CRD")
	flag.Parse()
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{apiextensions.AddToScheme, v1.AddToScheme, v1beta1.AddToScheme} {
		if err := add(scheme); err != nil {
			fail(err)
		}
	}
	for i, doc := range bytes.Split(in, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			fail(fmt.Errorf("document %d: %w", i, err))
		}
		out := doc
		if meta.APIVersion == "apiextensions.k8s.io/v1beta1" && meta.Kind == "CustomResourceDefinition" {
			out, err = convert(scheme, doc, *serveAll)
			if err != nil {
				fail(fmt.Errorf("document %d: %w", i, err))
			}
		}
		fmt.Printf("---\n%s\n", bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(out), []byte("---"))))
	}
}

func convert(scheme *runtime.Scheme, doc []byte, serveAll bool) ([]byte, error) {
	var old v1beta1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(doc, &old); err != nil {
		return nil, err
	}
	scheme.Default(&old)
	var internal apiextensions.CustomResourceDefinition
	if err := scheme.Convert(&old, &internal, nil); err != nil {
		return nil, err
	}
	var crd v1.CustomResourceDefinition
	if err := scheme.Convert(&internal, &crd, nil); err != nil {
		return nil, err
	}
	crd.APIVersion = "apiextensions.k8s.io/v1"
	crd.Kind = "CustomResourceDefinition"
	// v1 forbids preserving unknown fields at the root; the schema decides what is kept.
	crd.Spec.PreserveUnknownFields = false
	for i := range crd.Spec.Versions {
		if serveAll {
			crd.Spec.Versions[i].Served = true
		}
		// v1 requires a structural schema: a root without a type is an object in every v1beta1 CRD.
		if s := crd.Spec.Versions[i].Schema; s != nil && s.OpenAPIV3Schema != nil && s.OpenAPIV3Schema.Type == "" {
			s.OpenAPIV3Schema.Type = "object"
		}
	}
	return yaml.Marshal(&crd)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "crdv1:", err)
	os.Exit(1)
}
