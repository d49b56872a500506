package lang

import "github.com/alecthomas/participle/v2/lexer"

// This file holds the grammar of statements and test steps, as
// participle struct tags, and the conversion of what participle fills
// into the AST of ast.go. Every value is captured as its token, which
// carries its position, and every node keeps the tokens it was parsed
// from, whose first and last give its extent; participle's types stay
// in this file, lex.go and parse.go.

// stmtSyntax is a statement as participle parses it.
type stmtSyntax interface {
	ast() Stmt
}

// stmtRoot is the grammar's entry for one statement.
type stmtRoot struct {
	Stmt stmtSyntax `parser:"@@"`
}

type portSyntax struct {
	Tokens []lexer.Token
	Proto  *lexer.Token `parser:"(@('tcp' | 'udp') '/')?"`
	Num    *lexer.Token `parser:"@Number"`
}

type sourceSyntax struct {
	Tokens []lexer.Token
	Addr   *lexer.Token `parser:"@Addr"`
	Bits   *lexer.Token `parser:"('/' @Number)?"`
}

type optionsSyntax struct {
	Family *lexer.Token `parser:"('family' @('ipv4' | 'ipv6'))?"`
	Reject *lexer.Token `parser:"@'reject'?"`
	Log    *logSyntax   `parser:"@@?"`
}

type logSyntax struct {
	Tokens []lexer.Token
	Level  *lexer.Token `parser:"'log' @(Ident | Keyword | Word | Number)"`
	Prefix *lexer.Token `parser:"('prefix' @String)?"`
	Count  *lexer.Token `parser:"('rate' @Number '/'"`
	Per    *lexer.Token `parser:" @Duration)?"`
}

type serviceSyntax struct {
	Tokens  []lexer.Token
	Name    *lexer.Token  `parser:"'service' @Ident '='"`
	Ports   []*portSyntax `parser:"@@ (',' @@)*"`
	Forward *sourceSyntax `parser:"('forward' 'to' @@)?"`
}

type knockSyntax struct {
	Tokens  []lexer.Token
	Ports   []*portSyntax   `parser:"'knock' @@ (',' @@)*"`
	From    []*sourceSyntax `parser:"('from' @@ (',' @@)*)?"`
	SecKw   *lexer.Token    `parser:"(@'secret'"`
	Secret  *lexer.Token    `parser:" @String)?"`
	Within  *lexer.Token    `parser:"('within' @Duration)?"`
	In      *lexer.Token    `parser:"('in' @Duration)?"`
	Reset   *lexer.Token    `parser:"@('strict' | 'exclusive')?"`
	Action  *lexer.Token    `parser:"@('opens' | 'closes')"`
	Service *lexer.Token    `parser:"@Ident"`
	Also    []*nameSyntax   `parser:"(',' @@)*"`
	Once    *lexer.Token    `parser:"@'once'?"`
	ForKw   *lexer.Token    `parser:"(@'for'"`
	For     *lexer.Token    `parser:" @Duration)?"`
	PerKw   *lexer.Token    `parser:"(@'per' 'source'"`
	Mask4   *lexer.Token    `parser:" ('/' @Number"`
	Mask6   *lexer.Token    `parser:"  ('/' @Number)?)?)?"`
	IgnKw   *lexer.Token    `parser:"(@'ignore'"`
	Ignore  *lexer.Token    `parser:" @Duration)?"`
	Pass    *lexer.Token    `parser:"@'pass'?"`
	optionsSyntax
}

// nameSyntax is one more name in a list of them.
type nameSyntax struct {
	Name *lexer.Token `parser:"@Ident"`
}

type closeSyntax struct {
	Tokens  []lexer.Token
	Service *lexer.Token    `parser:"'close' @Ident 'on'"`
	Ports   []*portSyntax   `parser:"@@ (',' @@)*"`
	From    []*sourceSyntax `parser:"('from' @@ (',' @@)*)?"`
	optionsSyntax
}

type limitSyntax struct {
	Tokens    []lexer.Token
	Service   *lexer.Token `parser:"'limit' @Ident"`
	Count     *lexer.Token `parser:"@Number"`
	Window    *lexer.Token `parser:"('/' @Duration"`
	Conc      *lexer.Token `parser:" | @'concurrent')"`
	BurstKw   *lexer.Token `parser:"(@'burst'"`
	Burst     *lexer.Token `parser:" @Number)?"`
	PerSource bool         `parser:"((@'per' 'source'"`
	Mask4     *lexer.Token `parser:"  ('/' @Number"`
	Mask6     *lexer.Token `parser:"   ('/' @Number)?)?)"`
	Shared    bool         `parser:" | @'shared')?"`
	BanKw     *lexer.Token `parser:"(@'ban'"`
	Ban       *lexer.Token `parser:" @Duration"`
	BanAll    *lexer.Token `parser:" @'all'?)?"`
	optionsSyntax
}

type allowSyntax struct {
	Tokens  []lexer.Token
	Service *lexer.Token    `parser:"'allow' @Ident"`
	From    []*sourceSyntax `parser:"('from' @@ (',' @@)*)?"`
	optionsSyntax
}

type stepSyntax struct {
	Tokens   []lexer.Token
	At       *lexer.Token      `parser:"'at' @Duration"`
	From     *sourceSyntax     `parser:"'from' @@"`
	SPort    *lexer.Token      `parser:"('port' @Number)?"`
	To       *sourceSyntax     `parser:"('to' @@)?"`
	Port     *portSyntax       `parser:"@@"`
	Data     bool              `parser:"@'data'?"`
	TokenKw  *lexer.Token      `parser:"(@'token'"`
	Token    *lexer.Token      `parser:" @('stale' | 'forged')?)?"`
	Flags    *lexer.Token      `parser:"('flags' @(Ident | Word | Number))?"`
	Expect   *lexer.Token      `parser:"'expect' @('accept' | 'drop' | 'reject')"`
	Override []*overrideSyntax `parser:"@@*"`
}

