package sim

import (
	"testing"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
)

// TestCapCounting holds the model of nf_conncount to its rules, on both
// backends, through test steps: a SYN of an established flow does not
// reach the cap; a refused attempt stops counting at the next connection
// two ticks on, but not within them; a connection reset by the client
// stops counting; an answered UDP flow counts while conntrack keeps it.
func TestCapCounting(t *testing.T) {
	src := `service game = udp/27015
limit ssh 1 concurrent per source reject
limit ssh 1/10s per source
limit game 1 concurrent per source

test "resets and refusals" {
    at 0s from 198.51.100.10 port 41000 tcp/22 expect accept
    at 1s from 198.51.100.10 port 41000 tcp/22 expect accept      # its flow is established: not counted again
    at 1500ms from 198.51.100.10 port 41000 tcp/22 data flags R expect accept
    at 2s from 198.51.100.10 tcp/22 expect drop                   # the reset one is gone; the rate limit refuses
    at 2004ms from 198.51.100.10 tcp/22 expect reject             # the refused one, a tick old, still counts
    at 2012ms from 198.51.100.10 tcp/22 expect drop               # two ticks on, the refused ones are gone
}

test "udp" {
    at 0s from 198.51.100.30 udp/27015 expect accept
    at 1s from 198.51.100.30 udp/27015 expect drop
    at 10s from 198.51.100.30 udp/27015 expect drop
}
`
	pol, diags := lang.Load("cap.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, test := range pol.Tests {
		for _, b := range compile.Names() {
			res := RunTest(pol, test, b)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			for _, sr := range res.Failures() {
				t.Errorf("%s (%s): %s", test.Name, b, sr.Message())
			}
		}
	}
}
