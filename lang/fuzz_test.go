package lang

import (
	"testing"
)

// FuzzParse: no input panics; a policy that checks formats to text that
// still checks, means the same, and formats to itself.
func FuzzParse(f *testing.F) {
	for _, src := range examples(f) {
		f.Add(src)
	}
	f.Add([]byte("knock 1600 opens ssh for 60s; limit ssh 3/60s per source/24/64 ban 5m family ipv4 log info prefix \"x\""))
	f.Add([]byte("limit https 100/1s shared ban 1m; allow ssh from ::ffff:10.0.0.1; service w = 22 forward to 127.0.0.1"))
	f.Add([]byte("test \"t\" { at 0s from ::1 port 5 to ::2 udp/53 data expect accept nft drop } # c"))
	f.Add([]byte("knock 1600, 1601 within 1.5s opens ssh for 2.5m; limit ssh 3/0.5s ban .25h\ntest \"t\" { at 0.4s from 1.2.3.4 tcp/22 expect drop }"))
	f.Add([]byte("knock 1600 opens ssh for 1h0.000000001s; limit ssh 3/1500us per source ban 1.s\ntest \"t\" { at 30s1m from ::1 tcp/22 expect drop }"))
	f.Add([]byte("knock udp/9 from 10.0.0.0/8 secret \"/k\" opens ssh once for 5s per source/24\ntest \"t\" at 2026-12-01T10:00:29.5Z { at 0s from 10.0.0.1 udp/9 token stale expect drop }"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := Parse("f.kwl", src)
		pol, cd := Check(file)
		if diags.HasErrors() || cd.HasErrors() {
			return
		}
		out := Format(file)
		pol2, d2 := Load("f.kwl", out)
		if d2.HasErrors() {
			t.Fatalf("formatted text does not check:\n%v\n--- input\n%q\n--- formatted\n%s", d2, src, out)
		}
		if d := cmpIR(pol, pol2); d != "" {
			t.Fatalf("formatting changed the meaning:\n%s\n--- input\n%q", d, src)
		}
		f2, _ := Parse("f.kwl", out)
		if again := Format(f2); string(again) != string(out) {
			t.Fatalf("fmt not idempotent:\n--- input\n%q\n--- once\n%s--- twice\n%s", src, out, again)
		}
	})
}
