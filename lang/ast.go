package lang

// This file holds the AST: the policy as written. It mirrors the text so
// that Format can print it back with its comments; values stay as the
// words the user typed (Check gives them meaning), each with where it
// stands, so that a diagnostic points at the word at fault however the
// statement is spaced. The grammar that fills it is in grammar.go; the
// driver in parse.go cuts the file into statements, frames test blocks
// and gathers comments.

// Node is the extent of a syntax node: Pos is where its first token
// starts, End the column just after its last one.
type Node struct {
	Pos, End Pos
}

// Position returns where the node starts.
func (n Node) Position() Pos { return n.Pos }

// Word is one word of a statement as the user wrote it: a name, a
// number, a duration, a string with its quotes.
type Word struct {
	Node
	Text string
}

// String returns the word as written, or "" for a nil Word (a clause
// left out).
func (w *Word) String() string {
	if w == nil {
		return ""
	}
	return w.Text
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
	Proto string // "tcp", "udp" or ""
	Num   string
}

// Source is an address or a CIDR in a from clause.
type Source struct {
	Node
	Addr string
	Bits string // the prefix length, or ""
}

// Options are the clauses every rule statement may end with.
type Options struct {
	Family *Word // "ipv4" or "ipv6", or nil
	Reject *Word // "reject", or nil
	Log    *LogOpt
}

// LogOpt is "log LEVEL [prefix STRING] [rate COUNT/DUR]".
type LogOpt struct {
	Node
	Level  *Word
	Prefix *Word // with its quotes, or nil
	Count  *Word // of the rate, or nil
	Per    *Word // the rate's window, or nil
}

// ServiceStmt is "service NAME = PORTSPEC {, PORTSPEC} [forward to ADDR]".
type ServiceStmt struct {
	Node
	Name    string
	Ports   []*PortSpec
	Forward *Source
}

// KnockStmt is a knock, or a knock sequence, that opens or closes a service.
type KnockStmt struct {
	Node
	Ports []*PortSpec
	From  []*Source
	// SecretPos is of "secret", when Secret is set: the file of the
	// secret the knock's tokens derive from, with its quotes.
	SecretPos Pos
	Secret    *Word
	Within    *Word  // the window between consecutive knocks
	In        *Word  // the window of the whole sequence, from its first knock
	Reset     *Word  // "strict" or "exclusive": what else resets an attempt, or nil
	Action    string // "opens" or "closes"
	Service   *Word
	Also      []*Word // the services after the first: "opens ssh, https"
	Once      *Word   // "once": the door admits one connection
	ForPos    Pos     // of "for", when For is set
	For       *Word   // the door's lifetime
	// PerSource is set by "per source[/N[/M]]" after the lifetime: the
	// door opens for the knocker's prefix, Mask4 and Mask6 its lengths.
	PerSource bool
	PerPos    Pos   // of "per", when PerSource is set
	Mask4     *Word // after "per source/", or nil
	Mask6     *Word // after Mask4, or nil
	IgnorePos Pos   // of "ignore", when Ignore is set
	Ignore    *Word // how long a source that knocks out of order is ignored, or nil
	Pass      *Word // "pass": the knocks go on instead of being dropped
	Options
}

// CloseStmt is "close SVC on PORTSPEC {, PORTSPEC} ...".
type CloseStmt struct {
	Node
	Service *Word
	Ports   []*PortSpec
	From    []*Source
	Options
}

// LimitStmt is "limit SVC COUNT/DUR|COUNT concurrent [per source[/N[/M]] | shared] [ban DUR [all]] ...".
// Shared says in words what no per clause means, one counter for all
// sources; it is the only way to write a ban on a shared counter.
type LimitStmt struct {
	Node
	Service    *Word
	Count      *Word
	Window     *Word // nil for a cap of concurrent connections
	Concurrent *Word // "concurrent", or nil
	// Burst is the count of "burst N" after the rate, which the
	// checker refuses (E37): a limit's count is its burst.
	BurstPos  Pos
	Burst     *Word
	PerSource bool
	Mask4     *Word // after "per source/", or nil
	Mask6     *Word // after Mask4, or nil
	Shared    bool
	BanPos    Pos // of "ban", when Ban is set
	Ban       *Word
	BanAll    *Word // "all" after the ban's duration, or nil
	Options
}

// AllowStmt is "allow SVC [from SRC {, SRC}] ...".
type AllowStmt struct {
	Node
	Service *Word
	From    []*Source
	Options
}

// TestStmt is a test block. The driver frames it (test "NAME" [at TIME] { ... }) so
// that a bad step does not hide the next one; each step is parsed by the
// step grammar.
type TestStmt struct {
	Node
	Name    string // as written, with its quotes
	NamePos Pos
	At      *Word    // the wall-clock time of the test's start, or nil
	Comment *Comment // after "{" on the first line
	Items   []*Item  // steps and comments
}

// TestStep is one packet of a test:
// "at DUR from ADDR [port N] [to ADDR] PORTSPEC [data] [token [stale|forged]] [flags FLAGS] expect VERDICT [BACKEND VERDICT ...]".
type TestStep struct {
	Node
	At        *Word
	From      *Source
	SPort     *Word // the source port, or nil
	To        *Source
	Port      *PortSpec
	Data      bool
	Token     *Word // "token": the datagram carries a secret knock's token, or nil
	TokenKind *Word // "stale" or "forged" after "token", or nil
	Flags     *Word
	Expect    string
	Override  []*Override
}

// Override is "BACKEND VERDICT" after a step's expected verdict. Any name
// parses as a backend: which ones exist is compile's registry.
type Override struct {
	Node
	Backend string
	Verdict string
}
