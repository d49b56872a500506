package report

import (
	"net/netip"
	"strconv"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// AppendPacketJSON writes one packet's JSON line by hand: no reflection
// and no allocation per packet.
func AppendPacketJSON(b []byte, p *capture.Packet, o *replay.Outcome, rp *replay.Replay) []byte {
	b = appendPacketFields(b, p)
	if o.Skipped != "" {
		b = append(b, `,"skipped":`...)
		b = appendJSONString(b, o.Skipped)
		return append(b, "}\n"...)
	}
	b = append(b, ',')
	b = appendVerdictFields(b, o, rp)
	return append(b, "}\n"...)
}

// appendPacketFields opens a packet's JSON object with what the capture
// says of the packet.
func appendPacketFields(b []byte, p *capture.Packet) []byte {
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, int64(p.N), 10)
	b = append(b, `,"time":`...)
	b = appendSeconds(b, p.Time)
	if p.Src.IsValid() {
		b = append(b, `,"src":"`...)
		b = p.Src.AppendTo(b)
		b = append(b, `","dst":"`...)
		b = p.Dst.AppendTo(b)
		b = append(b, `","proto":"`...)
		b = append(b, protoName(p.Proto)...)
		b = append(b, '"')
		if p.Proto == lang.TCP || p.Proto == lang.UDP {
			b = append(b, `,"sport":`...)
			b = strconv.AppendUint(b, uint64(p.SPort), 10)
			b = append(b, `,"dport":`...)
			b = strconv.AppendUint(b, uint64(p.DPort), 10)
		}
		if p.Proto == lang.TCP {
			b = append(b, `,"flags":"`...)
			b = appendFlags(b, p.Flags)
			b = append(b, '"')
		}
		if p.Frags > 0 {
			b = append(b, `,"fragments":`...)
			b = strconv.AppendUint(b, uint64(p.Frags), 10)
		}
	}
	return b
}

// appendVerdictFields writes what became of an evaluated packet: its
// verdict, the deciding statement, and the blocked flow it is part of.
func appendVerdictFields(b []byte, o *replay.Outcome, rp *replay.Replay) []byte {
	b = append(b, `"verdict":"`...)
	b = append(b, o.Verdict.String()...)
	b = append(b, `","rule":`...)
	b = appendJSONString(b, rp.RuleOf(o))
	if o.Blocked > 0 {
		b = append(b, `,"blocked_flow":`...)
		b = strconv.AppendInt(b, int64(o.Blocked), 10)
	}
	return b
}

// AppendExplain writes one --explain line.
func AppendExplain(b []byte, p *capture.Packet, o *replay.Outcome, rp *replay.Replay) []byte {
	b = appendPacketText(b, p)
	b = append(b, o.Verdict.String()...)
	if r := rp.RuleOf(o); len(r) > 0 {
		b = append(b, " by "...)
		b = append(b, r...)
		if pos := rp.Statement(o); rp.Kind(pos) != "" {
			k := rp.Kind(pos)
			b = append(b, " ("...)
			b = append(b, k...)
			b = append(b, ' ')
			b = append(b, rp.Service(pos)...)
			b = append(b, ')')
		}
	} else {
		b = append(b, " "...)
		b = append(b, NoStatement...)
	}
	if o.Explain != "" {
		b = append(b, "; "...)
		b = append(b, o.Explain...)
	}
	return append(b, '\n')
}

// appendPacketText writes the start of a text line about a packet:
// "N TIMEs PROTO SRC > DST [FLAGS]: ".
func appendPacketText(b []byte, p *capture.Packet) []byte {
	b = strconv.AppendInt(b, int64(p.N), 10)
	b = append(b, ' ')
	b = appendSeconds(b, p.Time)
	b = append(b, "s "...)
	b = append(b, protoName(p.Proto)...)
	b = append(b, ' ')
	b = netip.AddrPortFrom(p.Src, p.SPort).AppendTo(b)
	b = append(b, " > "...)
	b = netip.AddrPortFrom(p.Dst, p.DPort).AppendTo(b)
	if p.Proto == lang.TCP {
		b = append(b, " ["...)
		b = appendFlags(b, p.Flags)
		b = append(b, ']')
	}
	b = append(b, ": "...)
	return b
}
