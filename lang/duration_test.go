package lang

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		word string
		want time.Duration
		err  error
	}{
		{"60s", 60 * time.Second, nil},
		{"0s", 0, nil},
		{"500ms", 500 * time.Millisecond, nil},
		{"1h30m", 90 * time.Minute, nil},
		{"0.4s", 400 * time.Millisecond, nil},
		{"1.5s", 1500 * time.Millisecond, nil},
		{"2.5m", 150 * time.Second, nil},
		{".5s", 500 * time.Millisecond, nil},
		{"1.s", time.Second, nil},
		{"1.5h", 90 * time.Minute, nil},
		{"30s1m", 90 * time.Second, nil},
		{"1s1s", 2 * time.Second, nil},
		{"-5s", -5 * time.Second, nil},
		{"1500us", 1500 * time.Microsecond, nil},
		{"7ns", 7, nil},
		{"1.373578999s", 1373578999, nil},
		{"0.001500000000s", 1500 * time.Microsecond, nil},
		// time.ParseDuration drops what is finer than a nanosecond
		// (1.0000000001s is 1s); kwl refuses it.
		{"1.0000000001s", 0, errDurFine},
		{"0.5ns", 0, errDurFine},
		{"2562047h47m16.854775807s", math.MaxInt64, nil},
		{"2562047h47m16.854775808s", 0, errDurLong},
		{"99999999999999999999h", 0, errDurLong},
		{"", 0, errDurSyntax},
		{"60", 0, errDurSyntax},
		{"60sec", 0, errDurSyntax},
		{"1d", 0, errDurSyntax},
		{"1..5s", 0, errDurSyntax},
		{".s", 0, errDurSyntax},
		{"s", 0, errDurSyntax},
		{"-", 0, errDurSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.word, func(t *testing.T) {
			got, _, err := parseDuration(tc.word)
			if err != tc.err || got != tc.want {
				t.Errorf("parseDuration(%q) = %v, %v; want %v, %v", tc.word, got, err, tc.want, tc.err)
			}
		})
	}
}

// TestParseDurationAsGo: on words where time.ParseDuration is exact,
// both agree, and the lexer calls every such word a duration.
func TestParseDurationAsGo(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	units := []string{"h", "m", "s", "ms", "us", "ns"}
	for range 20000 {
		var b strings.Builder
		for range 1 + r.IntN(3) {
			b.WriteString(strconv.Itoa(r.IntN(1000)))
			if r.IntN(2) == 0 {
				b.WriteString("." + strconv.Itoa(r.IntN(1000)))
			}
			b.WriteString(units[r.IntN(len(units))])
		}
		w := b.String()
		want, gerr := time.ParseDuration(w)
		got, _, err := parseDuration(w)
		if gerr != nil {
			t.Fatalf("time.ParseDuration(%q): %v", w, gerr)
		}
		if classify(w) != tDuration {
			t.Fatalf("%q is not lexed as a duration", w)
		}
		if err == errDurFine {
			continue // a fraction of a nanosecond, which Go drops
		}
		if err != nil || got != want {
			t.Fatalf("parseDuration(%q) = %v, %v; time.ParseDuration %v", w, got, err, want)
		}
	}
}

