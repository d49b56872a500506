//go:build linux

package deploy

import "testing"

// TestForgets: --service names a service's sets exactly, by its id:
// ssh's door sets are not ssh_admin's, inside-ssh's are inside_ssh's.
func TestForgets(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, kind, service, fam string
		want                             bool
	}{
		{"door_ssh_4", "", "door", "ssh", "4", true},
		{"door_ssh_2_4", "", "door", "ssh", "4", true},
		{"door_ssh_admin_4", "", "door", "ssh", "4", false},
		{"door_ssh_admin_4", "", "door", "ssh_admin", "4", true},
		{"door_ssh_admin_4", "", "door", "", "4", true},
		{"door_ssh_4", "", "door", "ssh", "6", false},
		{"door_ssh_4", "", "ban", "ssh", "4", false},
		{"door_inside_ssh_4", "", "door", "inside-ssh", "4", true},
		{"door_inside_ssh_4", "", "door", "inside", "4", false},
		{"kwl_ban_ssh_6", "kwl_", "ban", "ssh", "6", true},
		{"kwl_ban_ssh2_6", "kwl_", "ban", "ssh", "6", false},
		{"door_ssh_4x", "", "door", "ssh", "4", false},
	} {
		if got := forgets(tc.name, tc.prefix, tc.kind, tc.service, tc.fam); got != tc.want {
			t.Errorf("forgets(%q, %q, %q, %q, %q) = %v, want %v", tc.name, tc.prefix, tc.kind, tc.service, tc.fam, got, tc.want)
		}
	}
}
