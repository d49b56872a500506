//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"

	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// writeMetrics writes kwl's live state in the Prometheus text exposition
// format, for node_exporter's textfile collector (kwl status --format
// prometheus > /var/lib/node_exporter/kwl.prom): whether a ruleset is
// loaded, per statement the packets and bytes its rules admitted and
// refused, and the elements of every set and recent list (open doors,
// bans, the sources a limit counts).
func writeMetrics(w io.Writer, st *deploy.State, ipt *deploy.IptablesState) {
	fmt.Fprintf(w, "# HELP kwl_loaded Whether kwl's rules are loaded, by backend.\n# TYPE kwl_loaded gauge\n")
	fmt.Fprintf(w, "kwl_loaded{backend=\"nft\"} %d\n", b2i(st.Loaded))
	fmt.Fprintf(w, "kwl_loaded{backend=\"iptables\"} %d\n", b2i(ipt.Loaded))
	type stmts struct {
		backend string
		list    []deploy.StatementState
	}
	all := []stmts{{"nft", st.Statements}, {"iptables", ipt.Statements}}
	for _, m := range []struct{ name, help string }{
		{"kwl_statement_packets_total", "Packets a statement's rules admitted or refused since they were loaded."},
		{"kwl_statement_bytes_total", "Bytes a statement's rules admitted or refused since they were loaded."},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
		for _, b := range all {
			for _, s := range b.list {
				adm, ref := s.AdmittedPackets, s.RefusedPackets
				if strings.HasSuffix(m.name, "bytes_total") {
					adm, ref = s.AdmittedBytes, s.RefusedBytes
				}
				l := fmt.Sprintf("backend=%q,statement=%s", b.backend, quoteLabel(s.Statement))
				fmt.Fprintf(w, "%s{%s,verdict=\"admitted\"} %d\n", m.name, l, adm)
				fmt.Fprintf(w, "%s{%s,verdict=\"refused\"} %d\n", m.name, l, ref)
			}
		}
	}
	fmt.Fprintf(w, "# HELP kwl_set_elements Elements of a set or recent list of kwl's: open doors, bans, counted sources, tokens left.\n# TYPE kwl_set_elements gauge\n")
	for _, s := range st.Sets {
		fmt.Fprintf(w, "kwl_set_elements{backend=\"nft\",set=%s} %d\n", quoteLabel(s.Name), len(s.Elements)+s.Tokens)
	}
	for _, l := range ipt.Lists {
		fmt.Fprintf(w, "kwl_set_elements{backend=\"iptables\",set=%s} %d\n", quoteLabel(l.Name), len(l.Entries))
	}
	// When a secret knock's tokens run out: alert well before it, for a
	// renewal that stopped (kwl deploy --renew).
	head := false
	for _, s := range st.Sets {
		if s.LastWindow == 0 {
			continue
		}
		if !head {
			fmt.Fprintf(w, "# HELP kwl_tokens_until_timestamp_seconds When the loaded tokens of a secret knock run out: a client's knock opens nothing after it.\n# TYPE kwl_tokens_until_timestamp_seconds gauge\n")
			head = true
		}
		fmt.Fprintf(w, "kwl_tokens_until_timestamp_seconds{set=%s} %d\n", quoteLabel(s.Name), secret.Start(s.LastWindow+1, lang.TokenWindow).Unix())
	}
}

// quoteLabel writes a label value as the exposition format escapes it:
// backslash, double quote and newline.
func quoteLabel(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
