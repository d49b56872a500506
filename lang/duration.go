package lang

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// This file reads and writes durations. A duration is written as
// time.ParseDuration reads it (1.5s, 500ms, 2.5m, 1h30m), but its value is
// computed exactly, as a rational number: time.ParseDuration drops what
// is finer than a nanosecond (1.0000000001s is 1s), kwl refuses it, so a
// duration means what it says. Every time kwl prints comes from integer
// nanoseconds too (FormatDuration, AppendSeconds), never from a float64.

// durUnits are the units of a duration, largest first.
var durUnits = []struct {
	d    time.Duration
	name string
}{
	{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"},
	{time.Millisecond, "ms"}, {time.Microsecond, "us"}, {time.Nanosecond, "ns"},
}

// secondUnit is the index of seconds in durUnits: units from it up are
// written as whole numbers, a fraction going on the seconds.
const secondUnit = 2

var (
	errDurSyntax = errors.New("not a duration")
	errDurLong   = errors.New("duration out of range")
	errDurFine   = errors.New("duration finer than a nanosecond")
)

// parseDuration reads a duration word: an optional sign, then numbers
// with an optional fraction, each followed by a unit (h, m, s, ms, us,
// ns), as time.ParseDuration reads them. It also returns the index in
// durUnits of the largest unit the word uses, which Format keeps. The
// value must be a whole number of nanoseconds that fits in a
// time.Duration.
func parseDuration(word string) (d time.Duration, lead int, err error) {
	s := word
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, 0, errDurSyntax
	}
	total := new(big.Rat)
	lead = len(durUnits)
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num := s[:i]
		if num == "" || num == "." || strings.Count(num, ".") > 1 {
			return 0, 0, errDurSyntax
		}
		s = s[i:]
		j := 0
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		u := -1
		for k, du := range durUnits {
			if s[:j] == du.name {
				u = k
			}
		}
		if u < 0 {
			return 0, 0, errDurSyntax
		}
		s = s[j:]
		if strings.HasSuffix(num, ".") {
			num += "0"
		}
		if strings.HasPrefix(num, ".") {
			num = "0" + num
		}
		v, ok := new(big.Rat).SetString(num)
		if !ok {
			return 0, 0, errDurSyntax
		}
		total.Add(total, v.Mul(v, new(big.Rat).SetInt64(int64(durUnits[u].d))))
		lead = min(lead, u)
		if total.Cmp(big.NewRat(math.MaxInt64, 1)) > 0 {
			return 0, 0, errDurLong
		}
	}
	if !total.IsInt() {
		return 0, 0, errDurFine
	}
	d = time.Duration(total.Num().Int64())
	if neg {
		d = -d
	}
	return d, lead, nil
}

// FormatDuration writes d exactly in the language's form, from hours
// down: whole hours, minutes and seconds, a fraction of a second as
// decimals of the seconds (1h30m, 1m0.5s, 1.5s), and a duration under a
// second in the largest unit below it that it fills (400ms, 1.5ms, 250us).
func FormatDuration(d time.Duration) string {
	return string(appendDuration(nil, d, 0))
}

// canonicalDuration returns the form Format gives a duration word: its
// value written by appendDuration from the largest unit the word uses,
// so that 90s stays 90s and 1m30s stays 1m30s, while 2.5m becomes 2m30s
// and 0.4s 400ms. A word that does not read as a duration is kept.
func canonicalDuration(word string) string {
	d, lead, err := parseDuration(word)
	if err != nil {
		return word
	}
	return string(appendDuration(nil, d, lead))
}

// appendDuration writes d starting at unit durUnits[lead] (or the largest
// smaller unit that d fills).
func appendDuration(b []byte, d time.Duration, lead int) []byte {
	if d == 0 {
		return append(b, "0s"...)
	}
	n := uint64(d)
	if d < 0 {
		b = append(b, '-')
		n = -n
	}
	u := lead
	for u < len(durUnits)-1 && n < uint64(durUnits[u].d) {
		u++
	}
	if u > secondUnit {
		// Under a second (or written so): one number with decimals.
		unit := uint64(durUnits[u].d)
		b = strconv.AppendUint(b, n/unit, 10)
		b = appendFraction(b, n%unit, unit)
		return append(b, durUnits[u].name...)
	}
	for ; u < secondUnit; u++ {
		unit := uint64(durUnits[u].d)
		if q := n / unit; q > 0 {
			b = strconv.AppendUint(b, q, 10)
			b = append(b, durUnits[u].name...)
		}
		n %= unit
	}
	if n > 0 {
		b = strconv.AppendUint(b, n/uint64(time.Second), 10)
		b = appendFraction(b, n%uint64(time.Second), uint64(time.Second))
		b = append(b, 's')
	}
	return b
}

// appendFraction writes r/unit (r < unit, unit a power of ten up to
// 10^9) as a decimal point and digits, without trailing zeros; nothing
// when r is 0. The digits are cut from the end by constant divisions,
// which the compiler turns into multiplications: kwl sim writes one time
// per packet.
func appendFraction(b []byte, r, unit uint64) []byte {
	if r == 0 {
		return b
	}
	var digits [9]byte
	n := 0
	for u := unit; u > 1; u /= 10 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		digits[i] = byte('0' + r%10)
		r /= 10
	}
	for digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}

// AppendSeconds appends d as a number of seconds, exactly and in the
// shortest form: the whole seconds, then up to nine decimals without
// trailing zeros (1373578999ns is 1.373578999, 61s is 61). It works on
// the integer nanoseconds, never through a float64, so every time kwl
// prints reads back as the time it was.
func AppendSeconds(b []byte, d time.Duration) []byte {
	n := uint64(d)
	if d < 0 {
		b = append(b, '-')
		n = -n
	}
	b = strconv.AppendUint(b, n/uint64(time.Second), 10)
	return appendFraction(b, n%uint64(time.Second), uint64(time.Second))
}

// durationHint returns a hint for a word written where a duration was
// expected: the duration the user probably meant ("did you mean 60s?"
// for 60, 60sec or 60 seconds; 24h for 1d), or the forms durations take.
func durationHint(word string) string {
	const forms = "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"
	i := 0
	for i < len(word) && (word[i] >= '0' && word[i] <= '9' || word[i] == '.') {
		i++
	}
	num, unit := word[:i], strings.ToLower(word[i:])
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return forms
	}
	var scale time.Duration
	switch unit {
	case "", "s", "sec", "secs", "second", "seconds":
		unit = "s"
	case "m", "min", "mins", "minute", "minutes":
		unit = "m"
	case "h", "hr", "hrs", "hour", "hours":
		unit = "h"
	case "ms", "msec", "msecs", "millisecond", "milliseconds":
		unit = "ms"
	case "us", "usec", "usecs", "microsecond", "microseconds":
		unit = "us"
	case "ns", "nsec", "nsecs", "nanosecond", "nanoseconds":
		unit = "ns"
	case "d", "day", "days":
		scale = 24 * time.Hour
	case "w", "wk", "week", "weeks":
		scale = 7 * 24 * time.Hour
	default:
		return forms
	}
	if scale == 0 {
		if _, _, err := parseDuration(num + unit); err != nil {
			return forms
		}
		return "did you mean " + canonicalDuration(num+unit) + "?"
	}
	// Days and weeks are written in hours.
	n := scale / time.Hour
	d, _, err := parseDuration(num + "h")
	if err != nil || d > math.MaxInt64/n {
		return forms
	}
	return "did you mean " + FormatDuration(d*n) + "? (durations go up to hours)"
}
