//go:build linux

package main

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"kwl.dev/kwl/deploy"
)

// TestMetricsParse: kwl status --format prometheus is text a Prometheus
// parser reads, with the values of the state, labels escaped.
func TestMetricsParse(t *testing.T) {
	st := &deploy.State{Loaded: true,
		Statements: []deploy.StatementState{{Statement: `knock ssh, line 4`, AdmittedPackets: 3, AdmittedBytes: 180, RefusedPackets: 5, RefusedBytes: 300},
			{Statement: `odd "quoted" \ name`, RefusedPackets: 1}},
		Sets: []deploy.SetState{{Name: "door_ssh_4", Elements: []deploy.ElementState{{Key: "198.51.100.10"}, {Key: "198.51.100.11"}}},
			{Name: "tokens_ssh", Elements: []deploy.ElementState{}, Tokens: 2882, LastWindow: 59012345}},
	}
	ipt := &deploy.IptablesState{Lists: []deploy.RecentList{{Name: "kwl_door_ssh_4", Entries: []deploy.RecentEntry{{Source: "198.51.100.10"}}}}}
	var b strings.Builder
	writeMetrics(&b, st, ipt)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s in\n%s", name, b.String())
		}
	next:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
		t.Fatalf("no %s %v in\n%s", name, labels, b.String())
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kwl_loaded", map[string]string{"backend": "nft"}, 1},
		{"kwl_loaded", map[string]string{"backend": "iptables"}, 0},
		{"kwl_statement_packets_total", map[string]string{"statement": "knock ssh, line 4", "verdict": "admitted"}, 3},
		{"kwl_statement_packets_total", map[string]string{"statement": "knock ssh, line 4", "verdict": "refused"}, 5},
		{"kwl_statement_bytes_total", map[string]string{"statement": "knock ssh, line 4", "verdict": "refused"}, 300},
		{"kwl_statement_packets_total", map[string]string{"statement": `odd "quoted" \ name`, "verdict": "refused"}, 1},
		{"kwl_set_elements", map[string]string{"backend": "nft", "set": "door_ssh_4"}, 2},
		{"kwl_set_elements", map[string]string{"backend": "iptables", "set": "kwl_door_ssh_4"}, 1},
		{"kwl_set_elements", map[string]string{"backend": "nft", "set": "tokens_ssh"}, 2882},
		{"kwl_tokens_until_timestamp_seconds", map[string]string{"set": "tokens_ssh"}, 59012346 * 30},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
