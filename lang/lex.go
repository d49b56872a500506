package lang

import (
	"io"
	"regexp"
	"strings"

	"github.com/alecthomas/participle/v2/lexer"
)

// The scanner cuts the text into punctuation and words, then sorts each
// word by its whole shape (number, duration, address, keyword, name).
// Sorting whole words rather than matching prefixes keeps "60sec" one
// token, so the parser can say `unexpected "60sec"; expected a duration`
// instead of complaining about a stray "ec".
var baseLexer = lexer.MustSimple([]lexer.SimpleRule{
	{Name: "Comment", Pattern: `#[^\n]*`},
	{Name: "String", Pattern: `"(?:\\.|[^"\\\n])*"`},
	{Name: "BadString", Pattern: `"(?:\\.|[^"\\\n])*`},
	{Name: "NL", Pattern: `\n`},
	{Name: "Semi", Pattern: `;`},
	{Name: "Space", Pattern: `[ \t\r\f\v]+`},
	{Name: "Punct", Pattern: `[{},=/]`},
	{Name: "Word", Pattern: `[A-Za-z0-9_.:\-]+`},
	{Name: "Other", Pattern: `.`},
})

// keywords are the words of the language's statements. They cannot name a
// service. Protocols, families, levels, verdicts and backends are plain
// names matched by value, so they stay usable where a name is expected.
var keywords = map[string]bool{
	"service": true, "forward": true, "to": true,
	"knock": true, "from": true, "within": true, "opens": true, "closes": true, "for": true,
	"close": true, "on": true,
	"limit": true, "per": true, "source": true, "shared": true, "ban": true,
	"allow":  true,
	"family": true, "reject": true, "log": true, "prefix": true, "rate": true,
	"test": true, "at": true, "port": true, "data": true, "flags": true, "expect": true,
}

// statementWords start a statement; suggestions and recovery use them.
var statementWords = []string{"service", "knock", "close", "limit", "allow", "test"}

var (
	reNumber   = regexp.MustCompile(`^-?[0-9]+$`)
	reDuration = regexp.MustCompile(`^-?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|ms|h|m|s))+$`)
	reIdent    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_\-]*$`)
)

// kwlLexer is the participle lexer definition: the base rules plus the
// word classes.
type kwlLexer struct {
	symbols map[string]lexer.TokenType
}

var lexDef = newKwlLexer()

// Token types, filled from the definition's symbol table.
var (
	tEOF, tComment, tString, tBadString, tNL, tSemi, tSpace, tPunct, tWord, tOther lexer.TokenType
	tNumber, tDuration, tAddr, tIdent, tKeyword                                    lexer.TokenType
)

func newKwlLexer() *kwlLexer {
	syms := map[string]lexer.TokenType{}
	low := lexer.TokenType(0)
	for k, v := range baseLexer.Symbols() {
		syms[k] = v
		low = min(low, v)
	}
	for _, name := range []string{"Number", "Duration", "Addr", "Ident", "Keyword"} {
		low--
		syms[name] = low
	}
	tEOF, tComment, tString, tBadString = syms["EOF"], syms["Comment"], syms["String"], syms["BadString"]
	tNL, tSemi, tSpace, tPunct, tWord, tOther = syms["NL"], syms["Semi"], syms["Space"], syms["Punct"], syms["Word"], syms["Other"]
	tNumber, tDuration, tAddr, tIdent, tKeyword = syms["Number"], syms["Duration"], syms["Addr"], syms["Ident"], syms["Keyword"]
	return &kwlLexer{symbols: syms}
}

// Symbols implements lexer.Definition.
func (d *kwlLexer) Symbols() map[string]lexer.TokenType { return d.symbols }

// Lex implements lexer.Definition.
func (d *kwlLexer) Lex(filename string, r io.Reader) (lexer.Lexer, error) {
	var b strings.Builder
	if _, err := io.Copy(&b, r); err != nil {
		return nil, err
	}
	toks, err := scan(filename, b.String())
	if err != nil {
		return nil, err
	}
	return &sliceLexer{toks: toks}, nil
}

// scan returns the tokens of src that the parser reads, ending with EOF:
// no spaces, and no separator that changes nothing. A ';' after a ';' or
// a newline is dropped, and a newline after two newlines (the parser
// tells only whether a blank line came before an item), so that the
// tokens, and the memory they take, grow with the statements and
// comments rather than with the empty lines between them. Tokens are
// read one at a time, never all kept.
func scan(filename, src string) ([]lexer.Token, error) {
	l, err := baseLexer.LexString(filename, src)
	if err != nil {
		return nil, err
	}
	var toks []lexer.Token
	for {
		t, err := l.Next()
		if err != nil {
			return nil, err
		}
		n := len(toks)
		switch {
		case t.Type == tSpace:
			continue
		case t.Type == tSemi && n > 0 && (toks[n-1].Type == tSemi || toks[n-1].Type == tNL):
			continue
		case t.Type == tNL && n > 1 && toks[n-1].Type == tNL && toks[n-2].Type == tNL:
			continue
		case t.Type == tWord:
			t.Type = classify(t.Value)
		}
		toks = append(toks, t)
		if t.Type == tEOF {
			return toks, nil
		}
	}
}

func classify(w string) lexer.TokenType {
	switch {
	case keywords[w]:
		return tKeyword
	case reNumber.MatchString(w):
		return tNumber
	case reDuration.MatchString(w):
		return tDuration
	case strings.Contains(w, ":"), w[0] >= '0' && w[0] <= '9' && strings.Contains(w, "."):
		return tAddr
	case reIdent.MatchString(w):
		return tIdent
	}
	return tWord
}

// sliceLexer replays tokens already scanned.
type sliceLexer struct {
	toks []lexer.Token
	i    int
}

func (s *sliceLexer) Next() (lexer.Token, error) {
	if s.i >= len(s.toks) {
		pos := lexer.Position{}
		if len(s.toks) > 0 {
			pos = s.toks[len(s.toks)-1].Pos
		}
		return lexer.EOFToken(pos), nil
	}
	t := s.toks[s.i]
	s.i++
	return t, nil
}
