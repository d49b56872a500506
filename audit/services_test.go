package audit

import (
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

func TestReadServices(t *testing.T) {
	const table = `# comment
http	80/tcp	0.484143	# World Wide Web HTTP
ssh 22/tcp 0.182286
issd	1600/tcp	0.000263
zero	1599/tcp	0.000000
zero2	1598/tcp	0.000000
domain	53/udp	0.213496
sctp	80/sctp	0.9
dup	80/tcp	0.1
`
	ps, err := ReadServices(strings.NewReader(table), 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []lang.Port{{Proto: lang.TCP, Num: 80}, {Proto: lang.TCP, Num: 22}, {Proto: lang.TCP, Num: 1600}, {Proto: lang.TCP, Num: 1598}, {Proto: lang.UDP, Num: 53}}
	if len(ps) != len(want) {
		t.Fatalf("got %v, want %v", ps, want)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("port %d: %v, want %v", i, ps[i], want[i])
		}
	}
	for _, bad := range []string{"x 0/tcp 0.1", "x 70000/tcp 0.1", "x 22 0.1", "x 22/tcp", "x 22/tcp 2", "x 22/tcp -0.5", "x 22/tcp NaN"} {
		if _, err := ReadServices(strings.NewReader(bad), 10); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: error %v, want one naming line 1", bad, err)
		}
	}
}

// FuzzReadServices: any input is read or refused, never a panic, and
// what is read has at most top ports of each protocol, none twice.
func FuzzReadServices(f *testing.F) {
	f.Add("http\t80/tcp\t0.48\nssh 22/tcp 0.18 # x\n", 1)
	f.Add("a 1/udp 0\n#\n\n", 3)
	f.Fuzz(func(t *testing.T, s string, top int) {
		top = top%2000 + 1
		if top <= 0 {
			top = 1
		}
		ps, err := ReadServices(strings.NewReader(s), top)
		if err != nil {
			return
		}
		seen := map[lang.Port]bool{}
		n := map[lang.Proto]int{}
		for _, p := range ps {
			if seen[p] || p.Num == 0 {
				t.Fatalf("%v twice, or port 0, in %v", p, ps)
			}
			seen[p] = true
			n[p.Proto]++
		}
		if n[lang.TCP] > top || n[lang.UDP] > top {
			t.Fatalf("more than %d ports of a protocol: %v", top, ps)
		}
	})
}
