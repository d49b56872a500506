package lang

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

var (
	stmtParser = participle.MustBuild[stmtRoot](
		participle.Lexer(lexDef),
		participle.Union[stmtSyntax](&serviceSyntax{}, &knockSyntax{}, &closeSyntax{}, &limitSyntax{}, &allowSyntax{}),
		participle.UseLookahead(2),
	)
	stepParser = participle.MustBuild[stepSyntax](
		participle.Lexer(lexDef),
		participle.UseLookahead(2),
	)
)

// Parse parses a policy file. It returns the AST and the syntax errors;
// after an error it goes on at the next statement, so every statement
// with a mistake gets its own diagnostic. The AST holds the statements
// that parsed.
func Parse(filename string, src []byte) (*File, Diagnostics) {
	p := &parser{file: filename}
	f := &File{Name: filename}
	toks, err := scan(filename, string(src))
	if err != nil {
		// The base lexer has a catch-all rule, so this does not happen;
		// report it rather than trust that.
		p.diags.Add(Pos{File: filename, Line: 1, Col: 1}, Error, "", err.Error(), "")
		return f, p.diags
	}
	p.toks = toks
	f.Items, _ = p.items(false)
	p.diags.Sort()
	return f, p.diags
}

type parser struct {
	file  string
	toks  []lexer.Token // without spaces; ends with EOF
	i     int
	diags Diagnostics
}

func (p *parser) peek() lexer.Token { return p.toks[p.i] }

func (p *parser) next() lexer.Token {
	t := p.toks[p.i]
	if t.Type != tEOF {
		p.i++
	}
	return t
}

func isPunct(t lexer.Token, s string) bool { return t.Type == tPunct && t.Value == s }

func isStatementWord(t lexer.Token) bool {
	if t.Type != tKeyword {
		return false
	}
	for _, w := range statementWords {
		if t.Value == w {
			return true
		}
	}
	return false
}

// items reads statements (or, in a test block, steps) and comments up to
// the end of the file or, in a test block, the closing brace. closed
// reports whether the brace was found.
func (p *parser) items(inTest bool) (items []*Item, closed bool) {
	nl := 0          // newlines since the last item
	lineHas := false // the current line already holds an item
	for {
		t := p.peek()
		switch {
		case t.Type == tEOF:
			return items, false
		case t.Type == tNL:
			p.next()
			nl++
			lineHas = false
			continue
		case t.Type == tSemi:
			p.next()
			continue
		case t.Type == tComment:
			p.next()
			c := comment(t)
			if lineHas && len(items) > 0 {
				items[len(items)-1].Trailing = c
			} else {
				items = append(items, &Item{Blank: nl >= 2 && len(items) > 0, Comment: c})
				nl = 0
				lineHas = true
			}
			continue
		case inTest && isPunct(t, "}"):
			p.next()
			return items, true
		case inTest && !lineHas && isStatementWord(t):
			// A statement where a step should be: the block lacks its
			// closing brace. Let the caller read the statement.
			return items, false
		}
		it := &Item{Blank: nl >= 2 && len(items) > 0}
		nl = 0
		switch {
		case !inTest && t.Type == tKeyword && t.Value == "test":
			if ts := p.testBlock(); ts != nil {
				it.Stmt = ts
			}
		case inTest:
			it.Step = p.parseStep(p.chunk(true))
		default:
			it.Stmt = p.parseStmt(p.chunk(false))
		}
		if it.Stmt != nil || it.Step != nil {
			items = append(items, it)
		}
		lineHas = true
	}
}

// chunk takes the tokens of one statement: up to a newline, ';', a
// comment, the end of the file or, in a test block, '}'. It appends an
// EOF token placed at the terminator, so that "unexpected end of
// statement" points where the statement stopped.
func (p *parser) chunk(inTest bool) []lexer.Token {
	var out []lexer.Token
	for {
		t := p.peek()
		if t.Type == tEOF || t.Type == tNL || t.Type == tSemi || t.Type == tComment || (inTest && isPunct(t, "}")) {
			return append(out, lexer.EOFToken(t.Pos))
		}
		out = append(out, p.next())
	}
}

func (p *parser) parseStmt(chunk []lexer.Token) Stmt {
	lex, err := lexer.Upgrade(&sliceLexer{toks: chunk})
	if err == nil {
		var root *stmtRoot
		root, err = stmtParser.ParseFromLexer(lex)
		if err == nil {
			return root.Stmt.ast()
		}
	}
	p.syntaxError(err, chunk, false)
	return nil
}

