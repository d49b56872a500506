package nft

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

// slabKB reads the kernel's slab memory (/proc/meminfo Slab, in kB). It
// is the whole machine's, so a measurement holds only while nothing else
// allocates much at the same time; the bounds below leave room for that.
func slabKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int
		if n, _ := fmt.Sscanf(sc.Text(), "Slab: %d kB", &kb); n == 1 {
			return kb
		}
	}
	t.Skip("no Slab line in /proc/meminfo")
	return 0
}

// loadCost loads the ruleset text into a fresh namespace and returns the
// slab it took in kB, after the kernel's deferred frees of the load.
// Slab is the whole machine's, and the tests of other packages (the
// kernel suite's namespaces) may grow it during a load, never shrink it:
// a load that costs more than budget kB is measured again, up to three
// times, and the least is kept.
func loadCost(t *testing.T, text string, budget int) int {
	t.Helper()
	least := loadOnce(t, text)
	for i := 1; i < 3 && least > budget; i++ {
		least = min(least, loadOnce(t, text))
	}
	return least
}

func loadOnce(t *testing.T, text string) int {
	t.Helper()
	ns := newNS(t)
	nft := func(stdin string, args ...string) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	before := slabKB(t)
	nft(text, "-f", "-")
	after := slabKB(t)
	nft("", "delete", "table", "inet", "kwl")
	return after - before
}

// TestSlabPerSet measures the kernel memory of kwl's sets in a
// namespace: 50 sets declared size 65535 (as kwl once declared them)
// against 50 declared without a size, as kwl declares them now.
func TestSlabPerSet(t *testing.T) {
	needRoot(t, "nft")
	const n = 50
	ruleset := func(size int) string {
		var b bytes.Buffer
		b.WriteString("table inet kwl {\n")
		for i := 0; i < n; i++ {
			var sb strings.Builder
			renderSet(&sb, &Set{Name: fmt.Sprintf("s%d", i), Type: IPv4Addr, Timeout: 60e9, Size: size})
			b.WriteString(sb.String())
		}
		b.WriteString("}\n")
		return b.String()
	}
	sized := loadCost(t, ruleset(DefaultSetSize), math.MaxInt)
	unsized := loadCost(t, ruleset(0), 0)
	t.Logf("slab of %d sets: %d kB declared size %d (%d kB a set), %d kB without a size (%d kB a set)",
		n, sized, DefaultSetSize, sized/n, unsized, unsized/n)
	if unsized*10 > sized {
		t.Errorf("%d unsized sets took %d kB of slab, not a tenth of the %d kB of sized ones", n, unsized, sized)
	}
}

// TestSlabThousandServices loads a policy of 1,000 services, each with a
// two-port knock sequence and a per-source limit with a ban, into a
// namespace, and holds it to a budget of slab: 96 MB (measured: 67 MB,
// 12,000 sets of about 5.7 kB each with their chains and rules).
func TestSlabThousandServices(t *testing.T) {
	needRoot(t, "nft")
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "service s%d = tcp/%d\nknock udp/%d, udp/%d opens s%d for 60s\nlimit s%d 3/60s per source ban 5m\n",
			i, 10000+i, 20000+2*i, 20001+2*i, i, i)
	}
	pol, diags := lang.Load("thousand.kwl", []byte(b.String()))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rs, diags := Lower(pol)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	const budget = 96 << 10
	cost := loadCost(t, mustRender(t, rs), budget)
	t.Logf("1,000 services: %d sets, %d chains; %d kB of slab", len(rs.Table.Sets), len(rs.Table.Chains), cost)
	if cost > budget {
		t.Errorf("1,000 services took %d kB of slab, over the budget of %d kB", cost, budget)
	}
}
