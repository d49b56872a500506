//go:build linux

package kerneltest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// capReplay is what replayCapture found.
type capReplay struct {
	compared int      // the client's packets compared with the kernel
	blocked  int      // of them, those of a flow whose first packet was dropped
	accepted int      // of those, the ones the kernel accepted
	ds       []string // the disagreements
}

// replayCapture replays the firewall's capture of a run, as a pcap file
// read back by sim/capture, as kwl sim does (replay.Replay.Run, two lanes
// when the ruleset allows), through fresh simulators of the same ruleset
// with the firewall's addresses as hosts (`kwl sim --host`), and compares
// the verdict of every packet the client sent with the kernel's. The
// firewall's own answers in the capture are what the simulator learns
// replies from, instead of the answers simModel makes up. The client's
// packets of blocked flows were sent anyway, so the replay evaluates them
// (EvalBlocked). Forwarded services are left out: the capture holds their
// answers after the reverse NAT, as the client sees them.
func replayCapture(m Model, pol *lang.Policy, res *Result) (cr capReplay, err error) {
	sm, ok := m.(*simModel)
	if !ok {
		return cr, nil
	}
	for _, s := range pol.Services {
		if s.Forward.IsValid() {
			return cr, nil
		}
	}
	rd, err := openFrames(res.Capture)
	if err != nil {
		return cr, err
	}
	rp, err := sm.replay(false)
	if err != nil {
		return cr, err
	}
	rp.EvalBlocked = true
	second, err := sm.engine(false)
	if err != nil {
		return cr, err
	}
	// The client's packets by tag, in the order they were sent.
	byTag := map[tagKey]Outcome{}
	for i := range res.Outcomes {
		byTag[res.Outcomes[i].key()] = res.Outcomes[i]
	}
	frames := res.Capture
	err = rp.Run(rd, second, func(p *capture.Packet, ro *replay.Outcome) {
		if ro.Skipped != "" || p.N > len(frames) || frames[p.N-1].Out {
			return
		}
		q, ok := parseFrame(frames[p.N-1].Data)
		if !ok {
			return
		}
		o, ok := byTag[q.key()]
		if !ok {
			return
		}
		cr.compared++
		k := kernelVerdict(o)
		if ro.Blocked > 0 {
			cr.blocked++
			if k == lang.Accept {
				cr.accepted++
			}
		}
		if k != ro.Verdict {
			cr.ds = append(cr.ds, fmt.Sprintf("capture packet %d (%s): kernel %s, kwl sim %s (rule %s)", p.N, describe(o.Packet, o.Sent), k, ro.Verdict, ruleString(rp.Statement(ro))))
		}
	})
	if err != io.EOF {
		return cr, err
	}
	return cr, nil
}

// openFrames writes frames as a pcap file (WritePcap) and opens it with
// sim/capture, as kwl sim reads a capture.
func openFrames(frames []Frame) (*capture.Reader, error) {
	dir, err := os.MkdirTemp("", "kwlk-cap")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "fw.pcap")
	if err := WritePcap(path, frames); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return capture.Open(bytes.NewReader(data))
}