func (p *parser) parseStep(chunk []lexer.Token) *TestStep {
	lex, err := lexer.Upgrade(&sliceLexer{toks: chunk})
	if err == nil {
		var st *stepSyntax
		st, err = stepParser.ParseFromLexer(lex)
		if err == nil {
			return st.ast()
		}
	}
	p.syntaxError(err, chunk, true)
	return nil
}

// testBlock reads `test "NAME" { ... }`.
func (p *parser) testBlock() *TestStmt {
	t := p.next()
	ts := &TestStmt{Node: Node{Pos: posOf(t.Pos), End: endOf(t)}}
	name := p.peek()
	switch {
	case name.Type == tString:
		p.next()
		ts.Name, ts.NamePos = name.Value, posOf(name.Pos)
	case name.Type == tBadString:
		p.errorAt(posOf(name.Pos), "the test's name has no closing quote", "")
		p.chunk(false)
		return nil
	default:
		p.errorAt(posOf(name.Pos), fmt.Sprintf("%s; expected the test's name in quotes", describe(name, false)),
			`write: test "what it shows" {`)
		if !isPunct(name, "{") {
			p.chunk(false)
			return nil
		}
		// Read the block anyway, so that its steps are checked and its
		// brace does not count as a stray one.
		ts.Name = `""`
	}
	if at := p.peek(); at.Type == tKeyword && at.Value == "at" {
		p.next()
		t := p.peek()
		if t.Type != tAddr && t.Type != tWord && t.Type != tNumber && t.Type != tIdent {
			p.errorAt(posOf(t.Pos), fmt.Sprintf("%s; expected the time the test starts at", describe(t, false)),
				`write it as RFC 3339, in UTC: test "what it shows" at 2026-12-01T10:00:00Z {`)
			p.chunk(false)
			return nil
		}
		p.next()
		ts.At = word(&t)
	}
	if b := p.peek(); !isPunct(b, "{") {
		p.errorAt(posOf(b.Pos), fmt.Sprintf(`%s; expected "{" after the test's name`, describe(b, false)), "")
		p.chunk(false)
		return nil
	}
	p.next()
	if c := p.peek(); c.Type == tComment {
		p.next()
		ts.Comment = comment(c)
	}
	items, closed := p.items(true)
	ts.Items = items
	ts.End = p.end()
	if !closed {
		p.errorAt(ts.Position(), fmt.Sprintf(`test %s has no closing "}"`, ts.Name), `end the block with "}" on its own line`)
	}
	return ts
}

// comment converts a comment token; its text loses trailing spaces.
func comment(t lexer.Token) *Comment {
	t.Value = strings.TrimRight(t.Value, " \t\r\f\v")
	return &Comment{Node: Node{Pos: posOf(t.Pos), End: endOf(t)}, Text: t.Value}
}

// end returns the end of the last token read that is neither a
// separator nor a comment.
func (p *parser) end() Pos {
	for i := p.i - 1; i >= 0; i-- {
		if t := p.toks[i]; t.Type != tNL && t.Type != tSemi && t.Type != tEOF && t.Type != tComment {
			return endOf(t)
		}
	}
	return Pos{}
}

func (p *parser) errorAt(pos Pos, msg, hint string) {
	pos.File = p.file
	p.diags.Add(pos, Error, "", msg, hint)
}

// syntaxError turns a participle error into a diagnostic in plain words:
// `unexpected "opens"; expected a port`.
func (p *parser) syntaxError(err error, chunk []lexer.Token, inTest bool) {
	var perr participle.Error
	if !errors.As(err, &perr) {
		p.errorAt(posOf(chunk[0].Pos), err.Error(), "")
		return
	}
	pos := perr.Position()
	tok := lexer.EOFToken(pos)
	want := ""
	var ute *participle.UnexpectedTokenError
	if errors.As(err, &ute) {
		tok, want = ute.Unexpected, expected(ute)
	} else {
		for _, t := range chunk {
			if t.Pos.Offset == pos.Offset {
				tok = t
				break
			}
		}
	}
	if k := slices.IndexFunc(chunk, func(t lexer.Token) bool { return t.Pos.Offset == tok.Pos.Offset }); k >= 0 && k+1 < len(chunk) &&
		!inTest && tok.Type == tKeyword && durationClauses[chunk[0].Value] == tok.Value && chunk[k+1].Type != tDuration {
		// With two tokens of lookahead the grammar backs out of an
		// optional clause whose duration is wrong ("within 60") and
		// blames its keyword; the mistake is the word after it.
		tok, want = chunk[k+1], "<duration>"
	}
	msg, hint := explain(tok, want, chunk, inTest)
	p.errorAt(posOf(tok.Pos), msg, hint)
}