type overrideSyntax struct {
	Tokens  []lexer.Token
	Backend *lexer.Token `parser:"@Ident"`
	Verdict *lexer.Token `parser:"@('accept' | 'drop' | 'reject')"`
}

// posOf converts a participle position.
func posOf(p lexer.Position) Pos {
	return Pos{File: p.Filename, Line: p.Line, Col: p.Column}
}

// endOf returns the position just after a token; no token but a
// newline, which no node holds, spans lines.
func endOf(t lexer.Token) Pos {
	p := posOf(t.Pos)
	p.Col += len(t.Value)
	return p
}

// span returns the extent of a node parsed from toks.
func span(toks []lexer.Token) Node {
	if len(toks) == 0 {
		return Node{}
	}
	return Node{Pos: posOf(toks[0].Pos), End: endOf(toks[len(toks)-1])}
}

// word converts a captured token; a clause left out stays nil.
func word(t *lexer.Token) *Word {
	if t == nil {
		return nil
	}
	return &Word{Node: Node{Pos: posOf(t.Pos), End: endOf(*t)}, Text: t.Value}
}

func text(t *lexer.Token) string {
	if t == nil {
		return ""
	}
	return t.Value
}

func (g *portSyntax) ast() *PortSpec {
	return &PortSpec{Node: span(g.Tokens), Proto: text(g.Proto), Num: text(g.Num)}
}

func ports(gs []*portSyntax) []*PortSpec {
	out := make([]*PortSpec, len(gs))
	for i, g := range gs {
		out[i] = g.ast()
	}
	return out
}

func (g *sourceSyntax) ast() *Source {
	if g == nil {
		return nil
	}
	return &Source{Node: span(g.Tokens), Addr: text(g.Addr), Bits: text(g.Bits)}
}

func sources(gs []*sourceSyntax) []*Source {
	var out []*Source
	for _, g := range gs {
		out = append(out, g.ast())
	}
	return out
}

func (g *optionsSyntax) ast() Options {
	o := Options{Family: word(g.Family), Reject: word(g.Reject)}
	if g.Log != nil {
		o.Log = &LogOpt{Node: span(g.Log.Tokens), Level: word(g.Log.Level), Prefix: word(g.Log.Prefix),
			Count: word(g.Log.Count), Per: word(g.Log.Per)}
	}
	return o
}

func (g *serviceSyntax) ast() Stmt {
	return &ServiceStmt{Node: span(g.Tokens), Name: text(g.Name), Ports: ports(g.Ports), Forward: g.Forward.ast()}
}

func (g *knockSyntax) ast() Stmt {
	s := &KnockStmt{Node: span(g.Tokens), Ports: ports(g.Ports), From: sources(g.From), Within: word(g.Within), In: word(g.In), Reset: word(g.Reset),
		Action: text(g.Action), Service: word(g.Service), Once: word(g.Once), For: word(g.For), PerSource: g.PerKw != nil, Mask4: word(g.Mask4), Mask6: word(g.Mask6),
		Ignore: word(g.Ignore), Pass: word(g.Pass), Options: g.optionsSyntax.ast()}
	if g.IgnKw != nil {
		s.IgnorePos = posOf(g.IgnKw.Pos)
	}
	if g.SecKw != nil {
		s.SecretPos, s.Secret = posOf(g.SecKw.Pos), word(g.Secret)
	}
	for _, n := range g.Also {
		s.Also = append(s.Also, word(n.Name))
	}
	if g.ForKw != nil {
		s.ForPos = posOf(g.ForKw.Pos)
	}
	if g.PerKw != nil {
		s.PerPos = posOf(g.PerKw.Pos)
	}
	return s
}

func (g *closeSyntax) ast() Stmt {
	return &CloseStmt{Node: span(g.Tokens), Service: word(g.Service), Ports: ports(g.Ports), From: sources(g.From),
		Options: g.optionsSyntax.ast()}
}

func (g *limitSyntax) ast() Stmt {
	s := &LimitStmt{Node: span(g.Tokens), Service: word(g.Service), Count: word(g.Count), Window: word(g.Window), Concurrent: word(g.Conc),
		PerSource: g.PerSource, Mask4: word(g.Mask4), Mask6: word(g.Mask6), Shared: g.Shared, Ban: word(g.Ban),
		BanAll: word(g.BanAll), Burst: word(g.Burst),
		Options: g.optionsSyntax.ast()}
	if g.BurstKw != nil {
		s.BurstPos = posOf(g.BurstKw.Pos)
	}
	if g.BanKw != nil {
		s.BanPos = posOf(g.BanKw.Pos)
	}
	return s
}

func (g *allowSyntax) ast() Stmt {
	return &AllowStmt{Node: span(g.Tokens), Service: word(g.Service), From: sources(g.From), Options: g.optionsSyntax.ast()}
}

func (g *stepSyntax) ast() *TestStep {
	s := &TestStep{Node: span(g.Tokens), At: word(g.At), From: g.From.ast(), SPort: word(g.SPort), To: g.To.ast(),
		Port: g.Port.ast(), Data: g.Data, Flags: word(g.Flags), Expect: text(g.Expect)}
	if g.TokenKw != nil {
		s.Token, s.TokenKind = word(g.TokenKw), word(g.Token)
	}
	for _, o := range g.Override {
		s.Override = append(s.Override, &Override{Node: span(o.Tokens), Backend: text(o.Backend), Verdict: text(o.Verdict)})
	}
	return s
}
