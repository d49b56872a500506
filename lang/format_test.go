package lang

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// irOpts compare policies by meaning: positions are ignored.
var irOpts = cmp.Options{
	cmpopts.IgnoreTypes(Pos{}),
	cmpopts.IgnoreFields(Policy{}, "File"),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func examples(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../examples/*.kwl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	own, _ := filepath.Glob("../examples/*/*.kwl") // what one backend alone can do
	files = append(files, own...)
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	return out
}

// TestFormatExamples formats every example twice: the first pass keeps
// the meaning (same IR) and the second changes nothing.
func TestFormatExamples(t *testing.T) {
	for name, src := range examples(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pol, diags := Load(name, src)
			if diags.HasErrors() {
				t.Fatalf("example does not check:\n%v", diags)
			}
			f, _ := Parse(name, src)
			once := Format(f)
			pol2, diags := Load(name, once)
			if diags.HasErrors() {
				t.Fatalf("formatted example does not check:\n%v\n%s", diags, once)
			}
			if d := cmp.Diff(pol, pol2, irOpts); d != "" {
				t.Errorf("formatting changed the meaning (-before +after):\n%s", d)
			}
			f2, _ := Parse(name, once)
			if twice := Format(f2); string(twice) != string(once) {
				t.Errorf("fmt is not idempotent:\n--- once\n%s--- twice\n%s", once, twice)
			}
			if string(once) != string(src) {
				t.Errorf("example is not in canonical form; run kwl fmt -w %s", name)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"only comments", "# a\n\n\n# b\n", "# a\n\n# b\n"},
		{"semicolons split", "knock 1600 opens ssh for 60s;limit ssh 3/60s per source;", "knock 1600 opens ssh for 60s\nlimit ssh 3/60s per source\n"},
		{"spaces", "  knock   1600 ,tcp/1601   opens ssh   for 60s  ", "knock 1600, tcp/1601 opens ssh for 60s\n"},
		{"leading blank lines dropped", "\n\n\nallow ssh\n", "allow ssh\n"},
		{"blank runs collapse", "allow ssh\n\n\n\nallow http\n", "allow ssh\n\nallow http\n"},
		{"trailing comments aligned", "allow ssh # a\nallow https from 10.0.0.0/8 # b\n\nallow http # c\n",
			"allow ssh                   # a\nallow https from 10.0.0.0/8 # b\n\nallow http # c\n"},
		{"all clauses", `limit ssh 3/60s per source/24/64 ban 5m family ipv4 log info prefix "x: "`,
			`limit ssh 3/60s per source/24/64 ban 5m family ipv4 log info prefix "x: "` + "\n"},
		{"reject", "knock 1600  opens ssh for 60s   reject log info\nlimit ssh 3/60s per source ban 1m family ipv6  reject", "knock 1600 opens ssh for 60s reject log info\nlimit ssh 3/60s per source ban 1m family ipv6 reject\n"},
		{"once", "knock 1600 opens ssh   once  for 60s reject", "knock 1600 opens ssh once for 60s reject\n"},
		{"door per prefix", "knock 1600 opens ssh  for 60s per  source / 24/64 reject", "knock 1600 opens ssh for 60s per source/24/64 reject\n"},
		{"cap", "limit ssh  15   concurrent per source/24 ban 1h all", "limit ssh 15 concurrent per source/24 ban 1h all\n"},
		{"several services", "knock 1600 opens ssh ,https,  http once for 1m\nknock 1599 closes ssh,https", "knock 1600 opens ssh, https, http once for 1m\nknock 1599 closes ssh, https\n"},
		{"strict", "knock 1, 2   within 2s  strict opens ssh for 60s", "knock 1, 2 within 2s strict opens ssh for 60s\n"},
		{"exclusive", "knock 1, 2  exclusive   closes ssh", "knock 1, 2 exclusive closes ssh\n"},
		{"ignore", "knock 1, 2 opens ssh for 60s  ignore 1.5m   pass", "knock 1, 2 opens ssh for 60s ignore 1m30s pass\n"},
		{"pass", "knock 8080 opens ssh for 60s  pass reject\nknock 8081  closes ssh pass", "knock 8080 opens ssh for 60s pass reject\nknock 8081 closes ssh pass\n"},
		{"ban all", "limit ssh 3/60s per source  ban 1h   all  log info", "limit ssh 3/60s per source ban 1h all log info\n"},
		{"shared", "limit https  100/1s   shared ban 1m", "limit https 100/1s shared ban 1m\n"},
		{"service", "service web=tcp/8080,udp/8081 forward to 10.0.0.5", "service web = tcp/8080, udp/8081 forward to 10.0.0.5\n"},
		{"test block", "test \"t\" {  # c\nat 0s from ::1 tcp/22 expect drop # d\n\n\n  at 1s from ::1 port 5 to ::2 udp/53 data expect accept nft drop\n} # e\n",
			"test \"t\" { # c\n    at 0s from ::1 tcp/22 expect drop # d\n\n    at 1s from ::1 port 5 to ::2 udp/53 data expect accept nft drop\n} # e\n"},
		{"one-line test", `test "t" { at 0s from 1.2.3.4 tcp/22 expect drop }`, "test \"t\" {\n    at 0s from 1.2.3.4 tcp/22 expect drop\n}\n"},
		{"in", "knock 1, 2   in 5.0s  opens ssh for 1m\nknock 2,1 within 1s in 1.5m closes ssh", "knock 1, 2 in 5s opens ssh for 1m\nknock 2, 1 within 1s in 1m30s closes ssh\n"},
		{"durations", "knock 1600, 1601 within 1.50s opens ssh for 2.5m\nlimit ssh 3/0.5m per source ban 1h60m\nlimit http 3/90s ban 30s1m",
			"knock 1600, 1601 within 1.5s opens ssh for 2m30s\nlimit ssh 3/30s per source ban 2h\nlimit http 3/90s ban 1m30s\n"},
		{"step times", "test \"t\" {\n at 0.4s from ::1 tcp/22 expect drop\n at 1m0.50s from ::1 tcp/22 expect drop\n at 61.000s from ::1 tcp/22 expect drop\n}",
			"test \"t\" {\n    at 400ms from ::1 tcp/22 expect drop\n    at 1m0.5s from ::1 tcp/22 expect drop\n    at 61s from ::1 tcp/22 expect drop\n}\n"},
		{"crlf", "allow ssh\r\nallow http\r\n", "allow ssh\nallow http\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, diags := Parse("t.kwl", []byte(tc.in))
			if diags.HasErrors() {
				t.Fatalf("parse: %v", diags)
			}
			got := string(Format(f))
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			f2, _ := Parse("t.kwl", []byte(got))
			if again := string(Format(f2)); again != got {
				t.Errorf("not idempotent:\n%s", again)
			}
		})
	}
}

func cmpIR(a, b *Policy) string { return cmp.Diff(a, b, irOpts) }
