package lang

import "sort"

// A Code is the stable identifier of a kind of diagnostic: E01... for the
// checker's errors, L04... for lints (warnings, and the backends' errors
// of what they cannot express exactly). Users look codes up and name them
// in kwl:ignore comments; tests name them. Syntax errors have no code.
//
// Every code is declared here, with its meaning and an example; the list
// of the package doc is checked against this one.
type Code string

// The checker's error codes.
const (
	ErrUnknownService Code = "E01" // a name that is neither built in nor defined
	ErrPortRange      Code = "E02" // port 0, above 65535, or not a number
	ErrDuration       Code = "E03" // zero, negative or too long
	ErrAddress        Code = "E04" // not an address or CIDR, or a CIDR where one address is needed
	ErrHostBits       Code = "E05" // CIDR with bits set after the prefix length
	ErrKnockOnService Code = "E06" // a knock or close port that is a port of the service itself
	ErrServiceTwice   Code = "E07" // service defined twice
	ErrLimitCount     Code = "E08" // limit count below 1 or absurdly large
	ErrRepeatedPort   Code = "E09" // a port twice in a list, or twice in a row in a sequence
	ErrTestTime       Code = "E10" // a test step earlier than the one before it
	ErrLogLevel       Code = "E11" // unknown log level
	ErrMask           Code = "E12" // per source/N out of range
	ErrString         Code = "E13" // a string with a bad escape
	ErrFamily         Code = "E14" // an address of the family the statement excludes
	ErrLifetime       Code = "E15" // "opens" without "for DUR", or "closes" with it
	ErrOverride       Code = "E16" // a backend unknown, or named twice, in one step's expectations
	ErrSharedBan      Code = "E17" // a ban on a counter shared by all sources, without "shared"
	ErrAllowAll       Code = "E18" // an allow of every source on a knocked service
	ErrDeadDoor       Code = "E19" // a door whose last knock a later close of its service revokes
	ErrForwardLocal   Code = "E20" // forward to a loopback or unspecified address
	ErrMappedSource   Code = "E21" // an IPv4-mapped IPv6 address as a source
	ErrLogPrefix      Code = "E22" // a log prefix a backend would cut or alter
	ErrLogRate        Code = "E23" // a log rate no backend can count exactly
	ErrFlags          Code = "E24" // TCP flags that are not letters of flags, or on a UDP step
	ErrNameLength     Code = "E25" // a service name longer than MaxNameLen
	ErrTestLength     Code = "E26" // a test of more than MaxTestSteps steps
	ErrSpan           Code = "E27" // a window of the whole sequence ("in DUR") on a single knock
	ErrReject         Code = "E28" // reject on a statement that refuses no connection
	ErrRejectDoors    Code = "E29" // doors of one service that disagree on reject
	ErrOnce           Code = "E30" // "once" on a knock that closes
	ErrOnceUDP        Code = "E31" // "once" on a service with UDP ports
	ErrBanAllReject   Code = "E32" // "reject" on a limit whose ban covers all traffic
	ErrPerClose       Code = "E33" // "per source" on a knock that closes
	ErrNamedTwice     Code = "E34" // a knock that names a service twice
	ErrIgnore         Code = "E35" // "ignore" on a closing knock or a knock of one port
	ErrResetOne       Code = "E36" // "strict" or "exclusive" on a knock of one port
	ErrBurst          Code = "E37" // "burst N" on a limit
	ErrSecret         Code = "E38" // a secret on a knock that cannot carry a token
	ErrToken          Code = "E39" // a test step's token that no secret knock takes
	ErrTestStart      Code = "E40" // a test's start that is not a time in UTC
)

// The lint codes: the checker's, and the backends' (compile/nft,
// compile/iptables and the checks they share).
const (
	LintKnockOnOtherService Code = "L04" // a knock or close port that is a port of another guarded service
	LintScanKnock           Code = "L05" // a knock sequence a port scan completes
	LintCapacity            Code = "L07" // what happens when a set or list is full
	LintIPv6Key             Code = "L09" // per-source IPv6 keys or bans at /128
	LintTiming              Code = "L10" // a duration a backend cannot keep, or too short for TCP
	LintSharedFamilies      Code = "L13" // a limit shared between IPv4 and IPv6 on iptables
	LintWellKnownKnock      Code = "L20" // a knock or close port that is a built-in service's port
	LintCloseOnKnock        Code = "L21" // a close port that is also a knock port of the same service
	LintDuplicate           Code = "L22" // a statement that repeats another
	LintDuplicateTest       Code = "L23" // two tests of one name
	LintDoorFamily          Code = "L24" // a door restricted to one family leaves the other closed
	LintForwardTakes        Code = "L25" // a forwarded well-known port takes the firewall's own service
	LintDeadLimit           Code = "L26" // a limit (or its ban) that an earlier limit keeps from refusing
	LintIgnoreDirective     Code = "L27" // a kwl:ignore comment that silences nothing as written
	LintSingleUse           Code = "L28" // a secret knock's single use, which iptables cannot keep
)

