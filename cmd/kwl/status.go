package main

func init() {
	register(&command{
		name:  "status",
		usage: "kwl status [--format text|json] [--netns NAME] [--table NAME]",
		short: "show the live doors, limits and bans",
		long: `Status shows what kwl's table holds now: every set with its elements
(open doors per source, limit buckets and bans) and the time each has left,
and the rule counters. --format json prints one JSON object. Status needs
root (reading the ruleset needs CAP_NET_ADMIN).

Kwl's iptables rules are shown too, however they were loaded: the chains
named kwl-* of every table of both families with their rule and packet
counts, the jumps into them from the built-in chains, and the recent
lists their rules use (doors, limits, bans) with each source and the
number of stamps it has there. In JSON they are the "iptables" member.

Examples:

	kwl status
	kwl status --netns lab --format json`,
		run: runStatus,
	})
}
