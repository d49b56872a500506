package lang

import (
	"strings"
	"testing"
	"time"
)

// lintCodes are the codes of lint.go and of the checks of single
// statements that came with them.
var lintCodes = []Code{ErrSharedBan, ErrAllowAll, ErrDeadDoor, ErrForwardLocal, ErrMappedSource,
	LintWellKnownKnock, LintCloseOnKnock, LintDuplicate, LintDuplicateTest, LintDoorFamily, LintForwardTakes, LintDeadLimit}

func isLintCode(code Code) bool {
	for _, c := range lintCodes {
		if c == code {
			return true
		}
	}
	return false
}

// TestLints has, for each code, cases where it fires (code set: where it
// points and words of its message and hint) and cases where it does not
// (code empty: none of lintCodes is reported).
func TestLints(t *testing.T) {
	tests := []struct {
		name, src string
		code      Code
		line, col int
		msg, hint string
	}{
		// E17: a ban on a shared counter must say shared.
		{"shared ban", "limit https 100/1s ban 60s", "E17", 1, 20, "ban without per source: once one source spends the counter all sources share, every source that connects is banned",
			"limit https 100/1s shared ban 60s"},
		{"shared ban with family", "limit https 100/1s ban 60s family ipv4", "E17", 1, 20, "ban without per source", "per source ban 60s"},
		{"shared ban said", "limit https 100/1s shared ban 60s # kwl:ignore L09", "", 0, 0, "", ""},
		{"shared without ban", "limit https 100/1s shared", "", 0, 0, "", ""},
		{"per source ban", "limit ssh 3/60s per source/24/64 ban 60s", "", 0, 0, "", ""},

		// E18: allow of every source on a knocked service.
		{"allow all", "knock 1600 opens ssh for 60s\nallow ssh", "E18", 2, 1, "allow ssh admits every source without a knock: the door at line 1 guards nothing", "allow ssh from 192.168.0.0/16"},
		{"allow all above the door", "allow ssh\nknock 1600 opens ssh for 60s", "E18", 1, 1, "the door at line 2", ""},
		{"allow /0", "knock 1600 opens ssh for 60s\nallow ssh from 0.0.0.0/0", "E18", 2, 1, "every IPv4 source", ""},
		{"allow one family", "knock 1600 opens ssh for 60s\nallow ssh family ipv6", "E18", 2, 1, "every IPv6 source", ""},
		{"allow other family", "knock 1600 opens ssh for 60s family ipv4\nallow ssh family ipv6", "", 0, 0, "", ""},
		{"allow from", "knock 1600 opens ssh for 60s\nallow ssh from 10.0.0.0/8", "", 0, 0, "", ""},
		{"allow unknocked", "knock 1600 opens ssh for 60s\nallow http", "", 0, 0, "", ""},

		// E19 and L21: close ports that are knock ports.
		{"dead door", "knock 1600 opens ssh for 60s\nclose ssh on 1599, 1600", "E19", 1, 7, "the door can never open: its last knock, tcp/1600, is also a close port of ssh (line 2), which runs after the knock and revokes the door at once",
			"such as 1599 and 1601"},
		{"dead sequence", "knock 7000, 8000 opens ssh for 60s\nknock 8000 closes ssh", "E19", 1, 13, "its last knock, tcp/8000", "such as 7999 and 8001"},
		{"dead door for some", "knock 1600 opens ssh for 60s\nclose ssh on 1600 from 10.0.0.0/8", "E19", 1, 7, "for the sources both statements name", ""},
		{"close elsewhere", "knock 1600 from 10.0.0.0/8 opens ssh for 60s\nclose ssh on 1600 from 192.168.0.0/16", "", 0, 0, "", ""},
		{"close other family", "knock 1600 opens ssh for 60s family ipv4\nclose ssh on 1600 family ipv6", "L24", 1, 37, "", ""},
		{"close of another service", "knock 1600 opens ssh for 60s\nclose rdp on 1600", "", 0, 0, "", ""},
		{"close before the knock", "close ssh on 1600\nknock 1600 opens ssh for 60s", "L21", 1, 14, "close port tcp/1600 closes nothing: the knock on it at line 2 runs after the close and opens ssh again", "such as 1599 and 1601"},
		{"close in the sequence", "knock 7000, 8000 opens ssh for 60s\nclose ssh on 7000", "L21", 2, 14, "close port tcp/7000 is also a port of the knock sequence at line 1", "ports the knock does not use"},
		{"closing sequence", "knock 7000, 8000, 9000 opens ssh for 60s\nknock 9000, 8000, 7000 closes ssh", "", 0, 0, "", ""},
		{"udp and tcp", "knock udp/1600 opens ssh for 60s\nclose ssh on 1600", "", 0, 0, "", ""},

		// E20: forward to loopback or unspecified.
		{"forward to loopback", "service web = 8080 forward to 127.0.0.1\nallow web from 10.0.0.0/8", "E20", 1, 31, "service web is forwarded to 127.0.0.1, a loopback address", `drop "forward to"`},
		{"forward to ::1", "service web = 8080 forward to ::1", "E20", 1, 31, "loopback", ""},
		{"forward to 0.0.0.0", "service web = 8080 forward to 0.0.0.0", "E20", 1, 31, "the unspecified address", ""},
		{"forward to mapped loopback", "service web = 8080 forward to ::ffff:127.0.0.1", "E20", 1, 31, "loopback", ""},
		{"forward to a host", "service web = 8080 forward to 192.168.1.5\nallow web from 10.0.0.0/8", "", 0, 0, "", ""},

		// E21: IPv4-mapped sources.
		{"mapped allow", "allow ssh from ::ffff:10.0.0.1", "E21", 1, 16, "::ffff:10.0.0.1 is an IPv4-mapped IPv6 address", "write the IPv4 address: 10.0.0.1"},
		{"mapped network", "knock 1600 from ::ffff:10.0.0.0/104 opens ssh for 60s\nclose ssh on 1599, 1601", "E21", 1, 17, "IPv4-mapped", "10.0.0.0/8"},
		{"mapped close", "close ssh on 1599 from 10.0.0.1, ::ffff:10.0.0.2", "E21", 1, 34, "IPv4-mapped", "10.0.0.2"},
		{"v6 network containing the mapped range", "allow ssh from ::/0", "", 0, 0, "", ""},

		// L20: well-known knock ports.
		{"knock on https", "knock 443 opens ssh for 60s\nclose ssh on 1599", "L20", 1, 7, "knock port tcp/443 is the well-known port of https: if this host serves https, its packets are dropped and every https client knocks", "such as 1600"},
		{"knock on dns", "knock udp/53 opens ssh for 60s\nclose ssh on 1599", "L20", 1, 7, "udp/53 is the well-known port of dns", ""},
		{"close on http", "knock 1600 opens ssh for 60s\nclose ssh on 80", "L20", 2, 14, "every http client closes the door", ""},
		{"knock on a used service", "limit https 10/1s per source/32/64\nknock 443 opens ssh for 60s\nclose ssh on 1599", "L04", 2, 7, "", ""},
		{"knock on a redefined name", "service https = 8443\nknock 443 opens ssh for 60s\nclose ssh on 1599", "", 0, 0, "", ""},
		{"knock on udp/443", "knock udp/443 opens ssh for 60s\nclose ssh on 1599", "", 0, 0, "", ""},

		// L22, L23: duplicates.
		{"duplicate knock", "knock 1600 opens ssh for 60s\nclose ssh on 1599\nknock tcp/1600 opens ssh for 1m", "L22", 3, 1, "this statement repeats the one at line 1", "delete one of them"},
		{"duplicate allow", "allow ssh from 10.0.0.0/8, fd00::/8\nallow ssh from fd00::/8, 10.0.0.0/8", "L22", 2, 1, "repeats the one at line 1", ""},
		{"duplicate limit", "limit ssh 3/60s per source/32/64; limit ssh 3/1m per source/32/64", "L22", 1, 35, "repeats the one at line 1", ""},
		{"same but the log", "allow ssh from 10.0.0.0/8\nallow ssh from 10.0.0.0/8 log info", "", 0, 0, "", ""},
		{"same but the family", "knock 1600 opens ssh for 60s\nknock 1600 opens ssh for 60s family ipv4\nclose ssh on 1599", "", 0, 0, "", ""},
		{"duplicate test", "test \"a\" {\n    at 0s from 1.2.3.4 tcp/22 expect accept\n}\ntest \"a\" {\n    at 0s from 1.2.3.5 tcp/22 expect accept\n}", "L23", 4, 1, `test "a" has the name of the test at line 1`, "its own name"},
		{"distinct tests", "test \"a\" {\n    at 0s from 1.2.3.4 tcp/22 expect accept\n}\ntest \"b\" {\n    at 0s from 1.2.3.4 tcp/22 expect accept\n}", "", 0, 0, "", ""},

		// L24: a door of one family.
		{"door ipv6", "knock 1600 opens ssh for 60s family ipv6\nclose ssh on 1599", "L24", 1, 37, "family ipv6 leaves ssh closed to every IPv4 source: ssh is knocked, and no door opens it over IPv4", "family ipv4"},
		{"door ipv4", "knock 1600 opens ssh for 60s family ipv4\nclose ssh on 1599", "L24", 1, 37, "closed to every IPv6 source", ""},
		{"doors of both", "knock 1600 opens ssh for 60s family ipv4\nknock 1700 opens ssh for 60s family ipv6\nclose ssh on 1599, 1699", "", 0, 0, "", ""},
		{"door from", "knock 1600 from 203.0.113.0/24 opens ssh for 60s\nclose ssh on 1599", "", 0, 0, "", ""},
		{"door and allow of the other family", "knock 1600 opens ssh for 60s family ipv4\nclose ssh on 1599\nallow ssh family ipv6", "", 0, 0, "", ""},
		{"door of the forward's family", "service s = 2222 forward to 192.168.1.5\nknock 1600 opens s for 60s family ipv4\nclose s on 1599", "", 0, 0, "", ""},

		// L25: a forward that takes the host's own service.
		{"forward ssh", "service inside = tcp/22 forward to 192.168.1.5\nallow inside from 10.0.0.0/8", "L25", 1, 18,
			"service inside forwards tcp/22 at every address of this host to 192.168.1.5: this host's own ssh on tcp/22 can no longer be reached", "kwl:ignore L25"},
		{"forward dns", "service resolver = 2053, udp/53 forward to fd00::53\nallow resolver from fd00::/8", "L25", 1, 26, "own dns on udp/53", ""},
		{"forward ignored", "service inside = tcp/22 forward to 192.168.1.5 # kwl:ignore L25\nallow inside from 10.0.0.0/8", "", 0, 0, "", ""},
		{"forward unused", "service inside = tcp/22 forward to 192.168.1.5", "", 0, 0, "", ""},
		{"forward other port", "service inside = tcp/2222 forward to 192.168.1.5\nallow inside from 10.0.0.0/8", "", 0, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Load("p.kwl", []byte(tc.src))
			var found []string
			for _, d := range diags {
				found = append(found, d.String())
			}
			if tc.code == "" {
				for _, d := range diags {
					if isLintCode(d.Code) {
						t.Errorf("unexpected %s", d)
					}
				}
				return
			}
			n := 0
			for _, d := range diags {
				if d.Code != tc.code {
					continue
				}
				n++
				if d.Pos.Line != tc.line || d.Pos.Col != tc.col {
					t.Errorf("%s at %d:%d, want %d:%d", d, d.Pos.Line, d.Pos.Col, tc.line, tc.col)
				}
				if !strings.Contains(d.Message, tc.msg) {
					t.Errorf("message %q does not contain %q", d.Message, tc.msg)
				}
				if !strings.Contains(d.Hint, tc.hint) {
					t.Errorf("hint %q does not contain %q", d.Hint, tc.hint)
				}
				if want := map[byte]Severity{'E': Error, 'L': Warning}[tc.code[0]]; d.Severity != want {
					t.Errorf("severity %v, want %v", d.Severity, want)
				}
			}
			if n != 1 {
				t.Errorf("%d diagnostics %s, want 1; got %q", n, tc.code, found)
			}
			for _, d := range diags {
				if d.Code != tc.code && isLintCode(d.Code) {
					t.Errorf("also %s", d)
				}
			}
		})
	}
}

