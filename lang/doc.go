// Package lang is kwl's language front end: it turns policy text into a
// checked, backend-independent IR.
//
// The pipeline is Parse (text to AST, ast.go), Check (AST to IR, ir.go)
// and Format (AST back to canonical text). Load is Parse then Check.
// Every stage reports problems as Diagnostics (diag.go) with the
// file:line:col of the word at fault, and keeps going, so one run reports
// every mistake of a file; Diagnostics.Print shows each one with its
// source line and a caret, PrintJSON as a JSON array.
//
// # Grammar
//
//	# comment to end of line; statements end at ';' or newline
//	service NAME = PORTSPEC {, PORTSPEC} [forward to ADDR]
//	knock PORTSPEC {, PORTSPEC} [from SRC {, SRC}] [within DUR] [in DUR] [strict|exclusive] opens SVC {, SVC} [once] for DUR [per source[/V4BITS[/V6BITS]]] [ignore DUR] [pass] [OPTIONS]
//	knock PORTSPEC {, PORTSPEC} [from SRC {, SRC}] [within DUR] [in DUR] [strict|exclusive] closes SVC {, SVC} [pass] [OPTIONS]
//	knock udp/PORT [from SRC {, SRC}] secret "FILE" opens SVC {, SVC} [once] for DUR [per source[/V4BITS[/V6BITS]]] [OPTIONS]
//	close SVC on PORTSPEC {, PORTSPEC} [from SRC {, SRC}] [OPTIONS]
//	limit SVC COUNT/DUR|COUNT concurrent [per source[/V4BITS[/V6BITS]] | shared] [ban DUR [all]] [OPTIONS]
//	allow SVC [from SRC {, SRC}] [OPTIONS]
//	test "NAME" [at TIME] {
//	    at DUR from ADDR [port N] [to ADDR] PORTSPEC [data] [token [stale|forged]] [flags FLAGS] expect VERDICT [BACKEND VERDICT ...]
//	}
//	OPTIONS = [family ipv4|ipv6] [reject] [log LEVEL [prefix "STR"] [rate COUNT/DUR]]
//
// PORTSPEC is 1600 (tcp), tcp/22 or udp/8000; SRC an address or a CIDR;
// DUR a duration; VERDICT accept, drop or reject; BACKEND a backend of
// compile's registry (nft, iptables); LEVEL a syslog level (emerg alert crit err warn notice info
// debug); FLAGS TCP flags as tcpdump and nmap print them, letters S (SYN),
// A (ACK), F (FIN), R (RST), P (PSH), U (URG), E (ECE), W (CWR) in any
// order, or none. The words of the statements (service, knock, opens, for, ...)
// are reserved and cannot name a service.
//
// # Durations
//
// A DUR is written as time.ParseDuration reads it: numbers, each with an
// optional fraction and a unit h, m, s, ms, us or ns, as in 500ms, 60s,
// 1.5s, 2.5m, 1h30m or .25s. Its value is exact and must be a whole number
// of nanoseconds (1.0000000001s is an E03 error, not 1s). A bare number
// or a unit spelt out (60, 60sec, 60 seconds, 5min, 1d) is a syntax error
// whose hint shows the form meant (60s, 5m, 24h).
//
// Format writes each duration from its value, starting at the largest
// unit the word uses: whole hours, minutes and seconds with no zero
// parts, then a fraction of a second as decimals of the seconds; a
// duration under a second (or written in ms, us or ns) is one number in
// the largest unit it fills. So 90s stays 90s and 1m30s stays 1m30s,
// 2.5m becomes 2m30s, 1.50s 1.5s, 1h60m 2h, 0.4s 400ms, 1500ms stays
// 1500ms. The value never changes, and the form is its own form.
//
// The backends hold durations as coarse as their kernels do: iptables'
// recent match counts whole seconds, so a door lifetime, a sequence's
// window, a per-source limit's window or a ban with a fraction of a
// second is an error there (L10); nftables keeps milliseconds and refuses
// what is finer (L10). Neither rounds. A test step's time is the time of
// a packet, not a duration a backend holds: any duration will do.
//
// Times that kwl prints (kwl sim's JSON "time", its text lines,
// explanations, test failures) are seconds from integer nanoseconds, with
// up to nine decimals and no trailing zeros: 1.373578999, 31536005.1s.
//
// Statements are parsed with a participle grammar (the struct tags in
// grammar.go, converted into the AST of ast.go, where every word keeps
// its own position), one statement at a time: the driver cuts the file
// at ';' and newlines, frames test blocks and collects comments, so a
// syntax error stops only its own statement (or test step).
//
// # Meaning
//
// Built-in services: ssh tcp/22, ftp tcp/21, telnet tcp/23, smtp tcp/25,
// dns udp/53 and tcp/53, http tcp/80, pop3 tcp/110, ntp udp/123, imap
// tcp/143, snmp udp/161, https tcp/443, submission tcp/587, imaps tcp/993,
// pop3s tcp/995, openvpn udp/1194, mysql tcp/3306, rdp tcp/3389, postgres
// tcp/5432, vnc tcp/5900, wireguard udp/51820. A service statement may
// redefine a built-in name once; statements may name a service defined
// further down.
//
// A TCP knock, close port or closing knock is a SYN (SYN set, ACK clear),
// and a limit counts SYNs among new TCP connections: conntrack calls a
// bare ACK new (a flow picked up mid-stream, nf_conntrack_tcp_loose), so
// an ACK scan would otherwise knock, close, move a sequence or use up a
// limit; FIN, Xmas and null packets are invalid to conntrack and never
// new. A new TCP packet that is not a SYN goes past the limits to the
// accepts, uncounted. UDP knocks and limits count every new datagram.
//
// A test step is one packet: a TCP SYN or a UDP datagram from a fresh
// source port; with data, a packet of the latest flow from the source to
// the port (TCP ACK with PSH); with flags, a TCP packet with exactly those
// flags (from a fresh port, or of the latest flow with data).
//
// A knock sequence of more than one port without "within" gets within 5s;
// a single knock has Within 0. "in DUR" bounds the whole sequence: its
// last knock at most DUR after its first, as knockd's seq_timeout does
// (Span); with "in" and no "within", any gap up to DUR is allowed. A
// first knock after a later one starts the sequence, and its window,
// over. A knock on a port of the sequence that is not the next one resets
// the attempt, except a knock on the port of the source's last counted
// knock (a retransmitted or duplicated SYN), which changes nothing: TCP
// resends an unanswered SYN after 1 s and 3 s, and some clients send
// every knock twice, so that a reset would break the sequences of the
// very clients that knock correctly. A sequence may come back to a port,
// not twice in a row: a knock on it advances the attempt from each stage
// whose next knock it is, is kept at each stage whose last knock it was,
// and restarts or resets the attempt elsewhere. That is the default (Reset
// ResetOwn): a scanner's other traffic leaves the attempt alone, and so
// do a client's own connections while it knocks. "exclusive"
// (ResetKnocks) also starts the attempt over on a knock of any other
// knock or close statement, as knockd keeps one attempt per source;
// "strict" (ResetAny) on any other packet from the source to the host
// that conntrack calls new. Neither resets on the source's last counted
// knock again. A closing knock of one port is a Revoke
// with Ports (like close), of several a Revoke with Sequence. "per
// source" keys counters by /32 and /128, "per source/24" by /24 and /128,
// "per source/24/64" by /24 and /64; without "per" one counter is shared
// (Mask4 and Mask6 are 32 and 128 then), and "shared" says so in words.
// A ban on a shared counter must say "shared" (limit api 100/1s shared
// ban 60s): once one source spends the counter, every source that
// connects is banned. When every from address of a statement is of one
// family and no family clause is given, the statement's Family is
// narrowed to that family.
//
// A duration includes its last instant, on every backend: a door opened
// at t for D admits a connection at t+D and refuses one a kernel tick
// later; the same for within, in, ban and a limit's window.
//
// A limit COUNT/DUR admits at most COUNT new connections of one key (a
// masked source, or every source when shared) in any window of length
// DUR, the window's ends included; refused connections do not count, and
// a ban starts at the first refused connection. COUNT is at most
// MaxLimitCount (100) and DUR at most MaxLimitWindow (a day).
//
// A cap, "limit SVC COUNT concurrent", admits a new connection while
// fewer than COUNT connections of its key are open (at most
// MaxConcurrent). A connection counts from the attempt the cap admitted
// until conntrack forgets it, a TCP one until it closes (TIME_WAIT or
// CLOSE); an attempt the cap or a later statement refused stops counting
// at the key's next connection two kernel ticks on (nf_conncount). Caps
// and rate limits of a service run in order, as limits do; a cap may ban.
//
// A ban holds a source (its key: a masked source, or everyone when
// shared) for its duration from the connection that went over the limit. It refuses
// the source's new connections to the service; with "all" (Shorewall's
// AutoBL, pf's overload table) it drops every packet the source sends to
// the host itself, on every port and protocol, its knocks included, and
// allowed services too: allow exempts a source from its service's knocks
// and limits, not from a ban earned elsewhere. A ban never cuts the
// source's established connections, and "all" does not reach the
// services the host forwards (each is banned by its own limits). A ban on
// all traffic drops; it cannot reject (E32).
//
// A secret knock (knock udp/62201 secret "/etc/kwl/ssh.key" opens ssh
// for 60s) is one UDP datagram whose 16 bytes of payload are the token
// of the current window: HMAC-SHA256 of the window's number under the
// secret in the file, cut to 16 bytes (package secret). A window is
// TokenWindow (30s) long. The ruleset holds the tokens of the coming
// hours (kwl deploy --tokens), never the secret; a token is taken from
// when it is loaded to the end of the window TokenSkew after its own,
// and once: the kernel deletes it as it opens the door, so a datagram
// seen on the way and sent again, from any source, opens nothing. When
// the tokens run out, nothing opens. A datagram of another length, or another
// payload, is dropped as any knock. nftables only: iptables has no state
// keyed by a datagram's bytes (L28). The checker reads no secret: test
// blocks derive stand-in tokens from the file's name, and "at TIME"
// (UTC, RFC 3339) pins the wall clock of the test's time 0
// (DefaultTestStart without it). A step "udp/62201 token" sends the
// token of its window, "token stale" one of the window TokenSkew+1
// before it, "token forged" one of another secret; sent twice, a token
// is a replay.
//
// A door opened "once" admits one connection: the TCP SYN it accepts
// closes it for the source, which must knock again for the next one; the connection
// itself goes on. A TCP packet that conntrack calls new without being a
// SYN (an ACK scan, a flow picked up mid-stream) does not use it up, as it
// does not count towards a limit. A connection refused by a limit does
// not use it up either. Until it admits one, the door closes at the end
// of its lifetime as any other (Shorewall Events' "reset", nfknock). A
// SYN retransmitted before the server answers finds the door used up; one
// retransmitted after it (the SYN-ACK lost on the way) belongs to an
// established connection. A service with UDP ports cannot be opened once
// (E31).
//
// A knock of several services ("opens ssh, https") is a Door of each,
// alike but for the service and all with the statement's Ref: one
// sequence opens them all (a closing knock of several, a Revoke of
// each). A service named twice is an error (E34).
//
// A knock statement with "pass" leaves its knocks to the rest of the
// ruleset instead of dropping them (Shorewall's SetEvent with ACCEPT): a
// knock on a port in use. Without it the knock ports are dropped.
//
// A door is opened for the address that knocked. With "per source/24"
// (or /24/64) after its lifetime it is keyed by the knocker's prefix:
// the knocks of its sequence, the door and a connection through it may
// come from any addresses of one /24 (or IPv6 /64), as from clients
// behind a carrier NAT; a close or a closing knock from any address of
// the prefix closes it, and a door opened once is used up by the prefix.
// "from" still says who may knock. A closing knock keys nothing (E33).
//
// A reject clause on a knock that opens a service, or on a limit, refuses
// with a reject instead of a drop: a new TCP connection gets a TCP reset,
// any other new packet an ICMP (IPv4) or ICMPv6 port unreachable, as a
// closed port answers (nft's "reject with tcp reset" and "reject with
// icmpx port-unreachable"; iptables' REJECT --reject-with tcp-reset,
// icmp-port-unreachable, icmp6-port-unreachable). On a knock it is how
// the service refuses while no door is open for the source, so every door
// of a service says the same (E29); on a limit it covers the limit's
// refusals and its ban. Knock and close ports are always dropped: an
// answer would show a scanner where they are.
//
// A log clause logs what its statement refuses (a limit, a ban), or, on
// a knock, every knock, close of its service, admission and refusal; on
// an allow, the admissions. Each rule that logs writes at most Rate lines
// per Per, in bursts of up to Rate: DefaultLogRate per DefaultLogPer (10
// a minute) unless "rate COUNT/DUR" says otherwise, a whole number of
// lines per second, minute, hour or day. A prefix is at most MaxLogPrefix
// (29) printable ASCII characters other than " and \.
//
// The limits of a service run in policy order and the first that refuses
// drops; each counts only the connections that reach it and that it
// admits, at most COUNT in any window DUR. A later limit N2/T2 thus sees
// only what every earlier one admitted. An earlier limit N1/T1 whose key
// is at least as coarse (a shared counter, or a prefix no longer than the
// later one's, in each family the later one covers) lets at most
// N1·⌈T2/T1⌉ connections of one of the later limit's keys through in any
// window T2; when that is at most N2, the later limit never refuses and
// its ban never fires (L26).
//
// # Error codes
//
// Syntax errors have no code. The checker's errors:
//
//	E01 unknown service (with a "did you mean" hint)
//	E02 port 0, above 65535, or a source port out of range
//	E03 duration zero (except a test step's "at 0s"), negative, over a year,
//	    or finer than a nanosecond
//	E04 not an IP address or CIDR; prefix length out of range; a network
//	    where one address is needed (forward to, a step's from and to)
//	E05 CIDR with host bits set (the hint names the network)
//	E06 knock or close port that is a port of the service itself
//	E07 service defined twice
//	E08 limit count below 1 or above MaxLimitCount (100); a limit's window
//	    over a day is an E03
//	E09 port repeated in a list, or twice in a row in a sequence (the
//	    second knock would be the first one's retransmission)
//	E10 test step earlier than the step before it
//	E11 unknown log level
//	E12 per source/N out of range (IPv4 1..32, IPv6 1..128)
//	E13 string with a bad escape (test name, log prefix)
//	E14 address of a family the statement excludes; a step from one
//	    family to the other
//	E15 "opens" without "for DUR", or "closes" with it
//	E16 a backend unknown (compile's registry), or given twice, in one
//	    step's expectations
//	E17 ban on a counter shared by all sources without "shared"
//	E18 allow of every source (no from, or a /0) of a family in which a
//	    door knocks the same service: the door guards nothing
//	E19 door that can never open: its last knock port is a close port of
//	    the same service in a statement below it, which revokes the door
//	    at once (statements on a shared port run in policy order)
//	E20 forward to a loopback or the unspecified address
//	E21 IPv4-mapped IPv6 source (::ffff:10.0.0.1): no packet comes from
//	    one, so the statement would match nothing; write the IPv4 address
//	E22 log prefix longer than 29 characters, or with a character other
//	    than printable ASCII, or with " or \ (a backend would cut or
//	    change it)
//	E23 log rate out of range, over a window longer than a day, or not a
//	    whole number of lines per second, minute, hour or day
//	E24 a step's flags with a letter that is no TCP flag or a flag twice,
//	    or flags on a UDP step
//	E25 service name longer than MaxNameLen (64) characters: it becomes
//	    part of set, chain and list names and of rule comments, which
//	    the kernel bounds
//	E26 test of more than MaxTestSteps (10,000) steps: the fresh source
//	    ports from 40000 up would run out
//	E27 a window of the whole sequence ("in 5s") on a knock of one port
//	E28 reject on a statement that refuses no connection: a close or a
//	    closing knock (its knocks are dropped, never answered), an allow
//	E29 doors of one service that disagree on reject: a service has one
//	    guard, which drops or rejects
//	E30 "once" on a knock that closes
//	E31 "once" on a service with UDP ports: a flow's datagrams are new
//	    to conntrack until the server answers, so the second would find
//	    the door used up
//	E32 "reject" on a limit whose ban covers all traffic: the host would
//	    answer every packet of a banned source, on every port
//	E33 "per source" on a knock that closes: a close closes each door
//	    of the service by the door's own key
//	E34 knock that names a service twice
//	E35 "ignore" on a closing knock or on a knock of one port: neither
//	    can be knocked out of order
//	E36 "strict" or "exclusive" on a knock of one port: a single knock
//	    has no attempt in progress to start over
//	E37 "burst N" on a limit: a limit COUNT/DUR admits COUNT at once, its
//	    burst; a token bucket's burst differs between nft_limit (rate +
//	    burst tokens) and xt_limit (burst credits), so kwl has none
//	E38 secret on a knock that cannot carry a token: a knock of a TCP
//	    port or of more than one port, a closing knock, a relative file
//	    name, within, in, strict, exclusive, ignore or pass, a port
//	    another knock or close uses, or the secret file of another
//	    secret knock
//	E39 test step with a token that no secret knock takes, or that is
//	    not a new UDP datagram
//	E40 test start that is not a time in UTC, RFC 3339
//	    (2026-12-01T10:00:00Z)
//
// # Bounds
//
// Check and the backends take time and memory linear in the size of a
// policy: a knock sequence of n ports compiles to O(n) rules of a size
// that does not depend on n (its reset is a chain of one delete a rule),
// a close of many doors and the guard of a service with many doors are
// chains too, and sources are folded in one sorted pass. So no rule
// passes the kernel's bounds of 128 expressions and 4 kB (EFBIG).
// Empty lines and repeated separators are dropped as they are scanned.
//
// Lints (warnings, exit code unchanged):
//
//	L04 knock or close port that is a port of another service the policy
//	    guards, allows or limits
//	L20 knock or close port that is the port of a built-in service (443,
//	    53, ...) the host probably serves, unless the policy redefines
//	    that name
//	L21 close port that is also a knock port of a door of the same
//	    service, where it does not kill the door (E19): above the last
//	    knock it closes nothing, on an earlier port of a sequence it
//	    closes the door of a source that knocks again
//	L22 statement that means what an earlier one means
//	L23 test with the name of an earlier test
//	L24 door with a family clause (and no from) that leaves its service
//	    closed to every source of the other family: no door opens it
//	    there and no allow admits all of it
//	L25 forwarded port that is the port of a built-in service: the DNAT
//	    takes it at every address of the host, and the host's own
//	    service on it can no longer be reached
//	L26 limit that never refuses, or ban that never fires, because an
//	    earlier limit of the service admits fewer (see Meaning)
//	L27 kwl:ignore comment that silences nothing as written: "kwl:
//	    ignore" with a space, a code in lower case, an unknown code, or
//	    an error's code (errors cannot be silenced)
//
// The backends (compile/nft, compile/iptables) add the lints of what they
// cannot express exactly, or of what no backend can hide:
//
//	L05 knock sequence a port scan completes: one port, or ports in
//	    ascending or descending order, with no close ports to guard them
//	L07 capacity: what happens when a set or list is full
//	L09 per-source IPv6 keys or bans that are whole /128 addresses
//	L10 timing: a window or lifetime too short for TCP's retransmissions;
//	    an error for a duration finer than the backend keeps (whole
//	    seconds on iptables, milliseconds on nftables)
//	L13 (an error) a limit iptables cannot share between IPv4 and IPv6
//	L28 (an error) a secret knock on iptables: nothing there keeps state
//	    keyed by a datagram's bytes, so a token could not be used once
//
// The codes, with their meanings and examples, are the constants of type
// Code (Codes lists them).
//
// A comment "# kwl:ignore L09" silences those codes for the statement it
// trails (on a line of several statements, the last of them: in
// "a; b # kwl:ignore L09", b), or, standing on its own line, for the
// statement below it (Policy.Filter). Errors cannot be silenced.
package lang
