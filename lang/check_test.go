package lang

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCheckErrors has one case per checker code: the source, the code,
// where it points and words of its message.
func TestCheckErrors(t *testing.T) {
	tests := []struct {
		name, src string
		code      Code
		line, col int
		msg, hint string
	}{
		{"unknown service", "knock 1600 opens shh for 60s", "E01", 1, 18, `unknown service "shh"`, "did you mean 'ssh'?"},
		{"unknown service no hint", "allow webserver", "E01", 1, 7, `unknown service "webserver"`, "define it first"},
		{"port zero", "knock 0 opens ssh for 60s", "E02", 1, 7, "port 0 is out of range", ""},
		{"port too big", "close ssh on udp/65536", "E02", 1, 14, "port 65536 is out of range", ""},
		{"source port", `test "t" { at 0s from 1.2.3.4 port 0 tcp/22 expect drop }`, "E02", 1, 36, "source port 0", ""},
		{"zero lifetime", "knock 1600 opens ssh for 0s", "E03", 1, 26, "must be positive, not 0s", ""},
		{"negative window", "limit ssh 3/-60s", "E03", 1, 13, "must be positive", ""},
		{"zero within", "knock 1, 2 within 0ms opens ssh for 5s", "E03", 1, 19, "must be positive", ""},
		{"zero in", "knock 1, 2 in 0s opens ssh for 5s", "E03", 1, 15, "must be positive", ""},
		{"in on one knock", "knock 1600 in 5s opens ssh for 60s", "E27", 1, 15, "no sequence", `drop "in 5s"`},
		{"zero ban", "limit ssh 3/60s per source ban 0s", "E03", 1, 32, "must be positive", ""},
		{"huge duration", "knock 1600 opens ssh for 9000000h", "E03", 1, 26, "too long", ""},
		{"negative step time", `test "t" { at -1s from 1.2.3.4 tcp/22 expect drop }`, "E03", 1, 15, "must be positive", ""},
		{"bad address", "allow ssh from 1.2.3.256", "E04", 1, 16, `"1.2.3.256" is not an IP address`, ""},
		{"bad prefix length", "allow ssh from fd00::/129", "E04", 1, 16, "not a valid CIDR", "0 to 128"},
		{"forward to a network", "service s = 22 forward to 10.0.0.0/8", "E04", 1, 27, "must be one address", ""},
		{"host bits", "knock 1600 from 203.0.113.7/24 opens ssh for 60s", "E05", 1, 17, "203.0.113.7/24 has bits set", "did you mean 203.0.113.0/24?"},
		{"host bits v6", "allow ssh from fd00::1/8", "E05", 1, 16, "has bits set", "did you mean fd00::/8?"},
		{"knock on its service", "knock 22 opens ssh for 60s", "E06", 1, 7, "knock port tcp/22 is a port of ssh itself", ""},
		{"knock on a defined service", "service web = 8080\nknock 1, 8080 opens web for 60s", "E06", 2, 10, "tcp/8080 is a port of web", ""},
		{"close on its service", "knock 1600 opens ssh for 60s\nclose ssh on 1599, 22", "E06", 2, 20, "close port tcp/22", ""},
		{"defined twice", "service a = 1\nservice a = 2", "E07", 2, 1, `service "a" is defined twice`, "line 1"},
		{"limit zero", "limit ssh 0/60s", "E08", 1, 11, "at least 1, not 0", ""},
		{"limit huge", "limit ssh 99999999999999999999/60s", "E08", 1, 11, "too large", ""},
		{"repeated knock", "knock 1, 2, 2 opens ssh for 60s", "E09", 1, 13, "tcp/2 is repeated in this sequence", "knock another port in between"},
		{"repeated close port", "close ssh on 1, udp/1, 1", "E09", 1, 24, "repeated in this list", ""},
		{"time goes back", "test \"t\" {\n    at 5s from 1.2.3.4 tcp/22 expect drop\n    at 4s from 1.2.3.4 tcp/22 expect drop\n}", "E10", 3, 5, "step at 4s comes before the previous step", "line 2 is at 5s"},
		{"log level", "allow ssh log warning", "E11", 1, 15, `unknown log level "warning"`, "did you mean 'warn'?"},
		{"log level far", "allow ssh log loud", "E11", 1, 15, `unknown log level "loud"`, "levels are"},
		{"mask v4", "limit ssh 3/60s per source/0", "E12", 1, 28, "per source/0 is out of range for IPv4", ""},
		{"mask v6", "limit ssh 3/60s per source/24/129", "E12", 1, 31, "per source/129 is out of range for IPv6", ""},
		{"bad escape", `allow ssh log info prefix "a\q"`, "E13", 1, 11, "not a valid string", ""},
		{"bad test name", `test "\z" { at 0s from 1.2.3.4 tcp/22 expect drop }`, "E13", 1, 1, "test name", ""},
		{"family excludes source", "allow ssh from 10.0.0.0/8 family ipv6", "E14", 1, 16, "10.0.0.0/8 can never match", ""},
		{"step families", `test "t" { at 0s from 1.2.3.4 to ::1 tcp/22 expect drop }`, "E14", 1, 34, "the families differ", ""},
		{"opens without for", "knock 1600 opens ssh", "E15", 1, 18, "does not say for how long", "for 60s"},
		{"closes with for", "knock 1600 closes ssh for 5s", "E15", 1, 23, "takes no lifetime", ""},
		{"unknown flag", `test "t" { at 0s from 1.2.3.4 tcp/22 flags SX expect drop }`, "E24", 1, 44, `"X" is not a TCP flag in "SX"`, "S (SYN), A (ACK)"},
		{"flag twice", `test "t" { at 0s from 1.2.3.4 tcp/22 flags AA expect drop }`, "E24", 1, 44, "TCP flag A is given twice", ""},
		{"flags on udp", `test "t" { at 0s from 1.2.3.4 udp/53 flags A expect drop }`, "E24", 1, 44, "a UDP datagram has no TCP flags", ""},
		{"long name", "service " + strings.Repeat("a", 65) + " = 2222", "E25", 1, 1, "service name of 65 characters is longer than 64", "fewer words"},
		{"long test", "test \"t\" {\n" + strings.Repeat("at 0s from 1.2.3.4 tcp/22 expect drop\n", MaxTestSteps+1) + "}", "E26", MaxTestSteps + 2, 1, `test "t" has more than 10000 steps`, "split"},
		{"reject on close", "knock 1600 opens ssh for 60s\nclose ssh on 1599 reject", "E28", 2, 19, "refuses no connection: a close drops its knocks", `drop "reject"`},
		{"reject on closing knock", "knock 1600 opens ssh for 60s\nknock 1599 closes ssh reject", "E28", 2, 23, "a closing knock", `drop "reject"`},
		{"reject on allow", "allow ssh family ipv4 reject", "E28", 1, 23, "an allow admits", `drop "reject"`},
		{"doors disagree", "knock 1600 opens ssh for 60s reject\nknock 1700 opens ssh for 60s", "E29", 2, 1, "this door of ssh drops connections while no door is open, the door at line 1 rejects", "reject on every door of ssh"},
		{"once on a closing knock", "knock 1600 opens ssh for 60s\nknock 1599 closes ssh once", "E30", 2, 23, "opens no door to use once", `drop "once"`},
		{"once on udp", "knock 1600 opens wireguard once for 60s", "E31", 1, 28, "cannot guard UDP", "TCP ports only (wireguard has UDP ports)"},
		{"reject on a ban of all", "limit ssh 3/60s per source ban 1h all reject", "E32", 1, 39, "the host would answer every packet of a banned source", `drop "reject"`},
		{"per source on a closing knock", "knock 1600 opens ssh for 60s\nknock 1599 closes ssh per source/24", "E33", 2, 23, "a closing knock opens no door to key by source prefix", `drop "per source"`},
		{"door mask out of range", "knock 1600 opens ssh for 60s per source/33", "E12", 1, 41, "per source/33 is out of range for IPv4", ""},
		{"cap too large", "limit ssh 70000 concurrent", "E08", 1, 11, "limit count 70000 is too large", "a cap holds at most 65535 concurrent connections"},
		{"shared ban on a cap", "limit ssh 10 concurrent ban 1h", "E17", 1, 25, "ban without per source", "limit ssh 10 concurrent per source ban 1h"},
		{"service named twice", "knock 1600 opens ssh, https, ssh for 60s", "E34", 1, 30, "ssh is named twice", "name each service once"},
		{"once on udp among several", "knock 1600 opens ssh, wireguard once for 60s", "E31", 1, 33, "cannot guard UDP", "wireguard has UDP ports"},
		{"burst", "limit ssh 3/1m burst 5 per source", "E37", 1, 16, "a limit has no burst: 3/1m admits up to 3 at once, and at most 3 in any 1m", `write 5/1m40s`},
		{"burst on a cap", "limit ssh 3 concurrent burst 5", "E37", 1, 24, "a cap has no burst", `drop "burst 5"`},
		{"strict on one knock", "knock 1600 strict opens ssh for 60s", "E36", 1, 12, "a single knock has no attempt in progress", `drop "strict"`},
		{"exclusive on one closing knock", "knock 1600, 1700 opens ssh for 60s\nknock 1599 exclusive closes ssh", "E36", 2, 12, "a single knock has no attempt", `drop "exclusive"`},
		{"ignore on one knock", "knock 1600 opens ssh for 60s ignore 1m", "E35", 1, 30, "a single knock is never out of order", `drop "ignore 1m"`},
		{"ignore on a closing knock", "knock 1600, 1700 opens ssh for 60s\nknock 1599, 1598 closes ssh ignore 1m", "E35", 2, 29, "a closing knock ignores no source", `drop "ignore 1m"`},
		{"backend twice", `test "t" { at 0s from 1.2.3.4 tcp/22 expect drop nft accept nft drop }`, "E16", 1, 61, "verdict for nft is given twice", ""},
		{"secret on TCP", `knock 1600 secret "/k" opens ssh for 60s`, "E38", 1, 7, "its port is a UDP port", "write udp/1600"},
		{"secret on a sequence", `knock udp/1, udp/2 secret "/k" opens ssh for 60s`, "E38", 1, 14, "not a sequence", "knock one UDP port"},
		{"secret closes", `knock udp/1 secret "/k" closes ssh`, "E38", 1, 13, "a closing knock takes no secret", "drop the secret"},
		{"secret within", `knock udp/1 secret "/k" within 5s opens ssh for 60s`, "E38", 1, 32, "no sequence", `drop "5s"`},
		{"secret pass", `knock udp/1 secret "/k" opens ssh for 60s pass`, "E38", 1, 43, "used up, not passed on", `drop "pass"`},
		{"secret relative", `knock udp/1 secret "ssh.key" opens ssh for 60s`, "E38", 1, 20, "not an absolute path", "from the root"},
		{"secret bad string", `knock udp/1 secret "/a\q" opens ssh for 60s`, "E13", 1, 20, "not a valid string", ""},
		{"secret port shared", "knock udp/1 secret \"/k\" opens ssh for 60s\nclose ssh on udp/1", "E38", 2, 14, "the port of the secret knock at line 1", "its own port"},
		{"secret shared", "knock udp/1 secret \"/k\" opens ssh for 60s\nknock udp/2 secret \"/x/../k\" opens http for 60s", "E38", 2, 20, "the secret knock at line 1 has the same secret", "a secret file of its own"},
		{"token on TCP", "knock udp/1 secret \"/k\" opens ssh for 60s\n" + `test "t" { at 0s from 1.2.3.4 tcp/22 token expect drop }`, "E39", 2, 38, "not tcp/22", ""},
		{"token with data", "knock udp/1 secret \"/k\" opens ssh for 60s\n" + `test "t" { at 0s from 1.2.3.4 udp/1 data token expect drop }`, "E39", 2, 42, "no flow", `drop "data"`},
		{"token without a secret knock", "knock udp/1 opens ssh for 60s\n" + `test "t" { at 0s from 1.2.3.4 udp/1 token forged expect drop }`, "E39", 2, 37, "no secret knock takes a token on udp/1", ""},
		{"test start not UTC", `test "t" at 2026-12-01T10:00:00 { }`, "E40", 1, 13, "not a time in UTC", "2026-12-01T10:00:00Z"},
		{"test start not a time", `test "t" at noon { }`, "E40", 1, 13, "not a time", "RFC 3339"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Load("p.kwl", []byte(tc.src))
			var found []string
			for _, d := range diags {
				found = append(found, d.String())
				if d.Code != tc.code {
					continue
				}
				if d.Pos.Line != tc.line || d.Pos.Col != tc.col {
					t.Errorf("%s at %d:%d, want %d:%d", d, d.Pos.Line, d.Pos.Col, tc.line, tc.col)
				}
				if !strings.Contains(d.Message, tc.msg) {
					t.Errorf("message %q does not contain %q", d.Message, tc.msg)
				}
				if !strings.Contains(d.Hint, tc.hint) {
					t.Errorf("hint %q does not contain %q", d.Hint, tc.hint)
				}
				if d.Severity != Error {
					t.Errorf("severity %v, want error", d.Severity)
				}
				return
			}
			t.Errorf("no %s; got %q", tc.code, found)
		})
	}
}