// TestDeadLimits: a later limit of a service never refuses when an
// earlier one with a key at least as coarse admits at most its count in
// any of its windows (N1·⌈T2/T1⌉ <= N2). want is "" when L26 must not
// fire, else words of its message; a ban is reported at "ban".
func TestDeadLimits(t *testing.T) {
	tests := []struct {
		name, first, second string
		want                string
	}{
		{"the seed's trap", "3/60s per source/24", "5/60s per source ban 300s",
			"ban 300s can never fire: the limit at line 1 (3/60s per source/24) lets at most 3 connections from one source through in any 60s, and this limit refuses only the 6th"},
		{"equal counts", "5/60s per source", "5/60s per source ban 300s", "at most 5 connections"},
		{"one more", "6/60s per source", "5/60s per source ban 300s", ""},
		{"the ban first", "5/60s per source ban 300s", "3/60s per source/24", ""},
		{"finer key first", "3/60s per source", "5/60s per source/24 ban 300s", ""},
		{"shared first", "3/60s shared", "5/60s per source ban 300s", "(3/60s shared)"},
		{"shared later", "3/60s per source", "5/60s shared ban 300s", ""},
		{"shared both", "3/60s shared", "5/60s shared ban 300s", "from all sources together"},
		{"two windows fit", "3/60s per source", "6/120s per source ban 1h", "at most 6 connections from one source through in any 120s, and this limit refuses only the 7th"},
		{"two windows and one count too many", "3/60s per source", "5/120s per source ban 1h", ""},
		{"a window and a bit", "3/60s per source", "6/121s per source ban 1h", ""},
		{"three windows", "3/60s per source", "9/121s per source ban 1h", "at most 9"},
		{"shorter later window", "3/60s per source", "3/10s per source ban 1h", "at most 3"},
		{"shorter later window, smaller count", "3/60s per source", "2/10s per source ban 1h", ""},
		{"longer earlier window is stricter", "3/10s per source", "3/60s per source ban 1h", ""},
		{"milliseconds", "1/500ms per source", "2/1s per source ban 1m", "at most 2 connections"},
		{"a limit that never refuses", "3/60s per source/24", "10/2m per source",
			"this limit never refuses a connection: the limit at line 1 (3/60s per source/24) lets at most 6 connections from one source through in any 2m, and this limit refuses only the 11th"},
		{"v6 key finer first", "3/60s per source/24", "5/60s per source/32/64 ban 1h", ""},
		{"v6 key coarser first", "3/60s per source/24/48", "5/60s per source/32/64 ban 1h", "from one group of sources"},
		{"v6 left to the later", "3/60s per source/24", "5/60s per source/32/64 ban 1h family ipv4", "at most 3"},
		{"earlier of one family", "3/60s per source family ipv4", "5/60s per source ban 1h", ""},
		{"both of one family", "3/60s per source family ipv6", "5/60s per source ban 1h family ipv6", "at most 3"},
		{"other families", "3/60s per source family ipv6", "5/60s per source ban 1h family ipv4", ""},
		{"large counts", "100/1h per source", "99/1s per source ban 1h", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "limit ssh " + tc.first + "\nlimit ssh " + tc.second + " # kwl:ignore L09\n"
			_, diags := Load("p.kwl", []byte(src))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			var got []Diagnostic
			for _, d := range diags {
				if d.Code == LintDeadLimit {
					got = append(got, d)
				}
			}
			if tc.want == "" {
				if len(got) > 0 {
					t.Errorf("unexpected %s", got[0])
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("want one %s, got %v", LintDeadLimit, diags)
			}
			d := got[0]
			if !strings.Contains(d.Message, tc.want) {
				t.Errorf("message %q does not contain %q", d.Message, tc.want)
			}
			col := 1
			if i := strings.Index(tc.second, "ban"); i >= 0 {
				col = len("limit ssh ") + i + 1
			}
			if d.Pos.Line != 2 || d.Pos.Col != col || d.Severity != Warning {
				t.Errorf("%s at %d:%d, want a warning at 2:%d", d, d.Pos.Line, d.Pos.Col, col)
			}
		})
	}
}

