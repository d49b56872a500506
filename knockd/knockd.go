// Package knockd translates knockd.conf (knockd(1)) into a kwl policy.
//
// A section such as [openSSH] becomes a knock statement: its sequence,
// its seq_timeout as the window of the whole sequence ("in"), knockd's
// one attempt per source ("exclusive": a knock of another section's
// sequence starts it over), the door's
// service from its start command when that is a plain iptables accept of
// %IP% to one port, and its cmd_timeout as the door's lifetime. A section
// whose command deletes that accept (iptables -D) is a closing knock.
// Every line that has no kwl equivalent is kept as a comment saying why,
// so that nothing is dropped silently.
package knockd

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"kwl.dev/kwl/lang"
)

// DefaultSeqTimeout is knockd's seq_timeout when a section gives none,
// in seconds (knockd.c, SEQ_TIMEOUT).
const DefaultSeqTimeout = 25

// An Error is a line of knockd.conf that cannot be read at all.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// line is one "key = value" line of a section.
type line struct {
	n          int
	key, value string
	text       string // as written, trimmed
}

// section is one [name] section of knockd.conf.
type section struct {
	name  string
	n     int
	lines []line
}

// parse splits src into sections of "key = value" lines (or bare flags,
// such as UseSyslog). Blank and comment lines are not kept.
func parse(file string, src []byte) ([]*section, error) {
	var out []*section
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		t := strings.TrimSpace(sc.Text())
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
			continue
		case strings.HasPrefix(t, "["):
			if !strings.HasSuffix(t, "]") || len(t) < 3 {
				return nil, &Error{file, n, fmt.Sprintf("section header %q has no closing ]", t)}
			}
			out = append(out, &section{name: strings.TrimSpace(t[1 : len(t)-1]), n: n})
			continue
		}
		if len(out) == 0 {
			return nil, &Error{file, n, fmt.Sprintf("%q comes before any [section]", t)}
		}
		// A line without "=" is a flag (UseSyslog).
		k, v, _ := strings.Cut(t, "=")
		s := out[len(out)-1]
		s.lines = append(s.lines, line{n: n, key: strings.ToLower(strings.TrimSpace(k)), value: strings.TrimSpace(v), text: t})
	}
	if err := sc.Err(); err != nil {
		return nil, &Error{file, n + 1, err.Error()}
	}
	return out, nil
}

// Translate returns the kwl policy that file's knockd.conf text means,
// formatted as kwl fmt writes it, with a comment for each line it cannot
// translate. It fails only on text that is not knockd.conf.
func Translate(file string, src []byte) ([]byte, error) {
	secs, err := parse(file, src)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# from %s by kwl import: check the comments marked \"not translated\"\n", file)
	services := map[string]bool{}
	for _, s := range secs {
		b.WriteString("\n")
		if strings.EqualFold(s.name, "options") {
			fmt.Fprintf(&b, "# [%s] (line %d)\n", s.name, s.n)
			for _, l := range s.lines {
				fmt.Fprintf(&b, "# not translated, line %d: %s (kwl has no daemon: it is the kernel's rules)\n", l.n, l.text)
			}
			continue
		}
		translateSection(&b, s, services)
	}
	f, diags := lang.Parse(file, []byte(b.String()))
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: the translation does not parse: %v", file, diags)
	}
	return lang.Format(f), nil
}

// translateSection writes the statements of one section.
func translateSection(b *strings.Builder, s *section, services map[string]bool) {
	fmt.Fprintf(b, "# [%s] (line %d)\n", s.name, s.n)
	var notes []string
	note := func(l line, why string) {
		notes = append(notes, fmt.Sprintf("# not translated, line %d: %s (%s)", l.n, l.text, why))
	}
	var seq []string
	timeout := DefaultSeqTimeout
	life := 0
	var cmd *accept
	for _, l := range s.lines {
		switch l.key {
		case "sequence":
			var ok bool
			if seq, ok = sequence(l.value); !ok {
				note(l, "not a list of PORT[:tcp|udp]")
			}
			for i := 1; i < len(seq); i++ {
				if seq[i] == seq[i-1] {
					note(l, fmt.Sprintf("it knocks %s twice in a row, and kwl takes a knock right after one on the same port for its retransmission", seq[i]))
					seq = nil
					break
				}
			}
		case "seq_timeout", "cmd_timeout":
			n, err := strconv.Atoi(l.value)
			switch {
			case err != nil || n <= 0:
				note(l, "not a positive number of seconds")
			case l.key == "seq_timeout":
				timeout = n
			default:
				life = n
			}
		case "tcpflags":
			if f := strings.ReplaceAll(strings.ToLower(l.value), " ", ""); f != "syn" {
				note(l, "kwl counts TCP knocks that are SYNs, as tcpflags = syn does: the client must knock with SYNs")
			}
		case "command", "start_command":
			a, why := parseAccept(l.value)
			if why != "" {
				note(l, why)
				continue
			}
			cmd = a
		case "stop_command":
			if a, why := parseAccept(l.value); why != "" || !a.delete {
				note(l, "kwl closes the door when its lifetime ends; a stop command that does more is not kwl's")
			}
		default:
			note(l, "no kwl equivalent")
		}
	}
	switch {
	case len(seq) == 0:
		notes = append(notes, "# not translated: the section has no sequence")
	case cmd == nil:
		notes = append(notes, "# not translated: the section opens nothing kwl can name (a plain iptables accept of %IP% to one port)")
	default:
		svc, ok := cmd.service(b, services)
		if !ok {
			notes = append(notes, fmt.Sprintf("# not translated: port %q of the command is neither a number nor a service kwl knows", cmd.port))
			break
		}
		stmt := "knock " + strings.Join(seq, ", ")
		if len(seq) > 1 {
			// knockd keeps one attempt per source: a knock on a port of
			// another section's sequence ends it.
			stmt += " in " + seconds(timeout) + " exclusive"
		}
		if cmd.delete {
			stmt += " closes " + svc
		} else {
			if life == 0 {
				life = 3600
				notes = append(notes, "# knockd leaves the door open until a closing sequence; a kwl door has a lifetime: 1h here, change it as you need")
			}
			stmt += fmt.Sprintf(" opens %s for %s", svc, seconds(life))
		}
		fmt.Fprintln(b, stmt)
	}
	for _, n := range notes {
		fmt.Fprintln(b, n)
	}
}

