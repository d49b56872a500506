//go:build linux

package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// DefaultTokens is how far ahead a deploy loads the tokens of secret
// knocks unless Options.Tokens says otherwise: a day, renewed hourly by
// kwl-renew.timer, so that a renewal that fails leaves a day to notice
// before the doors stop opening.
const DefaultTokens = 24 * time.Hour

// MaxTokens is the longest Options.Tokens: a week of 30 s windows is
// 20,160 tokens a set, within a set's 65,535 elements.
const MaxTokens = 7 * 24 * time.Hour

// tokenMark is what a token set's comment says after its statement's
// words: the last window whose token was loaded, and which secret.
const tokenMark = "; tokens through window "

// tokenComment returns the comment of a token set that holds tokens
// through window last of the secret id.
func tokenComment(base string, last int64, id string) string {
	return fmt.Sprintf("%s%s%d, key %s", base, tokenMark, last, id)
}

// splitTokenComment reads what tokenComment wrote; ok is false for any
// other comment, whose base is then the comment itself.
func splitTokenComment(c string) (base string, last int64, id string, ok bool) {
	i := strings.LastIndex(c, tokenMark)
	if i < 0 {
		return c, 0, "", false
	}
	n, key, found := strings.Cut(c[i+len(tokenMark):], ", key ")
	last, err := strconv.ParseInt(n, 10, 64)
	if !found || err != nil || key == "" {
		return c, 0, "", false
	}
	return c[:i], last, key, true
}

// fillTokenSets returns rs with the token sets of its secret knocks filled
// for a load at now: the tokens of the windows from now's, less the
// skew, to now+ahead. When the live table has the set, of the same
// secret, its elements are carried over as they are (a token used up
// stays used up) and only windows after the last it was loaded with are
// added; carry lists the sets whose live elements must not be carried
// (another secret, or no record of what was loaded). A secret that
// cannot be read is an error naming the statement. After a boot
// (afterBoot), a set the live table does not have starts at the window
// after now's: the tokens of now's window and the one before may have
// been used before the boot, and the kernel's record of it is gone.
func fillTokenSets(rs *nft.Ruleset, old *live, now time.Time, ahead time.Duration, afterBoot bool, read func(string) ([]byte, error)) (out *nft.Ruleset, noCarry map[string]bool, err error) {
	var t *nft.Table
	ids := map[string]lang.Ref{}
	for i, s := range rs.Table.Sets {
		if s.Tokens == nil {
			continue
		}
		if t == nil {
			c := *rs.Table
			c.Sets = append([]*nft.Set(nil), rs.Table.Sets...)
			t, noCarry = &c, map[string]bool{}
		}
		key, err := read(s.Tokens.Secret)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Origin, err)
		}
		id := secret.ID(key)
		if prev, ok := ids[id]; ok {
			return nil, nil, fmt.Errorf("%s: the secret in %s is that of the secret knock at %s: a token sent to one could be sent again to the other; give each a secret of its own", s.Origin, s.Tokens.Secret, prev)
		}
		ids[id] = s.Origin
		from, to := s.Tokens.Windows(now, ahead)
		ls := old.set(s.Name)
		if ls == nil && afterBoot {
			from = secret.Window(now, s.Tokens.Every) + 1
		}
		if ls != nil {
			if _, last, lid, ok := splitTokenComment(ls.comment); ok && lid == id {
				from = max(from, last+1)
				to = max(to, last)
			} else {
				noCarry[s.Name] = true
			}
		}
		c := *s
		c.Elements = s.Tokens.Elements(key, now, from, to)
		c.Comment = tokenComment(s.Comment, to, id)
		t.Sets[i] = &c
	}
	if t == nil {
		return rs, nil, nil
	}
	return &nft.Ruleset{Table: t}, noCarry, nil
}