// TestDeadLimitOfAnotherService: limits of other services do not count.
func TestDeadLimitOfAnotherService(t *testing.T) {
	_, diags := Load("p.kwl", []byte("limit rdp 3/60s per source/24\nlimit ssh 5/60s per source ban 300s\n"))
	for _, d := range diags {
		if d.Code == LintDeadLimit {
			t.Errorf("unexpected %s", d)
		}
	}
}

// TestSharedMeansNoPer: "shared" says what a limit without per means.
func TestSharedMeansNoPer(t *testing.T) {
	a, da := Load("p.kwl", []byte("limit https 100/1s shared\nlimit ssh 3/60s shared ban 5m # kwl:ignore L09"))
	b, db := Load("p.kwl", []byte("limit https 100/1s\nlimit ssh 3/60s ban 5m"))
	if da.HasErrors() || len(a.Limits) != 2 || len(b.Limits) != 1 || !db.HasErrors() {
		t.Fatalf("diagnostics: %v / %v", da, db)
	}
	if d := cmpIR(&Policy{Limits: b.Limits, Services: b.Services[:1]}, &Policy{Limits: a.Limits[:1], Services: a.Services[:1]}); d != "" {
		t.Errorf("shared differs from no per clause:\n%s", d)
	}
	if l := a.Limits[1]; l.PerSource || l.Ban != 5*time.Minute {
		t.Errorf("shared ban: %+v", l)
	}
}
