package lang

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// TestParseErrors: syntax errors in plain words, at the word at fault,
// one per bad statement.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // "line:col: message" prefixes
		hint      string
	}{
		{"missing port", "knock opens ssh for 60s", []string{`1:7: unexpected "opens"; expected a port`}, ""},
		{"misspelt keyword", "knock 1600 open ssh for 60s", []string{`1:12: unexpected "open"; expected "opens" or "closes"`}, "did you mean 'opens'?"},
		{"misspelt statement", "limt ssh 3/60s", []string{`1:1: unexpected "limt"; expected a statement`}, "did you mean 'limit'?"},
		{"bad duration", "knock 1600 opens ssh for 60sec", []string{`1:26: unexpected "60sec"; expected a duration`}, "did you mean 60s?"},
		{"bare number", "knock 1600 opens ssh for 60", []string{`1:26: unexpected "60"; expected a duration`}, "did you mean 60s?"},
		{"unit as a word", "knock 1600 opens ssh for 60 seconds", []string{`1:26: unexpected "60"; expected a duration`}, "did you mean 60s?"},
		{"days", "limit ssh 3/60s per source ban 1d", []string{`1:32: unexpected "1d"; expected a duration`}, "did you mean 24h? (durations go up to hours)"},
		{"weeks", "limit ssh 3/1w", []string{`1:13: unexpected "1w"; expected a duration`}, "did you mean 168h? (durations go up to hours)"},
		{"fraction without unit", "knock 1600 within 1.5 opens ssh for 60s", []string{`1:19: unexpected "1.5"; expected a duration`}, "did you mean 1.5s?"},
		{"minutes spelt out", "test \"t\" {\n    at 5min from 1.2.3.4 tcp/22 expect drop\n}", []string{`2:8: unexpected "5min"; expected a duration`}, "did you mean 5m?"},
		{"not a duration", "knock 1600 opens ssh for soon", []string{`1:26: unexpected "soon"; expected a duration`}, "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"},
		{"two points", "knock 1600 opens ssh for 1.5.5s", []string{`1:26: unexpected "1.5.5s"; expected a duration`}, "durations are written like 500ms, 1.5s, 60s, 5m or 1h30m"},
		{"end of statement", "knock 1600 opens ssh for", []string{`1:25: unexpected end of statement; expected a duration`}, ""},
		{"missing service", "knock 1600 opens", []string{`1:17: unexpected end of statement; expected a service name`}, ""},
		{"keyword as service", "allow for", []string{`1:7: unexpected "for"; expected a service name`}, ""},
		{"half a port", "service x = tcp/", []string{`1:17: unexpected end of statement; expected a port`}, ""},
		{"bad source", "allow ssh from example.org", []string{`1:16: unexpected "example.org"; expected an address`}, ""},
		{"trailing words", "allow ssh please", []string{`1:11: unexpected "please"; expected`}, ""},
		{"per without source", "limit ssh 3/60s per", []string{`1:20: unexpected end of statement; expected "source"`}, ""},
		{"per source and shared", "limit ssh 3/60s per source shared", []string{`1:28: unexpected "shared"`}, "a limit counts per source or in one counter shared by all sources, not both"},
		{"shared and per source", "limit ssh 3/60s shared per source", []string{`1:24: unexpected "per"`}, "a limit counts per source or in one counter shared by all sources, not both"},
		{"shared as a name", "allow shared", []string{`1:7: unexpected "shared"; expected a service name`}, ""},
		{"rate without window", "limit ssh 3", []string{`1:12: unexpected end of statement; expected "/"`}, ""},
		{"family", "allow ssh family ipv5", []string{`1:18: unexpected "ipv5"; expected "ipv4" or "ipv6"`}, "did you mean 'ipv4'?"},
		{"unterminated string", `allow ssh log info prefix "abc`, []string{`1:27: string has no closing quote`}, ""},
		{"stray character", "allow ssh @", []string{`1:11: unexpected "@"`}, ""},
		{"string like participle's message", `knock 1600 opens ssh for "(expected x)"`, []string{`1:26: unexpected "\"(expected x)\""; expected a duration`}, ""},
		{"stray brace", "}", []string{`1:1: unexpected "}"; expected a statement`}, ""},
		{"test without name", "test {\n}", []string{`1:6: unexpected "{"; expected the test's name in quotes`}, ""},
		{"test without brace", `test "t"`, []string{`1:9: unexpected end of statement; expected "{" after the test's name`}, ""},
		{"test not closed", "test \"t\" {\n    at 0s from 1.2.3.4 tcp/22 expect drop\n", []string{`1:1: test "t" has no closing "}"`}, ""},
		{"test not closed before a statement", "test \"t\" {\nallow ssh\nallow sshh", []string{`1:1: test "t" has no closing "}"`}, ""},
		{"bad verdict", "test \"t\" {\n    at 0s from 1.2.3.4 tcp/22 expect dorp\n}", []string{`2:38: unexpected "dorp"; expected "accept", "drop" or "reject"`}, "did you mean 'drop'?"},
		{"bad step", "test \"t\" {\n    on 0s\n}", []string{`2:5: unexpected "on"; expected a step`}, ""},
		{"step without port", "test \"t\" {\n    at 0s from 1.2.3.4 expect drop\n}", []string{`2:24: unexpected "expect"; expected`}, ""},
		{"several statements", "knock opens\nallow\nlimit ssh 3/60s\nclose ssh on", []string{
			`1:7: unexpected "opens"`, `2:6: unexpected end of statement`, `4:13: unexpected end of statement; expected a port`}, ""},
		{"several steps", "test \"t\" {\n    at x\n    at 1s from 1.2.3.4 tcp/22 expect drop\n    at 2s from y\n}", []string{
			`2:8: unexpected "x"; expected a duration`, `4:16: unexpected "y"; expected an address`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse("p.kwl", []byte(tc.src))
			if len(diags) != len(tc.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%v", len(diags), len(tc.want), diags)
			}
			for i, d := range diags {
				got := strings.TrimPrefix(d.Pos.String(), "p.kwl:") + ": " + d.Message
				if !strings.HasPrefix(got, tc.want[i]) {
					t.Errorf("got  %s\nwant %s...", got, tc.want[i])
				}
			}
			if tc.hint != "" && diags[0].Hint != tc.hint {
				t.Errorf("hint %q, want %q", diags[0].Hint, tc.hint)
			}
		})
	}
}

