package main

func init() {
	register(&command{
		name:  "restore",
		usage: "kwl restore [--record-dir DIR] [--netns NAME --record-dir DIR] [--state-dir DIR]",
		short: "load the last deployed policy again (at boot)",
		long: `Restore loads the policy that kwl deploy last loaded, from the record
deploy keeps in /var/lib/kwl/deployed. The systemd unit kwl.service runs
it at boot, before the network is up, so that a guarded service is
guarded from the first packet.

The recorded policy text is checked against its SHA-256 and compiled
again, for the backend and table it was deployed with, then loaded as
kwl deploy loads it.

When that cannot be done (no record, a corrupt record or policy, a
policy this kwl no longer compiles, a kernel that refuses the ruleset),
restore says why and loads the fail-closed policy recorded beside it:
every door shut. New connections to every guarded service are dropped,
except from the sources its allow statements name; DNAT of forwarded
services stays; services that are only limited are left alone. It then
exits 1, so that the failure shows in systemctl status and the journal.
If even the fail-closed policy cannot be loaded, nothing is loaded and
restore exits 1.

After kwl undeploy the record says so, and restore loads nothing.

A deploy into a named namespace (--netns) is recorded only with
--record-dir, and restore into one needs it too: named namespaces do not
survive a reboot.

Exit status: 0 restored (or nothing to restore after an undeploy), 1 the
recorded policy could not be loaded (the fail-closed policy was, if it
could be), 2 bad usage.

Examples:

	kwl restore
	systemctl status kwl; journalctl -u kwl
	kwl restore --netns lab --record-dir /var/lib/kwl/lab`,
		run: runRestore,
	})
}
