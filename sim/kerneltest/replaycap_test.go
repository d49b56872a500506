//go:build linux

package kerneltest

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

// replayCapture feeds the firewall's capture of a run, as a pcap file read
// back by sim/capture, to a fresh simulator of the same ruleset, with the
// firewall's addresses as hosts (as `kwl sim --host` does), and compares
// the verdict of every packet the client sent with the kernel's. The
// firewall's own answers in the capture are what the simulator learns
// replies from, instead of the answers simModel makes up. Forwarded
// services are left out: the capture holds their answers after the
// reverse NAT, as the client sees them.
func replayCapture(m Model, pol *lang.Policy, res *Result) (compared int, ds []string, err error) {
	sm, ok := m.(*simModel)
	if !ok {
		return 0, nil, nil
	}
	for _, s := range pol.Services {
		if s.Forward.IsValid() {
			return 0, nil, nil
		}
	}
	dir, err := os.MkdirTemp("", "kwlk-cap")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "fw.pcap")
	if err := WritePcap(path, res.Capture); err != nil {
		return 0, nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	rd, err := capture.Open(bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	opts := sim.Options{Hosts: []netip.Addr{FW4, FW6}}
	var s *sim.Sim
	if sm.nft != nil {
		s, err = sim.NewNFT(sm.nft, opts)
	} else {
		s, err = sim.NewIptables(sm.ipt, opts)
	}
	if err != nil {
		return 0, nil, err
	}
	// The client's packets by tag, in the order they were sent.
	byTag := map[tagKey]Outcome{}
	for i := range res.Outcomes {
		byTag[res.Outcomes[i].key()] = res.Outcomes[i]
	}
	frames := res.Capture
	var p capture.Packet
	for i := 0; ; i++ {
		if err := rd.Next(&p); err == io.EOF {
			break
		} else if err != nil {
			return compared, ds, err
		}
		if p.Skipped != "" || i >= len(frames) {
			continue
		}
		r := s.Eval(&p)
		if frames[i].Out {
			continue
		}
		q, ok := parseFrame(frames[i].Data)
		if !ok {
			continue
		}
		o, ok := byTag[q.key()]
		if !ok {
			continue
		}
		compared++
		if k := kernelVerdict(o); k != r.Verdict {
			ds = append(ds, fmt.Sprintf("capture packet %d (%s): kernel %s, kwl sim %s (%s)", i+1, describe(o.Packet, o.Sent), k, r.Verdict, r.Comment))
		}
	}
	return compared, ds, nil
}