// TestColumns: a diagnostic points at the word at fault however the
// statement is spaced, with several spaces or tabs between the words.
// word is the text the diagnostic must point at, its last occurrence on
// the diagnostic's line.
func TestColumns(t *testing.T) {
	tests := []struct {
		name, src string
		code      Code
		word      string
	}{
		{"log level after three spaces", "allow ssh log   warnin", ErrLogLevel, "warnin"},
		{"log level after two tabs", "allow ssh log\t\twarnin", ErrLogLevel, "warnin"},
		{"log level in a spaced statement", "knock  1600\topens ssh  for 60s   log \t  loud", ErrLogLevel, "loud"},
		{"log prefix", "allow ssh log info prefix  \t\"" + strings.Repeat("a", MaxLogPrefix+1) + "\"", ErrLogPrefix, `"aaa`},
		{"log rate count", "allow ssh log info rate   0 / 1m", ErrLogRate, "0 /"},
		{"log rate window", "allow ssh log info rate 1 /  48h", ErrLogRate, "48h"},
		{"unknown service", "allow    shh", ErrUnknownService, "shh"},
		{"lifetime", "knock 1600 opens ssh for\t\t0s", ErrDuration, "0s"},
		{"closing lifetime", "knock 1600 closes  ssh \t for 5s", ErrLifetime, "for"},
		{"within", "knock 1, 2  within   0ms opens ssh for 5s", ErrDuration, "0ms"},
		{"in", "knock 1, 2  in 	 0s opens ssh for 5s", ErrDuration, "0s"},
		{"limit count", "limit  ssh   0 / 60s", ErrLimitCount, "0 /"},
		{"limit window", "limit ssh 3 /\t-60s", ErrDuration, "-60s"},
		{"mask v4 with spaces", "limit ssh 3/60s per source / 0", ErrMask, "0"},
		{"mask v6 after spaces", "limit ssh 3/60s per source/24/  129", ErrMask, "129"},
		{"mask v6 after a spaced v4", "limit ssh 3/60s per source /  24 / 129", ErrMask, "129"},
		{"shared ban", "limit ssh 3/60s   ban  5m", ErrSharedBan, "ban"},
		{"ban", "limit ssh 3/60s per source ban\t0s", ErrDuration, "0s"},
		{"step time", "test \"t\" {\n\tat   -1s from 1.2.3.4 tcp/22 expect drop\n}", ErrDuration, "-1s"},
		{"step source port", "test \"t\" {\n\tat 0s from 1.2.3.4 port   0  tcp/22 expect drop\n}", ErrPortRange, "0  tcp"},
		{"step flags", "test \"t\" {\n\tat 0s from 1.2.3.4 tcp/22 flags \t SX expect drop\n}", ErrFlags, "SX"},
		{"door family", "knock 1600 opens ssh for 60s family    ipv4", LintDoorFamily, "ipv4"},
		{"dead ban", "limit ssh 3/60s per source\nlimit ssh 5/60s per source  \t ban 5m", LintDeadLimit, "ban"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Load("p.kwl", []byte(tc.src))
			for _, d := range diags {
				if d.Code != tc.code {
					continue
				}
				line := strings.Split(tc.src, "\n")[d.Pos.Line-1]
				if want := strings.LastIndex(line, tc.word) + 1; d.Pos.Col != want {
					t.Errorf("%s at column %d, want %d (%q)", d, d.Pos.Col, want, tc.word)
				}
				return
			}
			t.Errorf("no %s; got %v", tc.code, diags)
		})
	}
}