func TestCanonicalDuration(t *testing.T) {
	tests := []struct{ word, want string }{
		{"60s", "60s"},
		{"90s", "90s"},
		{"1m30s", "1m30s"},
		{"300s", "300s"},
		{"5m", "5m"},
		{"1h30m", "1h30m"},
		{"1.5s", "1.5s"},
		{"1.50s", "1.5s"},
		{"0.4s", "400ms"},
		{".25s", "250ms"},
		{"2.5m", "2m30s"},
		{"1.5h", "1h30m"},
		{"0.5m", "30s"},
		{"1h60m", "2h"},
		{"1m60s", "2m"},
		{"30s1m", "1m30s"},
		{"1h0m5s", "1h5s"},
		{"1m0.5s", "1m0.5s"},
		{"1h0.000000001s", "1h0.000000001s"},
		{"05s", "5s"},
		{"0ms", "0s"},
		{"1500ms", "1500ms"},
		{"1.5ms", "1.5ms"},
		{"0.0015s", "1.5ms"},
		{"0.5ms", "500us"},
		{"1000ns", "1000ns"},
		{"0.000000001s", "1ns"},
		{"-1.5s", "-1.5s"},
		{"1.0000000001s", "1.0000000001s"}, // not exact: kept, the checker refuses it
	}
	for _, tc := range tests {
		t.Run(tc.word, func(t *testing.T) {
			got := canonicalDuration(tc.word)
			if got != tc.want {
				t.Errorf("canonicalDuration(%q) = %q, want %q", tc.word, got, tc.want)
			}
			if again := canonicalDuration(got); again != got {
				t.Errorf("not idempotent: %q -> %q -> %q", tc.word, got, again)
			}
			d1, _, err1 := parseDuration(tc.word)
			d2, _, err2 := parseDuration(got)
			if err1 == nil && (err2 != nil || d1 != d2) {
				t.Errorf("value changed: %q is %v, %q is %v (%v)", tc.word, d1, got, d2, err2)
			}
		})
	}
}