// seconds writes n seconds in the largest unit that holds it whole.
func seconds(n int) string {
	switch {
	case n%3600 == 0:
		return fmt.Sprintf("%dh", n/3600)
	case n%60 == 0:
		return fmt.Sprintf("%dm", n/60)
	}
	return fmt.Sprintf("%ds", n)
}

// sequence reads knockd's "7000,8000:udp,9000:tcp" as kwl ports.
func sequence(v string) ([]string, bool) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		port, proto, _ := strings.Cut(strings.TrimSpace(f), ":")
		n, err := strconv.Atoi(strings.TrimSpace(port))
		if err != nil || n < 1 || n > 65535 {
			return nil, false
		}
		switch strings.ToLower(strings.TrimSpace(proto)) {
		case "", "tcp":
			out = append(out, strconv.Itoa(n))
		case "udp":
			out = append(out, "udp/"+strconv.Itoa(n))
		default:
			return nil, false
		}
	}
	return out, len(out) > 0
}

// accept is an iptables command that accepts (-A, -I) or deletes (-D)
// "-s %IP% [-p PROTO] --dport PORT -j ACCEPT" in INPUT.
type accept struct {
	delete bool
	proto  lang.Proto
	port   string // a number or a name from /etc/services
}

// parseAccept reads an iptables command, or says why it is not one kwl
// can translate.
func parseAccept(cmd string) (*accept, string) {
	w := strings.Fields(cmd)
	if len(w) == 0 || !strings.HasSuffix(w[0], "iptables") {
		return nil, "not an iptables command: kwl runs no commands"
	}
	a := &accept{proto: lang.TCP}
	var src, chain, target string
	for i := 1; i < len(w); i++ {
		arg := func() string {
			if i+1 < len(w) {
				i++
				return w[i]
			}
			return ""
		}
		switch w[i] {
		case "-A", "-I":
			chain = arg()
			if w[i-1] == "-I" && i+1 < len(w) && !strings.HasPrefix(w[i+1], "-") {
				i++ // a rule number
			}
		case "-D":
			a.delete = true
			chain = arg()
		case "-s":
			src = arg()
		case "-p":
			switch arg() {
			case "tcp":
				a.proto = lang.TCP
			case "udp":
				a.proto = lang.UDP
			default:
				return nil, "a protocol other than tcp or udp"
			}
		case "--dport":
			a.port = arg()
		case "-m":
			if m := arg(); m != "tcp" && m != "udp" {
				return nil, "the " + m + " match has no kwl equivalent"
			}
		case "-j":
			target = arg()
		default:
			return nil, fmt.Sprintf("%s has no kwl equivalent", w[i])
		}
	}
	switch {
	case chain != "INPUT":
		return nil, "kwl translates accepts in INPUT only"
	case src != "%IP%":
		return nil, "the accept is not for the knocking source (-s %IP%)"
	case target != "ACCEPT":
		return nil, "not an accept (-j ACCEPT)"
	case a.port == "":
		return nil, "it accepts every port of the source, and a kwl door opens one service"
	}
	return a, ""
}

// service names the accept's port as kwl does: a built-in name, or a
// service statement written to b the first time. It reports false for a
// port it cannot name.
func (a *accept) service(b *strings.Builder, services map[string]bool) (string, bool) {
	want := lang.Port{Proto: a.proto}
	if n, err := strconv.Atoi(a.port); err == nil && n >= 1 && n <= 65535 {
		want.Num = uint16(n)
	} else if ports, ok := lang.BuiltinService(a.port); ok && len(ports) > 0 {
		if len(ports) == 1 && ports[0].Proto == a.proto {
			return a.port, true
		}
		want.Num = ports[0].Num
	} else {
		return "", false
	}
	if name, ok := lang.BuiltinName(want); ok {
		return name, true
	}
	name := fmt.Sprintf("%s-%d", a.proto, want.Num)
	if !services[name] {
		services[name] = true
		fmt.Fprintf(b, "service %s = %s\n", name, want)
	}
	return name, true
}
