// Command grafana-schema-lint checks Grafana dashboard JSON files against Grafana's own dashboard
// schema, as generated into github.com/grafana/grafana-foundation-sdk (Apache-2.0) from Grafana's
// CUE kinds: the dashboard, every panel with its plugin's options and field config, every template
// variable and annotation are decoded strictly (unknown fields, wrong types and missing required
// fields are errors) and then checked against the schema's constraints. Every target is decoded
// with the Prometheus dataquery schema.
//
// Usage: grafana-schema-lint DASHBOARD.json...
// Exit status 1 if any file fails, 2 on a usage error.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grafana-schema-lint DASHBOARD.json...")
		os.Exit(2)
	}
	// Panel options and field configs are only checked for panel types registered here.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		problems := lint(path)
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "%s: %s\n", path, p)
		}
		if len(problems) > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: OK (Grafana dashboard schema, grafana-foundation-sdk)\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

func lint(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var dash dashboard.Dashboard
	problems := explain("schema", dash.UnmarshalJSONStrict(raw))
	if len(problems) == 0 {
		problems = explain("schema constraints", dash.Validate())
	}
	// The SDK leaves panels of a type it does not know, and targets whose type it cannot tell
	// (a panel's targets are decoded before its datasource), as untyped bags, and decodes field
	// configs leniently: check those here.
	var loose struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &loose); err != nil {
		return append(problems, err.Error())
	}
	for i, p := range loose.Panels {
		problems = append(problems, lintPanel("panels["+strconv.Itoa(i)+"]", p)...)
	}
	return problems
}

func lintPanel(where string, raw json.RawMessage) []string {
	var panel struct {
		Type        string            `json:"type"`
		Panels      []json.RawMessage `json:"panels"`
		Targets     []json.RawMessage `json:"targets"`
		FieldConfig json.RawMessage   `json:"fieldConfig"`
	}
	if err := json.Unmarshal(raw, &panel); err != nil {
		return []string{where + ": " + err.Error()}
	}
	var problems []string
	if panel.Type == "row" {
		for i, p := range panel.Panels {
			problems = append(problems, lintPanel(where+".panels["+strconv.Itoa(i)+"]", p)...)
		}
		return problems
	}
	if _, ok := cog.ConfigForPanelcfgVariant(panel.Type); !ok {
		problems = append(problems, fmt.Sprintf("%s: panel type %q has no schema in grafana-foundation-sdk", where, panel.Type))
	}
	// The panel pass decodes fieldConfig leniently and only its `custom` part strictly.
	if panel.FieldConfig != nil {
		var fc dashboard.FieldConfigSource
		problems = append(problems, explain(where+".fieldConfig: schema", fc.UnmarshalJSONStrict(panel.FieldConfig))...)
	}
	for i, t := range panel.Targets {
		tw := where + ".targets[" + strconv.Itoa(i) + "]"
		var q prometheus.Dataquery
		found := explain(tw+": Prometheus query schema", q.UnmarshalJSONStrict(t))
		if len(found) == 0 {
			found = explain(tw+": Prometheus query constraints", q.Validate())
		}
		problems = append(problems, found...)
	}
	return problems
}

// explain turns an SDK error into one line per problem. The SDK returns its error list typed even
// when it is empty (a non-nil error that holds nothing), so an empty list is success.
func explain(what string, err error) []string {
	var list cog.BuildErrors
	if errors.As(err, &list) {
		lines := make([]string, 0, len(list))
		for _, e := range list {
			lines = append(lines, what+": "+e.Error())
		}
		return lines
	}
	if err != nil {
		return []string{what + ": " + err.Error()}
	}
	return nil
}
