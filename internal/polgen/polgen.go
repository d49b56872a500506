// Package polgen writes large policies for the benchmarks and the
// resource tests of lang, compile and sim: n statements of every kind, or
// one knock sequence of n ports.
package polgen

import (
	"fmt"
	"strings"
)

// Statements returns a policy of about n statements: groups of a service,
// a two-port knock sequence that opens it, a limit with a ban, an allow
// from two sources and a close, each group on its own service.
func Statements(n int) []byte {
	var b strings.Builder
	for i := 0; i*5 < n; i++ {
		port := 10000 + i%20000
		fmt.Fprintf(&b, "service s%d = tcp/%d\n", i, port)
		fmt.Fprintf(&b, "knock udp/%d, udp/%d within 5s opens s%d for 60s\n", 1+2*(i%30000), 2+2*(i%30000), i)
		fmt.Fprintf(&b, "limit s%d 3/60s per source ban 5m\n", i)
		fmt.Fprintf(&b, "allow s%d from 10.%d.%d.0/24, fd00:%x::/32\n", i, (i>>8)&255, i&255, i&0xffff)
		fmt.Fprintf(&b, "close s%d on tcp/%d\n", i, 40000+i%20000)
	}
	return []byte(b.String())
}

// Sequence returns a policy of one knock sequence of n ports (at most
// 65,000) that opens ssh, with a test that knocks it in order.
func Sequence(n int) []byte {
	var b strings.Builder
	b.WriteString("knock ")
	list(&b, n, func(i int) string { return fmt.Sprint(100 + i) })
	b.WriteString(" within 5s opens ssh for 60s\n")
	b.WriteString("test \"in order\" {\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    at %dms from 198.51.100.1 tcp/%d expect drop\n", i, 100+i)
	}
	fmt.Fprintf(&b, "    at %dms from 198.51.100.1 tcp/22 expect accept\n}\n", n)
	return []byte(b.String())
}

// Sources returns a policy that allows ssh from n distinct IPv4 /32s.
func Sources(n int) []byte {
	var b strings.Builder
	b.WriteString("allow ssh from ")
	list(&b, n, func(i int) string { return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255) })
	b.WriteString("\n")
	return []byte(b.String())
}

// Bounded returns a policy whose rules would grow with its size if the
// backends let them: a knock sequence of 1000 ports, 40 more doors of the
// same service, and a closing sequence and close ports that shut them all.
func Bounded() []byte {
	var b strings.Builder
	b.WriteString("knock ")
	list(&b, 1000, func(i int) string { return fmt.Sprint(2000 + i) })
	b.WriteString(" opens ssh for 60s\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "knock %d opens ssh for 60s\n", 5000+i)
	}
	b.WriteString("knock 6001, 6002 closes ssh\nclose ssh on 6003\n")
	return []byte(b.String())
}

// list writes item(0), ..., item(n-1) to b, separated by commas.
func list(b *strings.Builder, n int, item func(i int) string) {
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(item(i))
	}
}