// TestCanonicalDurationKeepsValue: on random durations in every leading
// unit, the canonical form reads back as the same value, is its own
// canonical form and is lexed as a duration.
func TestCanonicalDurationKeepsValue(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var d time.Duration
		switch r.IntN(3) {
		case 0:
			d = time.Duration(r.Int64N(int64(maxDuration)))
		case 1:
			d = time.Duration(r.Int64N(100000)) * time.Millisecond
		default:
			d = time.Duration(r.Int64N(1000000))
		}
		for _, u := range durUnits {
			w := string(appendDuration(nil, d, 0))
			if u.d <= d {
				// Write d in unit u first, then the rest.
				w = strconv.FormatInt(int64(d/u.d), 10) + u.name
				if rest := d % u.d; rest > 0 {
					w += string(appendDuration(nil, rest, 0))
				}
			}
			c := canonicalDuration(w)
			got, _, err := parseDuration(c)
			if err != nil || got != d {
				t.Fatalf("%q (%d) -> %q reads %v, %v", w, d, c, got, err)
			}
			if canonicalDuration(c) != c || classify(c) != tDuration {
				t.Fatalf("%q -> %q -> %q (class %v)", w, c, canonicalDuration(c), classify(c))
			}
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{time.Nanosecond, "1ns"},
		{1500 * time.Nanosecond, "1.5us"},
		{500 * time.Millisecond, "500ms"},
		{1500 * time.Millisecond, "1.5s"},
		{60 * time.Second, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour + 500*time.Millisecond, "1h0.5s"},
		{8571428571, "8.571428571s"},
		{365 * 24 * time.Hour, "8760h"},
		{-90 * time.Second, "-1m30s"},
		{math.MaxInt64, "2562047h47m16.854775807s"},
		{math.MinInt64, "-2562047h47m16.854775808s"},
	}
	for _, tc := range tests {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%d) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestAppendSeconds compares the seconds formatter with the exact decimal
// of d (big.Rat) and checks that strconv reads the text back to the same
// nanoseconds and to the float64 nearest the exact value.
func TestAppendSeconds(t *testing.T) {
	fixed := []time.Duration{0, 1, 10, 999999999, time.Second, 1373578999, 31536005100000000,
		61 * time.Second, 1<<22*time.Second + 1, math.MaxInt64, -1, -1500 * time.Millisecond, math.MinInt64}
	r := rand.New(rand.NewPCG(5, 6))
	ds := fixed
	for range 100000 {
		switch r.IntN(3) {
		case 0:
			ds = append(ds, time.Duration(r.Int64()))
		case 1:
			ds = append(ds, time.Duration(r.Int64N(1e12)))
		default:
			ds = append(ds, time.Duration(r.Int64N(1e6))*time.Millisecond)
		}
	}
	for _, d := range ds {
		got := string(AppendSeconds(nil, d))
		want := new(big.Rat).SetFrac64(int64(d), 1e9).FloatString(9)
		if strings.Contains(want, ".") {
			want = strings.TrimRight(strings.TrimRight(want, "0"), ".")
		}
		if want == "-0" {
			want = "0"
		}
		if got != want {
			t.Fatalf("AppendSeconds(%d) = %s, want %s", d, got, want)
		}
		// Back through strconv: the integer parts give d again.
		neg := strings.HasPrefix(got, "-")
		whole, frac, _ := strings.Cut(strings.TrimPrefix(got, "-"), ".")
		ws, err1 := strconv.ParseUint(whole, 10, 64)
		fs, err2 := strconv.ParseUint(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err1 != nil || err2 != nil || len(frac) > 9 {
			t.Fatalf("AppendSeconds(%d) = %s: %v %v", d, got, err1, err2)
		}
		n := ws*1e9 + fs
		if neg {
			n = -n
		}
		if time.Duration(n) != d {
			t.Fatalf("AppendSeconds(%d) = %s reads back as %d", d, got, int64(n))
		}
		x, err := strconv.ParseFloat(got, 64)
		nearest, _ := new(big.Rat).SetFrac64(int64(d), 1e9).Float64()
		if err != nil || x != nearest {
			t.Fatalf("AppendSeconds(%d) = %s parses as %v, the nearest float64 is %v", d, got, x, nearest)
		}
	}
}

func TestDurationHint(t *testing.T) {
	tests := []struct{ word, want string }{
		{"60", "did you mean 60s?"},
		{"0", "did you mean 0s?"},
		{"60sec", "did you mean 60s?"},
		{"60secs", "did you mean 60s?"},
		{"60seconds", "did you mean 60s?"},
		{"5min", "did you mean 5m?"},
		{"2hours", "did you mean 2h?"},
		{"1.5", "did you mean 1.5s?"},
		{"0.4", "did you mean 400ms?"},
		{"100msec", "did you mean 100ms?"},
		{"1d", "did you mean 24h? (durations go up to hours)"},
		{"1.5d", "did you mean 36h? (durations go up to hours)"},
		{"2w", "did you mean 336h? (durations go up to hours)"},
		{"99999999999999999999d", "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"},
		{"1h30", "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"},
		{"soon", "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"},
		{"1.2.3.4", "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"},
	}
	for _, tc := range tests {
		if got := durationHint(tc.word); got != tc.want {
			t.Errorf("durationHint(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

// TestDurationErrors: what the lexer takes for a duration but the checker
// refuses, at the word.
func TestDurationErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"knock 1600 opens ssh for 1.0000000001s", "1:26: the door's lifetime 1.0000000001s is finer than a nanosecond"},
		{"knock 1600 opens ssh for 8761h", "1:26: the door's lifetime 8761h is too long"},
		{"knock 1600, 1601 within 0.0s opens ssh for 5s", "1:25: the window between knocks must be positive, not 0.0s"},
		{"limit ssh 3/-1.5s", "1:13: the limit's window must be positive, not -1.5s"},
		{"test \"t\" {\n    at 0.5ns from 1.2.3.4 tcp/22 expect drop\n}", "2:8: a step's time 0.5ns is finer than a nanosecond"},
	}
	for _, tc := range tests {
		_, diags := Load("p.kwl", []byte(tc.src))
		if len(diags) == 0 {
			t.Errorf("%q: no error", tc.src)
			continue
		}
		d := diags[0]
		got := strings.TrimPrefix(d.Pos.String(), "p.kwl:") + ": " + d.Message
		if got != tc.want || d.Code != ErrDuration || d.Hint == "" && !strings.Contains(got, "positive") {
			t.Errorf("%q:\ngot  %s [%s] hint %q\nwant %s", tc.src, got, d.Code, d.Hint, tc.want)
		}
	}
}
