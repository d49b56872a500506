package report

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAppendSeconds holds appendSeconds to the exact decimal of the
// duration's seconds, built with strconv from the integer seconds and the
// nine digits of nanoseconds, on times of every resolution and size. The
// float64 of d.Seconds() is not the time: for 1373578999ns strconv's
// shortest form of it is 1.3735789999999999.
func TestAppendSeconds(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 7))
	ds := []time.Duration{0, 1, -1, time.Microsecond, time.Second, 999999999, 1<<22*time.Second - 1, 1 << 22 * time.Second,
		1<<62 - 1, -1 << 62, 364940704 * time.Microsecond, 100*time.Millisecond + 3, 1373578999, 31536005100000000}
	for n := 0; n < 63; n++ { // powers of two, where the float's spacing halves below
		ds = append(ds, 1<<n-1, 1<<n, 1<<n+1, time.Duration(1<<n)*time.Microsecond)
	}
	for i := 0; i < 1_000_000; i++ {
		var d time.Duration
		switch i % 4 {
		case 0: // microseconds within an hour
			d = time.Duration(rng.Int64N(3600e6)) * time.Microsecond
		case 1: // nanoseconds within a day
			d = time.Duration(rng.Int64N(86400e9))
		case 2: // any size
			d = time.Duration(rng.Int64N(1<<63-1) >> rng.IntN(63))
		case 3: // milliseconds
			d = time.Duration(rng.Int64N(1e7)) * time.Millisecond
		}
		ds = append(ds, d)
	}
	for _, d := range ds {
		a := uint64(d)
		sign := ""
		if d < 0 {
			a, sign = -a, "-"
		}
		want := sign + strconv.FormatUint(a/1e9, 10)
		if ns := a % 1e9; ns != 0 {
			want += strings.TrimRight("."+strconv.FormatUint(1e9+ns, 10)[1:], "0")
		}
		if got := appendSeconds(nil, d); string(got) != want {
			t.Fatalf("appendSeconds(%d) = %s, want %s", int64(d), got, want)
		}
	}
	if got := string(appendSeconds(nil, 1373578999)); got != "1.373578999" {
		t.Errorf("appendSeconds(1373578999ns) = %s", got)
	}
}
