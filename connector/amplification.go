package connector

import (
	"fmt"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// The UDP amplification guard (docs/rules.md §8): a UDP server sends a peer at most
// UDPAmplification times the bytes that peer sent it over the last AmplificationWindow.
// A source address can be spoofed at every datagram, not only the first, so the bound holds
// for the whole conversation: a victim whose address is spoofed gets at most three times
// what the attacker sends, never a reply a thousand times larger. Rules with
// amplification: Unbounded opt out, knowingly.
const (
	// AmplificationWindow is the span over which a UDP server's bytes out are weighed
	// against its peer's bytes in.
	AmplificationWindow = 10 * time.Second
	// ampSlots divides the window: bytes leave it one slot (1 s) at a time.
	ampSlots = 10
	ampSlot  = AmplificationWindow / ampSlots
)

// ampWindow counts a conversation's bytes in and out over the last AmplificationWindow, in
// slots of ampSlot; guarded by the conversation's lock. Fixed arrays: counting a datagram
// allocates nothing.
type ampWindow struct {
	slot    int64 // the newest slot: time since the connector began, in ampSlot units
	in, out [ampSlots]int
}

// advance moves the window to slot now, emptying the slots it leaves behind.
func (w *ampWindow) advance(now int64) {
	if now <= w.slot {
		return
	}
	if now-w.slot >= ampSlots {
		w.in, w.out = [ampSlots]int{}, [ampSlots]int{}
	} else {
		for s := w.slot + 1; s <= now; s++ {
			w.in[s%ampSlots], w.out[s%ampSlots] = 0, 0
		}
	}
	w.slot = now
}

func (w *ampWindow) received(now int64, n int) {
	w.advance(now)
	w.in[now%ampSlots] += n
}

func (w *ampWindow) sent(now int64, n int) {
	w.advance(now)
	w.out[now%ampSlots] += n
}

// budget is what may still be sent at slot now: ratio times the bytes in, less the bytes
// out, over the window.
func (w *ampWindow) budget(now int64, ratio int) int {
	w.advance(now)
	in, out := 0, 0
	for i := range ampSlots {
		in += w.in[i]
		out += w.out[i]
	}
	return ratio*in - out
}

// ampNow is the current slot of the connector's amplification windows.
func (c *Connector) ampNow() int64 {
	if s := c.ampSlotForTests.Load(); s != 0 {
		return s
	}
	return int64(c.sinceBegan() / ampSlot)
}

// amplificationGuard keeps the messages of wire (one per entry of ends) that fit the
// peer's window, in order: the first bounded message that does not fit and every bounded
// message after it are held back (never sent later); messages of amplification: Unbounded
// rules (the workspace's unbounded, indexes into ends) are kept and not counted. What is held back is
// noted on a and counted in Stats. now is the window's current slot (ampNow). It returns
// what to send and the bytes that count.
func (cv *conversation) amplificationGuard(a *v1alpha1.ActivityRecord, wire []byte, ends []int, now int64) ([]byte, []int, int) {
	ratio := cv.c.opts.UDPAmplification
	budget := cv.ampWin().budget(now, ratio)
	unbounded := cv.work().unbounded
	if len(unbounded) == 0 && len(wire) <= budget {
		return wire, ends, len(wire) // the common case: everything fits
	}
	// Compact in place what is kept: wire is the conversation's scratch buffer.
	kept, keptEnds, counted, held, heldMsgs := 0, 0, 0, 0, 0
	full := false
	start, u := 0, 0
	for i, end := range ends {
		size := end - start
		exempt := u < len(unbounded) && unbounded[u] == i
		if exempt {
			u++
		}
		switch {
		case exempt:
		case !full && counted+size <= budget:
			counted += size
		default:
			full = true
			held += size
			heldMsgs++
			start = end
			continue
		}
		copy(wire[kept:], wire[start:end])
		kept += size
		ends[keptEnds] = kept
		keptEnds++
		start = end
	}
	if held > 0 {
		cv.c.ampHeldBytes.Add(uint64(held))
		cv.c.ampHeldMessages.Add(uint64(heldMsgs))
		note(a, fmt.Sprintf("UDP amplification guard: %d bytes not sent (at most %dx what the peer sent in the last %v)",
			held, ratio, AmplificationWindow))
	}
	return wire[:kept], ends[:keptEnds], counted
}
