package replay

import (
	"fmt"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// kwl sim's replay is a pipeline of goroutines that hand each other
// chunks of packets, in capture order:
//
//	read:   read and decode the packets, keep the clock from going
//	        back, and put each packet in the part of its lane;
//	lanes:  each lane evaluates the packets of its part (lane.step);
//	merge:  the caller takes the outcomes of both parts in capture
//	        order, counts them and writes the output.
//
// Reading and merging run on one core while the lanes run, so that on a
// machine of two cores or more the simulators are most of what one core
// does.

// chunkSize is how many packets a chunk holds: enough that handing a
// chunk over costs little per packet, few enough that the chunks in
// flight stay in the caches.
const chunkSize = 512

// chunksAhead is how many chunks are in flight.
const chunksAhead = 12

// A part is a chunk's packets of one lane and what the lane made of them.
type part struct {
	ps  [chunkSize]capture.Packet
	out [chunkSize]Outcome
	n   int
}

// A chunk is packets read from the capture, divided between the lanes.
type chunk struct {
	parts [2]part
	lane  [chunkSize]uint8 // the part of the chunk's i-th packet
	n     int
	err   error // the reader's error after the n packets (io.EOF at the end)
}

// clock keeps the simulator's clock from going back: a packet stamped
// before the latest time seen is replayed at that time. It counts the
// packets it held back by more than clockSlack, so that a timestamp far
// in the future, which holds back every packet after it, is reported
// rather than silently freezing the replay.
type clock struct {
	last  time.Duration
	lastN int // the packet that set last

	held     int           // packets held back by more than clockSlack
	heldAt   int           // the packet whose time the first of them was held at
	heldTime time.Duration // that packet's time
	heldMax  time.Duration // the most a packet was held back
}

// clockSlack is how far back a timestamp may go without a warning:
// packets of several interfaces, or reordered by the capturing host,
// are a little out of order.
const clockSlack = time.Second

func (c *clock) keep(p *capture.Packet) {
	if p.Time < c.last {
		if back := c.last - p.Time; back > clockSlack {
			if c.held == 0 {
				c.heldAt, c.heldTime = c.lastN, c.last
			}
			c.held++
			c.heldMax = max(c.heldMax, back)
		}
		p.Time = c.last
		return
	}
	c.last, c.lastN = p.Time, p.N
}

// warning says what the clock held back, or "" when it held back
// nothing beyond clockSlack.
func (c *clock) warning() string {
	if c.held == 0 {
		return ""
	}
	return fmt.Sprintf("%d packets stamped up to %v before the time of packet %d (%ss) were replayed at the latest time seen, since the clock never goes back: a timestamp far in the future holds back every packet after it",
		c.held, c.heldMax.Round(time.Millisecond), c.heldAt, lang.AppendSeconds(nil, c.heldTime))
}

// pipeline runs the replay of r through the lanes: split, when not nil,
// says which packets go to the second lane. merge is called in the
// caller's goroutine for each packet in capture order, with the part
// that holds it and its place there (pt.ps[i], its outcome pt.out[i]).
// clk keeps the packets' times from going back; it is the caller's
// again when pipeline returns.
// pipeline returns the reader's error: io.EOF at the end.
// clockSetter is an engine that takes the capture's start as the wall
// clock of its time 0 (for the tokens of secret knocks).
type clockSetter interface {
	SetClock(time.Time)
}

func pipeline(r *capture.Reader, lanes []*lane, split func(*capture.Packet) bool, clk *clock, live bool, merge func(pt *part, i int)) error {
	limit := chunkSize
	if live {
		limit = 1
	}
	free := make(chan *chunk, chunksAhead)
	for range chunksAhead {
		free <- new(chunk)
	}
	toLane := make([]chan *chunk, len(lanes))
	fromLane := make([]chan *chunk, len(lanes))
	for k, l := range lanes {
		toLane[k] = make(chan *chunk, chunksAhead)
		fromLane[k] = make(chan *chunk, chunksAhead)
		go func(l *lane, k int) {
			defer close(fromLane[k])
			for c := range toLane[k] {
				l.run(&c.parts[k])
				fromLane[k] <- c
			}
		}(l, k)
	}
	go func() {
		defer func() {
			for _, ch := range toLane {
				close(ch)
			}
		}()
		var tmp capture.Packet
		started := false
		for c := range free {
			c.n, c.err = 0, nil
			for k := range c.parts {
				c.parts[k].n = 0
			}
			for c.n < limit {
				if c.err = r.Next(&tmp); c.err != nil {
					break
				}
				if !started {
					// The lanes have evaluated nothing yet: no chunk
					// has been sent to them.
					started = true
					for _, l := range lanes {
						if cs, ok := l.eng.(clockSetter); ok {
							cs.SetClock(r.Start())
						}
					}
				}
				clk.keep(&tmp)
				k := 0
				if split != nil && split(&tmp) {
					k = 1
				}
				pt := &c.parts[k]
				pt.ps[pt.n] = tmp
				pt.n++
				c.lane[c.n] = uint8(k)
				c.n++
			}
			for _, ch := range toLane {
				ch <- c
			}
			if c.err != nil {
				return
			}
		}
	}()
	for {
		var c *chunk
		for k := range fromLane {
			c = <-fromLane[k] // the lanes take the chunks in the same order
		}
		var at [2]int
		for i := range c.n {
			k := c.lane[i]
			pt := &c.parts[k]
			merge(pt, at[k])
			at[k]++
		}
		if c.err != nil {
			for k := range fromLane {
				for range fromLane[k] {
				}
			}
			return c.err
		}
		free <- c
	}
}
