package capture

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusDir holds real captures collected from other projects' test
// suites (../shared/corpus/pcaps/SOURCES.tsv says where each comes from).
// It sits beside the repository, not in it: tests that use it skip when
// it is absent.
const corpusDir = "../../../shared/corpus/pcaps"

// corpusOutcome is what a careful reader gives for one file: how many
// packets decode, how many are skipped (and one reason among them), and
// the error that ends the file, if any ("" for a clean end).
type corpusOutcome struct {
	decoded, skipped int
	reason           string // a substring of some packet's Skipped
	openErr          string // a substring of Open's error
	err              string // a substring of the error that ends reading
	warning          string // a substring of a warning
}

// The expectations follow tcpdump's reading of each file
// (corpus/pcaps/tcpdump-expected-output) where it has one; where tcpdump
// gives up (mixed link types or snap lengths in pcapng, an unknown pcapng
// section), kwl reads what the format allows.
var corpus = map[string]corpusOutcome{
	"esnet-nmap_80_vanilla.pcap":                {decoded: 11},
	"esnet-nmap_80_w_service_detection.pcap":    {decoded: 154},
	"esnet-one_way_all_flags.pcap":              {decoded: 63},
	"esnet-tcp_0_1000_20190821.pcap":            {decoded: 1005},
	"gp-be-test202.pcapng":                      {decoded: 8}, // big-endian, interfaces of two link types: tcpdump refuses the mix
	"gp-le-test901.pcapng":                      {decoded: 2, warning: "unknown version 2.0 skipped"},
	"ppp-VlanPackets.pcap":                      {decoded: 20, skipped: 6, reason: "802.3 frame (LLC), not IP"},
	"ppp-ipv4-malformed.pcap":                   {skipped: 2, reason: "bad IPv4"}, // a pcapng despite its name
	"ppp-nanosecs_big_endian.pcap":              {decoded: 10},
	"ppp-null_loopback.pcap":                    {decoded: 2, skipped: 1, reason: "unknown address family"},
	"ppp-sll2.pcap":                             {decoded: 3},
	"ppp-tcp-malformed.pcap":                    {skipped: 2, reason: "bad TCP header length 28 > 20"},
	"rp-err-eof.bin":                            {openErr: "not a pcap or pcapng file"}, // a pcapng block without its section header
	"rp-modified-format.pcap":                   {decoded: 1},
	"td-802.1ad_QinQ.pcap":                      {skipped: 2, reason: "EtherType 0x0806, ARP"},
	"td-LINKTYPE_IPV4_invalid.pcap":             {skipped: 1, reason: "IP version 6 in a LINKTYPE_IPV4 capture"},
	"td-LINKTYPE_IPV6.pcap":                     {decoded: 1},
	"td-LINKTYPE_PKTAP.pcap":                    {openErr: "unsupported PKTAP (258)"},
	"td-LINKTYPE_RAW_ipv4.pcap":                 {decoded: 1},
	"td-empty.pcapng":                           {},
	"td-ipv6_frag6_negative_len.pcap":           {skipped: 1, reason: "later IPv6 fragment"},
	"td-nflog.pcap":                             {decoded: 4},
	"td-quic_handshake_truncated.pcap":          {decoded: 18},
	"td-ssh.pcap":                               {decoded: 54},
	"td-tcp-handshake-nano.pcap":                {decoded: 3},
	"td-tcp_eight_lowest_weight_flags_set.pcap": {decoded: 1},
	"td-time_2106_overflow.pcapng":              {decoded: 1},
	"td-timestamp_invalid_micro.pcap":           {decoded: 3},
	"td-unsupported-link-type-160.pcap":         {openErr: "unsupported link type 160"},
	"td-vtp_asan.pcap":                          {openErr: "unsupported MFR (182)"},
}

func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*"))
	if len(files) == 0 {
		t.Skipf("no capture corpus at %s", corpusDir)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		if name == "SOURCES.tsv" || name == "tcpdump-expected-output" {
			continue
		}
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := corpus[name]
			if !ok {
				t.Fatalf("no expected outcome for %s: add it to the corpus table", name)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := Open(f)
			if want.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), want.openErr) {
					t.Fatalf("Open: got %v, want an error with %q", err, want.openErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			var p Packet
			var decoded, skipped int
			reasons := map[string]int{}
			for {
				err = r.Next(&p)
				if err != nil {
					break
				}
				if p.Skipped != "" {
					skipped++
					reasons[p.Skipped]++
					continue
				}
				decoded++
				if !p.Src.IsValid() || !p.Dst.IsValid() {
					t.Errorf("packet %d decoded without addresses: %+v", p.N, p)
				}
			}
			if want.err == "" && err != io.EOF {
				t.Errorf("reading ended with %v, want a clean end", err)
			}
			if want.err != "" {
				var e *Error
				if !errors.As(err, &e) || !strings.Contains(err.Error(), want.err) {
					t.Errorf("reading ended with %v, want an *Error with %q", err, want.err)
				}
			}
			if decoded != want.decoded || skipped != want.skipped {
				t.Errorf("decoded %d, skipped %d (%v); want %d, %d", decoded, skipped, reasons, want.decoded, want.skipped)
			}
			if want.reason != "" {
				found := false
				for r := range reasons {
					found = found || strings.Contains(r, want.reason)
				}
				if !found {
					t.Errorf("no skip reason with %q among %v", want.reason, reasons)
				}
			}
			if want.warning != "" && !strings.Contains(strings.Join(r.Warnings(), "\n"), want.warning) {
				t.Errorf("warnings %q, want one with %q", r.Warnings(), want.warning)
			}
		})
	}
	for name := range corpus {
		if !seen[name] {
			t.Errorf("%s is in the table but not in the corpus", name)
		}
	}
}
