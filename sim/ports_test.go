package sim

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

// TestFreshPortsRunOut: a test of more fresh source ports than 40000 to
// 65535 ends with an error at the step, where it used to loop forever;
// one of exactly as many runs.
func TestFreshPortsRunOut(t *testing.T) {
	pol, diags := lang.Load("p.kwl", []byte("allow ssh\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	src := netip.MustParseAddr("192.0.2.1")
	steps := func(n int) *lang.Test {
		tt := &lang.Test{Name: "many"}
		for i := 0; i < n; i++ {
			tt.Steps = append(tt.Steps, &lang.Step{Pos: lang.Pos{File: "p.kwl", Line: i + 2}, At: time.Duration(i) * time.Millisecond,
				Src: src, Port: lang.Port{Proto: lang.UDP, Num: 53}, Expect: lang.Accept})
		}
		return tt
	}
	free := 65536 - firstEphemeral
	for _, backend := range []string{"nft", "iptables"} {
		done := make(chan TestResult, 1)
		go func() { done <- RunTest(pol, steps(free+1), backend) }()
		select {
		case r := <-done:
			if r.Err == nil || !strings.Contains(r.Err.Error(), "fresh source port") || !strings.Contains(r.Err.Error(), free2line(free)) {
				t.Errorf("%s: %d steps: err %v, want the step at line %d out of fresh source ports", backend, free+1, r.Err, free+2)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: %d steps: still running after a minute", backend, free+1)
		}
		if r := RunTest(pol, steps(free), backend); r.Err != nil || !r.Passed() {
			t.Errorf("%s: %d steps: err %v, passed %v", backend, free, r.Err, r.Passed())
		}
	}
}

func free2line(free int) string { return "p.kwl:" + itoa(free+2) + ":" }