func TestCheckWarnings(t *testing.T) {
	_, diags := Load("p.kwl", []byte("limit https 10/1s\nknock 443 opens ssh for 60s\nclose ssh on 80\nallow http"))
	if diags.HasErrors() {
		t.Fatalf("errors: %v", diags)
	}
	want := []string{
		"p.kwl:2:7: warning: knock port tcp/443 is also the port of limited service https [L04]",
		"p.kwl:3:14: warning: close port tcp/80 is also the port of allowed service http [L04]",
	}
	var got []string
	for _, d := range diags {
		got = append(got, d.String())
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
}

// TestCheckAllErrors: every error of a file in one run.
func TestCheckAllErrors(t *testing.T) {
	src := "knock 1600 opens shh for 60s\nlimit ssh 0/60s\nallow ssh from 10.0.0.1/8\nknock opens\nlimit ssh 3/60s per source/40\n"
	_, diags := Load("p.kwl", []byte(src))
	var lines []int
	for _, d := range diags {
		lines = append(lines, d.Pos.Line)
	}
	if d := cmp.Diff([]int{1, 2, 3, 4, 5}, lines); d != "" {
		t.Errorf("lines of the diagnostics (-want +got):\n%s\n%v", d, diags)
	}
}

// TestCheckIR pins the meaning of the statements.
func TestCheckIR(t *testing.T) {
	src := `service ssh = tcp/2222
service web = tcp/8080, udp/8081 forward to 192.168.1.5
knock 7000, udp/8000, 9000 opens ssh for 30s per source/24/64
knock 1600 from 203.0.113.0/24 opens web for 1m log info prefix "door: "
knock 9000, 8000 within 2s closes ssh
knock 1599 closes ssh
close web on 1601, 1602 family ipv6
limit https 100/1s
limit ssh 3/60s per source
limit ssh 3/60s per source/24 ban 5m all
limit ssh 3/60s per source/24/64
allow ssh from 10.0.0.0/8, fd00::/8
allow dns from 10.0.0.1
test "t" {
    at 0s from 198.51.100.10 tcp/2222 expect drop
    at 1500ms from 198.51.100.10 port 40000 to 192.0.2.1 tcp/2222 data expect accept iptables drop
    at 2s from 198.51.100.10 tcp/7000 flags A expect drop
    at 2s from 198.51.100.10 tcp/7000 flags none expect drop
    at 2s from 198.51.100.10 tcp/2222 data flags FPU expect drop
}
`
	pol, diags := Load("p.kwl", []byte(src))
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	ssh := &Service{Ref: Ref{ID: 1}, Name: "ssh", Ports: []Port{{TCP, 2222}}, Guarded: true}
	web := &Service{Ref: Ref{ID: 2}, Name: "web", Ports: []Port{{TCP, 8080}, {UDP, 8081}}, Forward: netip.MustParseAddr("192.168.1.5"), Guarded: true}
	https := &Service{Name: "https", Ports: []Port{{TCP, 443}}}
	dns := &Service{Name: "dns", Ports: []Port{{UDP, 53}, {TCP, 53}}}
	pfx := netip.MustParsePrefix
	want := &Policy{
		Services: []*Service{ssh, web, https, dns},
		Doors: []*Door{
			{Ref: Ref{ID: 3}, Service: ssh, Sequence: []Port{{TCP, 7000}, {UDP, 8000}, {TCP, 9000}}, Within: 5 * time.Second, Lifetime: 30 * time.Second, Mask4: 24, Mask6: 64},
			{Ref: Ref{ID: 4}, Service: web, Sequence: []Port{{TCP, 1600}}, Lifetime: time.Minute, Mask4: 32, Mask6: 128, From: []netip.Prefix{pfx("203.0.113.0/24")}, Family: IPv4, Log: &Log{Level: "info", Prefix: "door: ", Rate: DefaultLogRate, Per: DefaultLogPer}},
		},
		Revokes: []*Revoke{
			{Ref: Ref{ID: 5}, Service: ssh, Sequence: []Port{{TCP, 9000}, {TCP, 8000}}, Within: 2 * time.Second},
			{Ref: Ref{ID: 6}, Service: ssh, Ports: []Port{{TCP, 1599}}},
			{Ref: Ref{ID: 7}, Service: web, Ports: []Port{{TCP, 1601}, {TCP, 1602}}, Family: IPv6},
		},
		Limits: []*Limit{
			{Ref: Ref{ID: 8}, Service: https, Count: 100, Window: time.Second, Mask4: 32, Mask6: 128},
			{Ref: Ref{ID: 9}, Service: ssh, Count: 3, Window: time.Minute, PerSource: true, Mask4: 32, Mask6: 128},
			{Ref: Ref{ID: 10}, Service: ssh, Count: 3, Window: time.Minute, PerSource: true, Mask4: 24, Mask6: 128, Ban: 5 * time.Minute, BanAll: true},
			{Ref: Ref{ID: 11}, Service: ssh, Count: 3, Window: time.Minute, PerSource: true, Mask4: 24, Mask6: 64},
		},
		Allows: []*Allow{
			{Ref: Ref{ID: 12}, Service: ssh, From: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/8")}},
			{Ref: Ref{ID: 13}, Service: dns, From: []netip.Prefix{pfx("10.0.0.1/32")}, Family: IPv4},
		},
		Tests: []*Test{{Ref: Ref{ID: 14}, Name: "t", Start: DefaultTestStart, Steps: []*Step{
			{At: 0, Src: netip.MustParseAddr("198.51.100.10"), Port: Port{TCP, 2222}, Expect: Drop},
			{At: 1500 * time.Millisecond, Src: netip.MustParseAddr("198.51.100.10"), SPort: 40000, Dst: netip.MustParseAddr("192.0.2.1"),
				Port: Port{TCP, 2222}, Kind: Data, Expect: Accept, ExpectOn: []BackendVerdict{{Backend: "iptables", Verdict: Drop}}},
			{At: 2 * time.Second, Src: netip.MustParseAddr("198.51.100.10"), Port: Port{TCP, 7000}, Flags: ACK, HasFlags: true, Expect: Drop},
			{At: 2 * time.Second, Src: netip.MustParseAddr("198.51.100.10"), Port: Port{TCP, 7000}, HasFlags: true, Expect: Drop},
			{At: 2 * time.Second, Src: netip.MustParseAddr("198.51.100.10"), Port: Port{TCP, 2222}, Kind: Data, Flags: FIN | PSH | URG, HasFlags: true, Expect: Drop},
		}}},
	}
	if d := cmp.Diff(want, pol, irOpts); d != "" {
		t.Errorf("IR (-want +got):\n%s", d)
	}
	if pol.Doors[0].Pos.Line != 3 || pol.Tests[0].Steps[1].Pos.Line != 16 {
		t.Errorf("positions: door %v, step %v", pol.Doors[0].Pos, pol.Tests[0].Steps[1].Pos)
	}
}

// TestBuiltinRedefinedOnce: a service statement may redefine a built-in
// name once; the definition wins everywhere, even above it.
func TestBuiltinRedefinedOnce(t *testing.T) {
	pol, diags := Load("p.kwl", []byte("knock 1600 opens ssh for 60s\nservice ssh = tcp/2222"))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if got := pol.Doors[0].Service.Ports; len(got) != 1 || got[0] != (Port{TCP, 2222}) {
		t.Errorf("ssh ports %v", got)
	}
}

// TestTCPFlags reads and prints flags as tcpdump's letters.
func TestTCPFlags(t *testing.T) {
	tests := []struct {
		in   string
		want TCPFlags
		bad  string
		ok   bool
		out  string
	}{
		{"S", SYN, "", true, "S"},
		{"A", ACK, "", true, "A"},
		{"AS", SYN | ACK, "", true, "SA"},
		{"FPU", FIN | PSH | URG, "", true, "FPU"},
		{"none", 0, "", true, "none"},
		{"SFRPAUEW", 0xff, "", true, "FSRPAUEW"},
		{"SS", 0, "S", false, ""},
		{"s", 0, "s", false, ""},
		{"S.", 0, ".", false, ""},
		{"", 0, "", false, ""},
	}
	for _, tc := range tests {
		f, bad, ok := ParseTCPFlags(tc.in)
		if f != tc.want || bad != tc.bad || ok != tc.ok {
			t.Errorf("ParseTCPFlags(%q) = %v, %q, %v; want %v, %q, %v", tc.in, f, bad, ok, tc.want, tc.bad, tc.ok)
		}
		if ok && f.String() != tc.out {
			t.Errorf("%q: String() = %q, want %q", tc.in, f.String(), tc.out)
		}
	}
}

// TestCheckSpan: "in DUR" is the window of the whole sequence; without
// "within" it also bounds each gap, and with it each keeps its own.
func TestCheckSpan(t *testing.T) {
	tests := []struct {
		src          string
		within, span time.Duration
	}{
		{"knock 1, 2, 3 in 5s opens ssh for 60s", 5 * time.Second, 5 * time.Second},
		{"knock 1, 2, 3 within 2s in 5s opens ssh for 60s", 2 * time.Second, 5 * time.Second},
		{"knock 1, 2, 3 opens ssh for 60s", 5 * time.Second, 0},
		{"knock 1, 2, 3 in 1m closes ssh", time.Minute, time.Minute},
	}
	for _, tc := range tests {
		pol, diags := Load("p.kwl", []byte(tc.src))
		if diags.HasErrors() {
			t.Fatalf("%s: %v", tc.src, diags)
		}
		var within, span time.Duration
		if len(pol.Doors) > 0 {
			within, span = pol.Doors[0].Within, pol.Doors[0].Span
		} else {
			within, span = pol.Revokes[0].Within, pol.Revokes[0].Span
		}
		if within != tc.within || span != tc.span {
			t.Errorf("%s: within %v in %v, want %v and %v", tc.src, within, span, tc.within, tc.span)
		}
	}
}

// TestCheckReject: a reject clause sets Reject on the door or the limit
// it is written on, and on nothing else.
func TestCheckReject(t *testing.T) {
	src := "knock 1600 opens ssh for 60s reject\nknock 1700 opens ssh for 5s reject\nknock 1800 opens http for 60s\n" +
		"limit ssh 3/60s per source ban 1m reject\nlimit http 3/60s"
	pol, diags := Load("p.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var got []bool
	for _, d := range pol.Doors {
		got = append(got, d.Reject)
	}
	for _, l := range pol.Limits {
		got = append(got, l.Reject)
	}
	if want := []bool{true, true, false, true, false}; !slices.Equal(got, want) {
		t.Errorf("Reject of doors and limits: %v, want %v", got, want)
	}
}

// TestCheckOnce: "once" makes a door single-use, and no other.
func TestCheckOnce(t *testing.T) {
	pol, diags := Load("p.kwl", []byte("knock 1600 opens ssh once for 60s\nknock 1700 opens ssh for 60s"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if !pol.Doors[0].Once || pol.Doors[1].Once {
		t.Errorf("Once of the doors: %v, %v; want true, false", pol.Doors[0].Once, pol.Doors[1].Once)
	}
}

// TestCheckSecret checks a secret knock and the token steps of a test
// into the IR: the door's secret, the test's start, each step's token
// and its knock's secret.
func TestCheckSecret(t *testing.T) {
	src := `knock udp/62201 from 10.0.0.0/8 secret "/etc/kwl/ssh.key" opens ssh once for 60s per source/24
test "t" at 2026-12-01T10:00:29.5Z {
    at 0s from 10.0.0.1 udp/62201 token expect drop
    at 1s from 10.0.0.1 udp/62201 token stale expect drop
    at 2s from 10.0.0.1 udp/62201 token forged expect drop
    at 3s from 10.0.0.1 udp/62201 expect drop
}
test "u" { }
`
	pol, diags := Load("p.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	d := pol.Doors[0]
	if d.Secret == nil || d.Secret.Path != "/etc/kwl/ssh.key" || d.Secret.Pos.Col != 40 || !d.Once || d.Mask4 != 24 {
		t.Fatalf("door %+v, secret %+v", d, d.Secret)
	}
	if want := time.Date(2026, 12, 1, 10, 0, 29, 5e8, time.UTC); !pol.Tests[0].Start.Equal(want) {
		t.Errorf("start %v, want %v", pol.Tests[0].Start, want)
	}
	if !pol.Tests[1].Start.Equal(DefaultTestStart) {
		t.Errorf("start of a test without one %v, want %v", pol.Tests[1].Start, DefaultTestStart)
	}
	want := []TokenKind{ValidToken, StaleToken, ForgedToken, NoToken}
	for i, st := range pol.Tests[0].Steps {
		if st.Token != want[i] || (st.Secret == d.Secret) != (want[i] != NoToken) {
			t.Errorf("step %d: token %d, secret %v; want %d", i, st.Token, st.Secret, want[i])
		}
	}
}

// TestCheckCap checks a cap of concurrent connections into the IR.
func TestCheckCap(t *testing.T) {
	pol, diags := Load("p.kwl", []byte("limit ssh 15 concurrent per source/24 ban 1h all\n"))
	if diags.HasErrors() || len(pol.Limits) != 1 {
		t.Fatalf("diagnostics: %v", diags)
	}
	l := pol.Limits[0]
	if !l.Concurrent || l.Count != 15 || l.Window != 0 || !l.PerSource || l.Mask4 != 24 || l.Ban != time.Hour || !l.BanAll {
		t.Errorf("cap = %+v", l)
	}
}