// expected returns the grammar fragment, in participle's EBNF, that the
// parser wanted where it met ute.Unexpected, or "" when it names none
// (a word after a whole statement). Participle v2 keeps the fragment in
// an unexported field and writes it only into the message, after the
// unexpected token, so the message is cut where that format puts it,
// never searched: a string token may itself hold "(expected ...)".
// TestParticipleExpected fails if an upgrade changes the format.
func expected(ute *participle.UnexpectedTokenError) string {
	if ute.Expect != "" {
		return ute.Expect
	}
	rest, ok := strings.CutPrefix(ute.Message(), fmt.Sprintf("unexpected token %q", ute.Unexpected))
	if !ok {
		return ""
	}
	rest, ok = strings.CutPrefix(rest, " (expected ")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(rest, ")")
}

// describe names a token for a message.
func describe(t lexer.Token, inTest bool) string {
	switch {
	case t.EOF():
		if inTest {
			return "unexpected end of step"
		}
		return "unexpected end of statement"
	case t.Type == tBadString:
		return "unterminated string"
	}
	return fmt.Sprintf("unexpected %q", t.Value)
}

// firstSet returns the alternatives that may come first in a grammar
// fragment written in participle's EBNF ("(\"opens\" | \"closes\") <ident>
// (\"for\" <duration>)?"), and whether the whole fragment may be empty.
func firstSet(ebnf string) (first []string, nullable bool) {
	toks := ebnfTokens(ebnf)
	i := 0
	var alts func() ([]string, bool)
	var seq func() ([]string, bool)
	term := func() ([]string, bool, bool) {
		if i >= len(toks) {
			return nil, true, false
		}
		t := toks[i]
		var f []string
		var null bool
		switch t {
		case "(":
			i++
			f, null = alts()
			if i < len(toks) && toks[i] == ")" {
				i++
			}
		case ")", "|":
			return nil, true, false
		default:
			i++
			f = []string{t}
		}
		if i < len(toks) && (toks[i] == "?" || toks[i] == "*") {
			null = true
			i++
		} else if i < len(toks) && toks[i] == "+" {
			i++
		}
		return f, null, true
	}
	seq = func() ([]string, bool) {
		var f []string
		null := true
		for {
			tf, tn, ok := term()
			if !ok {
				return f, null
			}
			if null {
				f = append(f, tf...)
				null = tn
			}
		}
	}
	alts = func() ([]string, bool) {
		f, null := seq()
		for i < len(toks) && toks[i] == "|" {
			i++
			g, n := seq()
			f = append(f, g...)
			null = null || n
		}
		return f, null
	}
	return alts()
}