// TestPositions: every word and node of the AST spans its own text,
// whatever the spacing; End is the column just after the last byte.
func TestPositions(t *testing.T) {
	src := "limit  ssh 3 /\t60s per source / 24 ban   5m  log\twarn # c\ntest \"t\" {\n\tat 1s  from 10.0.0.1 /  32 tcp / 22 flags  SA expect drop nft  accept\n}"
	f, diags := Parse("p.kwl", []byte(src))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	l := f.Items[0].Stmt.(*LimitStmt)
	ts := f.Items[1].Stmt.(*TestStmt)
	st := ts.Items[0].Step
	span := func(n Node) string { return fmt.Sprintf("%d:%d-%d:%d", n.Pos.Line, n.Pos.Col, n.End.Line, n.End.Col) }
	for _, c := range []struct {
		what string
		got  Node
		want string
	}{
		{"limit", l.Node, "1:1-1:54"},
		{"service", l.Service.Node, "1:8-1:11"},
		{"count", l.Count.Node, "1:12-1:13"},
		{"window", l.Window.Node, "1:16-1:19"},
		{"mask", l.Mask4.Node, "1:33-1:35"},
		{"ban duration", l.Ban.Node, "1:42-1:44"},
		{"log", l.Log.Node, "1:46-1:54"},
		{"level", l.Log.Level.Node, "1:50-1:54"},
		{"comment", f.Items[0].Trailing.Node, "1:55-1:58"},
		{"test", ts.Node, "2:1-4:2"},
		{"step", st.Node, "3:2-3:71"},
		{"at", st.At.Node, "3:5-3:7"},
		{"source", st.From.Node, "3:14-3:28"},
		{"port", st.Port.Node, "3:29-3:37"},
		{"flags", st.Flags.Node, "3:45-3:47"},
		{"override", st.Override[0].Node, "3:60-3:71"},
	} {
		if got := span(c.got); got != c.want {
			t.Errorf("%s at %s, want %s", c.what, got, c.want)
		}
	}
	if l.BanPos.String() != "p.kwl:1:36" || ts.NamePos.String() != "p.kwl:2:6" {
		t.Errorf(`"ban" at %s, the test's name at %s`, l.BanPos, ts.NamePos)
	}
}

