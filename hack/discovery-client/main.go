// discovery-client prints what client-go's discovery client decodes from a server: every group
// version and its resources, from aggregated discovery (apidiscovery.k8s.io/v2, client-go's
// default) or, with -legacy, from the legacy documents (/api, /apis, /apis/<group>/<version>).
//
// Usage: discovery-client -server http://127.0.0.1:8080 [-legacy | -apiserver-form]
//
// The output is one JSON object: {"groups": {"<group/version>": [{"name", "namespaced", "kind",
// "verbs"}...]}, "failed": {"<group/version>": "<error>"}}, resources sorted by name.
//
// With -apiserver-form it is instead, per group version the server lists, the resources of its
// aggregated document as the server serves them ("served") and as k8s.io/apiserver builds them
// from the server's legacy APIResourceList ("built", endpoints.ConvertGroupVersionIntoToDiscovery):
// {"<group/version>": {"served": [...], "built": [...]}}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/endpoints"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

type resource struct {
	Name       string   `json:"name"`
	Namespaced bool     `json:"namespaced"`
	Kind       string   `json:"kind"`
	Verbs      []string `json:"verbs"`
}

type output struct {
	Groups map[string][]resource `json:"groups"`
	Failed map[string]string     `json:"failed"`
}

func main() {
	server := flag.String("server", "", "base URL of the server (http or https; TLS is not verified)")
	legacy := flag.Bool("legacy", false, "read the legacy discovery documents, not aggregated discovery")
	apiserverForm := flag.Bool("apiserver-form", false, "print the served and the k8s.io/apiserver-built aggregated resources")
	flag.Parse()
	if *server == "" {
		fmt.Fprintln(os.Stderr, "discovery-client: -server is required")
		os.Exit(2)
	}
	config := &rest.Config{Host: *server, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	aggregated, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "discovery-client: %v\n", err)
		os.Exit(1)
	}
	if *apiserverForm {
		if err := printApiserverForm(aggregated); err != nil {
			fmt.Fprintf(os.Stderr, "discovery-client: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var client discovery.DiscoveryInterface = aggregated
	if *legacy {
		client = aggregated.WithLegacy()
	}
	_, lists, err := client.ServerGroupsAndResources()
	out := output{Groups: map[string][]resource{}, Failed: map[string]string{}}
	var partial *discovery.ErrGroupDiscoveryFailed
	if err != nil && !errors.As(err, &partial) {
		fmt.Fprintf(os.Stderr, "discovery-client: %v\n", err)
		os.Exit(1)
	}
	if partial != nil {
		for gv, failure := range partial.Groups {
			out.Failed[gv.String()] = failure.Error()
		}
	}
	for _, list := range lists {
		out.Groups[list.GroupVersion] = convert(list.APIResources)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "discovery-client: %v\n", err)
		os.Exit(1)
	}
}

func convert(in []metav1.APIResource) []resource {
	out := make([]resource, 0, len(in))
	for _, r := range in {
		verbs := []string(r.Verbs)
		if verbs == nil {
			verbs = []string{}
		}
		out = append(out, resource{Name: r.Name, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: verbs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

type forms struct {
	Served []apidiscoveryv2.APIResourceDiscovery `json:"served"`
	Built  []apidiscoveryv2.APIResourceDiscovery `json:"built"`
}

// printApiserverForm compares, per group version, the server's aggregated resources with what
// k8s.io/apiserver builds from the same server's legacy resource list.
func printApiserverForm(client *discovery.DiscoveryClient) error {
	ctx := context.Background()
	raw, err := client.RESTClient().Get().AbsPath("/apis").
		SetHeader("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList").
		DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("GET /apis (aggregated): %w", err)
	}
	var served apidiscoveryv2.APIGroupDiscoveryList
	if err := json.Unmarshal(raw, &served); err != nil {
		return fmt.Errorf("decoding /apis (aggregated): %w", err)
	}
	out := map[string]forms{}
	for _, group := range served.Items {
		for _, version := range group.Versions {
			gv := group.Name + "/" + version.Version
			raw, err := client.RESTClient().Get().AbsPath("/apis/"+gv).
				SetHeader("Accept", "application/json").DoRaw(ctx)
			if err != nil {
				return fmt.Errorf("GET /apis/%s: %w", gv, err)
			}
			var list metav1.APIResourceList
			if err := json.Unmarshal(raw, &list); err != nil {
				return fmt.Errorf("decoding /apis/%s: %w", gv, err)
			}
			built, err := endpoints.ConvertGroupVersionIntoToDiscovery(list.APIResources)
			if err != nil {
				return fmt.Errorf("k8s.io/apiserver refuses /apis/%s: %w", gv, err)
			}
			out[gv] = forms{Served: version.Resources, Built: built}
		}
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(out)
}