// ebnfTokens splits participle's EBNF into literals, names and symbols.
func ebnfTokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ':
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			out = append(out, s[i:j])
			i = j
		case strings.IndexByte("()|?*+", c) >= 0:
			out = append(out, string(c))
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" ()|?*+\"", s[j]) < 0 {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// expectWords names what the grammar wanted in words a user knows. prev is
// the token before the unexpected one, which tells a port from a count.
func expectWords(first []string, prev, prev2 lexer.Token) []string {
	portCtx := prev.Value == "/" && (prev2.Value == "tcp" || prev2.Value == "udp")
	switch prev.Value {
	case "knock", "on", "=", ",", "tcp", "udp":
		portCtx = true
	}
	if prev.Type == tAddr || prev.Type == tNumber && prev.Value != "" {
		portCtx = true // a test step: "from ADDR [port N] [to ADDR] PORT"
	}
	var out []string
	for _, f := range first {
		w := f
		if prev.Value == "log" && prev.Type == tKeyword {
			f = "<ident>"
		}
		switch f {
		case "PortSyntax":
			w = "a port"
		case "SourceSyntax", "<addr>":
			w = "an address"
		case "<duration>":
			w = "a duration"
		case "<number>":
			switch {
			case prev.Value == "port":
				w = "a port number"
			case portCtx:
				w = "a port"
			case prev.Value == "/" || prev.Value == "source":
				w = "a prefix length"
			case portCtx:
				w = "a port"
			default:
				w = "a number"
			}
		case "<ident>":
			w = "a name"
			switch prev.Value {
			case "opens", "closes", "close", "limit", "allow", "service":
				w = "a service name"
			case "log":
				w = "a log level"
			}
		case "<string>":
			w = "a string in quotes"
		case "NameSyntax":
			w = "a service name"
		case "LogSyntax":
			w = `"log"`
		case "OverrideSyntax":
			w = "a backend and its verdict"
		case "<eof>":
			w = "end of statement"
		case `"tcp"`, `"udp"`:
			if portCtx || prev.Value == "knock" || prev.Value == "on" || prev.Value == "=" {
				w = "a port"
			}
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

func explain(tok lexer.Token, want string, chunk []lexer.Token, inTest bool) (msg, hint string) {
	msg = describe(tok, inTest)
	first := chunk[0]
	if tok.Pos.Offset == first.Pos.Offset && !first.EOF() {
		// The statement's first word is wrong.
		if inTest {
			return msg + `; expected a step ("at DUR from ADDR PORT expect VERDICT")`, didYouMean(tok.Value, []string{"at"})
		}
		return msg + "; expected a statement (service, knock, close, limit, allow or test)", didYouMean(tok.Value, statementWords)
	}
	if tok.Type == tBadString {
		return "string has no closing quote", ""
	}
	if inTest && tok.Type == tKeyword && tok.Value == "flags" {
		// The flags clause did not parse, so the grammar backed off to
		// before it: say what the clause lacks.
		return `"flags" must be followed by the TCP flags`, "write the letters S A F R P U E W (flags A: an ACK scan's probe), or none"
	}
	var prev, prev2 lexer.Token
	for _, t := range chunk {
		if t.Pos.Offset >= tok.Pos.Offset {
			break
		}
		prev, prev2 = t, prev
	}
	alts, nullable := firstSet(want)
	if want == "" || nullable {
		alts = append(alts, "<eof>")
	}
	out := expectWords(alts, prev, prev2)
	switch len(out) {
	case 0:
		return msg, ""
	case 1:
		msg += "; expected " + out[0]
	default:
		msg += "; expected " + strings.Join(out[:len(out)-1], ", ") + " or " + out[len(out)-1]
	}
	if first.Value == "limit" && (tok.Value == "shared" || tok.Value == "per") && slices.ContainsFunc(chunk, func(t lexer.Token) bool {
		return t.Type == tKeyword && t.Value != tok.Value && (t.Value == "shared" || t.Value == "per")
	}) {
		return msg, "a limit counts per source or in one counter shared by all sources, not both"
	}
	if tok.Type == tKeyword && !inTest && len(out) > 0 && out[len(out)-1] == "end of statement" {
		// A clause out of place: show the order.
		if u, ok := stmtUsage[first.Value]; ok {
			return msg, "clauses go in this order: " + u
		}
	}
	if slices.Contains(out, "a duration") && !tok.EOF() {
		return msg, durationHint(tok.Value)
	}
	if tok.Type == tIdent || tok.Type == tKeyword || tok.Type == tWord {
		var words []string
		for _, a := range alts {
			if len(a) > 2 && a[0] == '"' {
				words = append(words, strings.Trim(a, `"`))
			}
		}
		if slices.Contains(alts, "LogSyntax") {
			words = append(words, "log")
		}
		hint = didYouMean(tok.Value, words)
	}
	return msg, hint
}

// durationClauses are the optional clauses of a statement that start
// with a keyword and hold a duration (the others are reported where they
// are wrong).
var durationClauses = map[string]string{"knock": "within"}

// stmtUsage shows each statement's clauses in their order, for hints.
var stmtUsage = map[string]string{
	"service": "service NAME = PORT, ... [forward to ADDR]",
	"knock":   "knock PORT, ... [from SRC, ...] [within DUR] [in DUR] [strict|exclusive] opens SVC, ... [once] for DUR [per source[/N[/M]]] [ignore DUR] [pass]|closes SVC, ... [pass] [family F] [reject] [log LEVEL [prefix \"S\"]]",
	"close":   "close SVC on PORT, ... [from SRC, ...] [family F] [log LEVEL [prefix \"S\"]]",
	"limit":   "limit SVC COUNT/DUR [per source[/N[/M]] | shared] [ban DUR [all]] [family F] [reject] [log LEVEL [prefix \"S\"]]",
	"allow":   "allow SVC [from SRC, ...] [family F] [log LEVEL [prefix \"S\"]]",
}