// TestParticipleExpected pins what the syntax messages take from
// participle's error: the unexpected token, and the grammar fragment it
// wanted, which participle v2 writes only into its message. An upgrade
// that changes either fails here rather than blurring every message.
func TestParticipleExpected(t *testing.T) {
	tests := []struct{ src, tok, want string }{
		{"knock 1600 opens ssh for soon", "soon", "<duration>"},
		{"knock opens ssh", "opens", "<number>"},
		{"limit ssh 3/60s per", "", `"source" ("/" <number> ("/" <number>)?)?`},
		{"knock 1600 within 60 opens ssh", "within", `("opens" | "closes") <ident> ("," NameSyntax)* "once"? ("for" <duration>)? ("per" "source" ("/" <number> ("/" <number>)?)?)? ("ignore" <duration>)? "pass"? ("family" ("ipv4" | "ipv6"))? "reject"? LogSyntax?`},
		{"allow ssh please", "please", ""},
	}
	for _, tc := range tests {
		toks, err := scan("p.kwl", tc.src)
		if err != nil {
			t.Fatal(err)
		}
		lex, err := lexer.Upgrade(&sliceLexer{toks: toks})
		if err != nil {
			t.Fatal(err)
		}
		_, err = stmtParser.ParseFromLexer(lex)
		var ute *participle.UnexpectedTokenError
		if !errors.As(err, &ute) {
			t.Errorf("%s: %T %v, want an UnexpectedTokenError", tc.src, err, err)
			continue
		}
		if ute.Unexpected.Value != tc.tok || expected(ute) != tc.want {
			t.Errorf("%s: unexpected %q, expected %q; want %q, %q", tc.src, ute.Unexpected.Value, expected(ute), tc.tok, tc.want)
		}
	}
}

// TestGrammarTerms: every production and token class the grammar's
// EBNF names, which firstSet may hand to expectWords, has words there.
// A keyword or a bare word is wanted only as a log level (the flags
// clause has a message of its own).
func TestGrammarTerms(t *testing.T) {
	prevOf := map[string]lexer.Token{"<keyword>": {Type: tKeyword, Value: "log"}, "<word>": {Type: tKeyword, Value: "log"}}
	for _, ebnf := range []string{stmtParser.String(), stepParser.String()} {
		for _, prod := range strings.Split(ebnf, "\n") {
			name, body, ok := strings.Cut(strings.TrimSuffix(prod, " ."), " = ")
			if !ok {
				t.Fatalf("production %q", prod)
			}
			if name == "StmtRoot" || name == "StmtSyntax" {
				continue // the statement's first word, which explain names itself
			}
			for _, term := range ebnfTokens(body) {
				if strings.HasPrefix(term, `"`) || strings.Contains("()|?*+", term) {
					continue
				}
				if expectWords([]string{term}, prevOf[term], lexer.Token{})[0] == term {
					t.Errorf("%s: expectWords has no words for %s", name, term)
				}
			}
		}
	}
}

// TestParseKeepsComments: the AST holds own-line and trailing comments
// and blank lines, for fmt.
func TestParseKeepsComments(t *testing.T) {
	src := "# head\n\nallow ssh # tail\ntest \"t\" { # open\n    # inside\n    at 0s from ::1 tcp/22 expect drop # step\n} # close\n"
	f, diags := Parse("p.kwl", []byte(src))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if len(f.Items) != 3 {
		t.Fatalf("%d items", len(f.Items))
	}
	if f.Items[0].Comment.Text != "# head" || !f.Items[1].Blank || f.Items[1].Trailing.Text != "# tail" {
		t.Errorf("top-level comments: %+v %+v", f.Items[0], f.Items[1])
	}
	ts := f.Items[2].Stmt.(*TestStmt)
	if ts.Comment.Text != "# open" || ts.Items[0].Comment.Text != "# inside" || ts.Items[1].Trailing.Text != "# step" || f.Items[2].Trailing.Text != "# close" {
		t.Errorf("test comments wrong: %+v", ts)
	}
	if p := ts.Items[1].Step.Position(); p.Line != 6 || p.Col != 5 {
		t.Errorf("step at %v", p)
	}
}

// TestPrint shows a diagnostic with its source line, caret and hint.
func TestPrint(t *testing.T) {
	src := []byte("allow ssh\n\tknock 1600 opens shh for 60s\n")
	_, diags := Load("p.kwl", src)
	var b strings.Builder
	diags.Print(&b, map[string][]byte{"p.kwl": src})
	want := "p.kwl:2:19: error: unknown service \"shh\" [E01]\n" +
		"    \tknock 1600 opens shh for 60s\n" +
		"    \t                 ^\n" +
		"    hint: did you mean 'ssh'?\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	var j strings.Builder
	if err := diags.PrintJSON(&j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(j.String(), `"col": 19,`) || !strings.Contains(j.String(), `"code": "E01"`) {
		t.Errorf("json: %s", j.String())
	}
	var e strings.Builder
	Diagnostics{}.PrintJSON(&e)
	if e.String() != "[]\n" {
		t.Errorf("empty json: %q", e.String())
	}
}

func TestCaretLongLine(t *testing.T) {
	line := []byte(strings.Repeat("x", 1000) + "y" + strings.Repeat("z", 1000))
	shown, pad := caretLine(line, 1001)
	if len(shown) > maxShown+6 || shown[len(pad)] != 'y' {
		t.Errorf("caret not under y: %q %d", shown, len(pad))
	}
}
