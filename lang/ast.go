package lang

import "github.com/alecthomas/participle/v2/lexer"

// This file holds the AST: the policy as written. It mirrors the text so
// that Format can print it back with its comments; values stay as the
// words the user typed (Check gives them meaning). The struct tags are the
// participle grammar of statements and test steps; the driver in parse.go
// cuts the file into statements, frames test blocks and gathers comments.

// Node carries the position of the first token of a syntax node. The
// parser fills Pos; Position converts it.
type Node struct {
	Pos lexer.Position
}

// tokens holds the tokens a statement or step was parsed from; the checker
// uses them to point at the word at fault.
type tokens struct {
	Tokens []lexer.Token
}

// after returns the position of the token that follows the first token
// spelled kw, or def when there is none.
func (t tokens) after(kw string, def Pos) Pos {
	for i, tok := range t.Tokens {
		if tok.Value == kw && i+1 < len(t.Tokens) && !t.Tokens[i+1].EOF() {
			p := t.Tokens[i+1].Pos
			return Pos{File: p.Filename, Line: p.Line, Col: p.Column}
		}
	}
	return def
}

// Position returns where the node starts.
func (n Node) Position() Pos {
	return Pos{File: n.Pos.Filename, Line: n.Pos.Line, Col: n.Pos.Column}
}

// File is a parsed policy file.
type File struct {
	Name  string
	Items []*Item // statements and own-line comments, in order
}

// Item is one line of a file or of a test block: a statement (or step),
// or an own-line comment.
type Item struct {
	// Blank is set when one or more empty lines come before the item.
	Blank    bool
	Stmt     Stmt      // a statement (in a File), or nil
	Step     *TestStep // a test step (in a Test), or nil
	Comment  *Comment  // an own-line comment, when Stmt and Step are nil
	Trailing *Comment  // a comment after the statement on the same line
}

// Comment is a "#" comment; Text starts with "#".
type Comment struct {
	Node
	Text string
}

// Stmt is a statement: *ServiceStmt, *KnockStmt, *CloseStmt, *LimitStmt,
// *AllowStmt or *TestStmt.
type Stmt interface {
	Position() Pos
	stmt()
}

func (*ServiceStmt) stmt() {}
func (*KnockStmt) stmt()   {}
func (*CloseStmt) stmt()   {}
func (*LimitStmt) stmt()   {}
func (*AllowStmt) stmt()   {}
func (*TestStmt) stmt()    {}

// PortSpec is "1600", "tcp/22" or "udp/8000".
type PortSpec struct {
	Node
	Proto string `parser:"(@('tcp' | 'udp') '/')?"`
	Num   string `parser:"@Number"`
}

// Source is an address or a CIDR in a from clause.
type Source struct {
	Node
	Addr string `parser:"@Addr"`
	Bits string `parser:"('/' @Number)?"`
}

// Options are the clauses every rule statement may end with.
type Options struct {
	Family string  `parser:"('family' @('ipv4' | 'ipv6'))?"`
	Log    *LogOpt `parser:"@@?"`
}

// LogOpt is "log LEVEL [prefix STRING] [rate COUNT/DUR]".
type LogOpt struct {
	Node
	tokens
	Level  string `parser:"'log' @(Ident | Keyword | Word | Number)"`
	Prefix string `parser:"('prefix' @String)?"`
	Count  string `parser:"('rate' @Number '/'"`
	Per    string `parser:" @Duration)?"`
}

// ServiceStmt is "service NAME = PORTSPEC {, PORTSPEC} [forward to ADDR]".
type ServiceStmt struct {
	Node
	tokens
	Name    string      `parser:"'service' @Ident '='"`
	Ports   []*PortSpec `parser:"@@ (',' @@)*"`
	Forward *Source     `parser:"('forward' 'to' @@)?"`
}

// KnockStmt is a knock, or a knock sequence, that opens or closes a service.
type KnockStmt struct {
	Node
	tokens
	Ports   []*PortSpec `parser:"'knock' @@ (',' @@)*"`
	From    []*Source   `parser:"('from' @@ (',' @@)*)?"`
	Within  string      `parser:"('within' @Duration)?"`
	Action  string      `parser:"@('opens' | 'closes')"`
	Service string      `parser:"@Ident"`
	For     string      `parser:"('for' @Duration)?"`
	Options
}

// CloseStmt is "close SVC on PORTSPEC {, PORTSPEC} ...".
type CloseStmt struct {
	Node
	tokens
	Service string      `parser:"'close' @Ident 'on'"`
	Ports   []*PortSpec `parser:"@@ (',' @@)*"`
	From    []*Source   `parser:"('from' @@ (',' @@)*)?"`
	Options
}

// LimitStmt is "limit SVC COUNT/DUR [per source[/N[/M]] | shared] [ban DUR] ...".
// Shared says in words what no per clause means, one counter for all
// sources; it is the only way to write a ban on a shared counter.
type LimitStmt struct {
	Node
	tokens
	Service   string `parser:"'limit' @Ident"`
	Count     string `parser:"@Number '/'"`
	Window    string `parser:"@Duration"`
	PerSource bool   `parser:"((@'per' 'source'"`
	Mask4     string `parser:"  ('/' @Number"`
	Mask6     string `parser:"   ('/' @Number)?)?)"`
	Shared    bool   `parser:" | @'shared')?"`
	Ban       string `parser:"('ban' @Duration)?"`
	Options
}

// AllowStmt is "allow SVC [from SRC {, SRC}] ...".
type AllowStmt struct {
	Node
	tokens
	Service string    `parser:"'allow' @Ident"`
	From    []*Source `parser:"('from' @@ (',' @@)*)?"`
	Options
}

// TestStmt is a test block. The driver frames it (test "NAME" { ... }) so
// that a bad step does not hide the next one; each step is parsed by the
// Step grammar.
type TestStmt struct {
	Node
	Name    string // as written, with its quotes
	NamePos lexer.Position
	Comment *Comment // after "{" on the first line
	Items   []*Item  // steps and comments
}

// TestStep is one packet of a test:
// "at DUR from ADDR [port N] [to ADDR] PORTSPEC [data] [flags FLAGS] expect VERDICT [BACKEND VERDICT ...]".
type TestStep struct {
	Node
	tokens
	At       string      `parser:"'at' @Duration"`
	From     *Source     `parser:"'from' @@"`
	SPort    string      `parser:"('port' @Number)?"`
	To       *Source     `parser:"('to' @@)?"`
	Port     *PortSpec   `parser:"@@"`
	Data     bool        `parser:"@'data'?"`
	Flags    string      `parser:"('flags' @(Ident | Word | Number))?"`
	Expect   string      `parser:"'expect' @('accept' | 'drop' | 'reject')"`
	Override []*Override `parser:"@@*"`
}

// Override is "BACKEND VERDICT" after a step's expected verdict. Any name
// parses as a backend: which ones exist is compile's registry.
type Override struct {
	Node
	Backend string `parser:"@Ident"`
	Verdict string `parser:"@('accept' | 'drop' | 'reject')"`
}