// codeInfo is what the registry knows of a code.
type codeInfo struct {
	meaning string // one line
	example string // a policy that has the diagnostic
}

// codes is the registry of every code a diagnostic may carry.
var codes = map[Code]codeInfo{
	ErrUnknownService: {"unknown service", "knock 1600 opens shh for 60s"},
	ErrPortRange:      {"port 0, above 65535, or a source port out of range", "knock 70000 opens ssh for 60s"},
	ErrDuration:       {"duration zero, negative, over a year, or finer than a nanosecond", "knock 1600 opens ssh for 0s"},
	ErrAddress:        {"not an IP address or CIDR, or a network where one address is needed", "allow ssh from 10.0.0.300"},
	ErrHostBits:       {"CIDR with host bits set", "allow ssh from 10.0.0.1/8"},
	ErrKnockOnService: {"knock or close port that is a port of the service itself", "knock 22 opens ssh for 60s"},
	ErrServiceTwice:   {"service defined twice", "service web = tcp/8080; service web = tcp/8081"},
	ErrLimitCount:     {"limit count below 1 or above MaxLimitCount", "limit ssh 0/60s per source"},
	ErrRepeatedPort:   {"port repeated in a list, or twice in a row in a sequence", "knock 1600, 1600 opens ssh for 60s"},
	ErrTestTime:       {"test step earlier than the step before it", "test \"t\" {\n    at 5s from 198.51.100.10 tcp/22 expect accept\n    at 1s from 198.51.100.10 tcp/22 expect accept\n}"},
	ErrLogLevel:       {"unknown log level", "knock 1600 opens ssh for 60s log loud"},
	ErrMask:           {"per source/N out of range", "limit ssh 3/60s per source/33"},
	ErrString:         {"string with a bad escape", `test "a\q" { ... }`},
	ErrFamily:         {"address of a family the statement excludes", "allow ssh from ::1 family ipv4"},
	ErrLifetime:       {`"opens" without "for DUR", or "closes" with it`, "knock 1600 opens ssh"},
	ErrOverride:       {"a backend unknown, or given twice, in one step's expectations", "test \"t\" {\n    at 0s from 198.51.100.10 tcp/22 expect accept pf drop\n}"},
	ErrSharedBan:      {`ban on a counter shared by all sources without "shared"`, "limit ssh 3/60s ban 1h"},
	ErrAllowAll:       {"allow of every source of a family in which a door knocks the same service", "knock 1600 opens ssh for 60s; allow ssh"},
	ErrDeadDoor:       {"door that can never open: a later close of its service revokes it at once", "knock 1600 opens ssh for 60s; knock 1600 closes ssh"},
	ErrForwardLocal:   {"forward to a loopback or the unspecified address", "service web = tcp/8080 forward to 127.0.0.1; allow web"},
	ErrMappedSource:   {"IPv4-mapped IPv6 source", "allow ssh from ::ffff:10.0.0.1"},
	ErrLogPrefix:      {"log prefix a backend would cut or change", `knock 1600 opens ssh for 60s log info prefix "a\"b"`},
	ErrLogRate:        {"log rate no backend can count exactly", "knock 1600 opens ssh for 60s log info rate 7/13s"},
	ErrFlags:          {"a step's flags that are no TCP flags, or flags on a UDP step", "test \"t\" {\n    at 0s from 198.51.100.10 tcp/22 flags X expect accept\n}"},
	ErrNameLength:     {"service name longer than 64 characters", "service aaaa...(65 letters) = tcp 1"},
	ErrTestLength:     {"test of more than 10,000 steps", "test with 10001 steps"},
	ErrSpan:           {"window of the whole sequence on a knock of one port", "knock 1600 in 5s opens ssh for 60s"},
	ErrReject:         {"reject on a statement that refuses no connection: a close, a closing knock, an allow", "close ssh on 1599 reject"},
	ErrRejectDoors:    {"doors of one service that disagree on reject", "knock 1600 opens ssh for 60s reject; knock 1700 opens ssh for 60s"},
	ErrOnce:           {`"once" on a knock that closes`, "knock 1599 closes ssh once"},
	ErrOnceUDP:        {`"once" on a service with UDP ports`, "knock 1600 opens wireguard once for 60s"},
	ErrBanAllReject:   {`"reject" on a limit whose ban covers all traffic`, "limit ssh 3/60s per source ban 1h all reject"},
	ErrPerClose:       {`"per source" on a knock that closes`, "knock 1599 closes ssh per source/24"},
	ErrNamedTwice:     {"knock that names a service twice", "knock 1600 opens ssh, ssh for 60s"},
	ErrIgnore:         {`"ignore" on a closing knock or on a knock of one port`, "knock 1600 opens ssh for 60s ignore 1m"},
	ErrResetOne:       {`"strict" or "exclusive" on a knock of one port`, "knock 1600 strict opens ssh for 60s"},
	ErrBurst:          {`"burst N" on a limit: its count is its burst`, "limit ssh 3/1m burst 5"},
	ErrSecret:         {"secret on a knock that is not one UDP port, or with a clause a token cannot keep", `knock 1600 secret "/etc/kwl/ssh.key" opens ssh for 60s`},
	ErrToken:          {"test step with a token that no secret knock takes, or that is no new UDP datagram", "test \"t\" {\n    at 0s from 198.51.100.10 udp/62201 token expect drop\n}"},
	ErrTestStart:      {"test start that is not a time in UTC (RFC 3339)", `test "t" at tomorrow { ... }`},

	LintKnockOnOtherService: {"knock or close port that is a port of another service the policy guards, allows or limits", "knock 80 opens ssh for 60s; allow http"},
	LintScanKnock:           {"knock sequence a port scan completes", "knock 1600 opens ssh for 60s"},
	LintCapacity:            {"what happens when a set or list is full", "limit ssh 3/60s per source"},
	LintIPv6Key:             {"per-source IPv6 keys or bans that are whole /128 addresses", "limit ssh 3/60s per source"},
	LintTiming:              {"a duration finer than the backend keeps (an error), or too short for TCP's retransmissions", "knock 1600 opens ssh for 1500ms"},
	LintSharedFamilies:      {"a limit iptables cannot share between IPv4 and IPv6 (an error)", "limit ssh 3/60s"},
	LintWellKnownKnock:      {"knock or close port that is the port of a built-in service", "knock 443 opens ssh for 60s"},
	LintCloseOnKnock:        {"close port that is also a knock port of a door of the same service", "knock 1600, 1601 opens ssh for 60s; close ssh on 1600"},
	LintDuplicate:           {"statement that means what an earlier one means", "allow ssh from 10.0.0.1; allow ssh from 10.0.0.1"},
	LintDuplicateTest:       {"test with the name of an earlier test", `test "a" { ... } test "a" { ... }`},
	LintDoorFamily:          {"door with a family clause that leaves its service closed to the other family", "knock 1600 opens ssh for 60s family ipv4"},
	LintForwardTakes:        {"forwarded port that is the port of a built-in service", "service inside = tcp/22 forward to 192.168.1.5; knock 1600 opens inside for 60s"},
	LintIgnoreDirective:     {"kwl:ignore comment that silences nothing as written: a space, a lowercase or unknown code, an error's code", "knock 1600 opens ssh for 60s # kwl: ignore L05"},
	LintSingleUse:           {"secret knock iptables cannot keep single use (an error)", `knock udp/62201 secret "/etc/kwl/ssh.key" opens ssh for 60s`},
	LintDeadLimit:           {"limit that never refuses, or ban that never fires, because an earlier limit admits fewer", "limit ssh 3/60s per source; limit ssh 5/60s per source"},
}

// Meaning returns the one-line meaning of c, or "" for an unknown code.
func (c Code) Meaning() string { return codes[c].meaning }

// Example returns a policy fragment that has a diagnostic with code c, or
// "" for an unknown code.
func (c Code) Example() string { return codes[c].example }

// Known reports whether c is a registered code.
func (c Code) Known() bool {
	_, ok := codes[c]
	return ok
}

// IsLint reports whether c is a lint code (L...).
func (c Code) IsLint() bool { return len(c) > 0 && c[0] == 'L' }

// Codes returns every registered code, in order.
func Codes() []Code {
	cs := make([]Code, 0, len(codes))
	for c := range codes {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
	return cs
}
