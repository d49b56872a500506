//go:build linux

// Package nftnl encodes kwl's nftables ruleset (package compile/nft) as
// nf_tables netlink messages: Convert turns the ruleset data into
// github.com/google/nftables objects, a Batch records the messages that
// create them with a note of the statement each comes from, and
// PatchMessage completes what that library leaves out. Package deploy
// sends the batches; the compiler and the simulator need none of this,
// so they build on every system and this package only on Linux.
package nftnl
