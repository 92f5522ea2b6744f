package connector

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Refusals of sources whose address proves nothing (UDP datagrams and DTLS hellos: any
// source address can be spoofed) are summarised: one Rejected activity per reason and
// Options.RefusalSummaryInterval ("N datagrams from M sources refused ...: rate limit"), with exact
// counts in Stats, rather than one activity each, so that a spoofed flood cannot grow the
// activity log. A TCP peer has completed a handshake from its address: its refusals are
// still recorded one by one.
const (
	// DefaultRefusalSummaryInterval is how often a summary of refusals is recorded, when
	// there were any.
	DefaultRefusalSummaryInterval = 10 * time.Second
	// maxSummarisedSources bounds the distinct sources counted per reason and interval;
	// beyond it, a summary says "more than".
	maxSummarisedSources = 16384
)

// refusalReason is why a datagram or a hello was refused.
type refusalReason uint8

const (
	refusedRate refusalReason = iota
	refusedCap
	refusedPeerCap
	refusedPaused
	refusedHandshakeCap
	refusedUnverified
	refusedEvicted
	refusedBacklog
	refusedBufferFull
	refusedOverflow
	refusalReasons
)

// what describes the reason in a summary.
func (r refusalReason) what(c *Connector) string {
	switch r {
	case refusedRate:
		return fmt.Sprintf("rate limit (%g datagrams/s per source, burst %d)", c.opts.UDPPeerRate, c.opts.UDPPeerBurst)
	case refusedCap:
		return "over maxConcurrentConnections"
	case refusedPeerCap:
		return fmt.Sprintf("over maxConnectionsPerPeer (%d per source)", c.current.Load().prog.MaxConnectionsPerPeer)
	case refusedPaused:
		return "connector paused"
	case refusedHandshakeCap:
		return "over maxConcurrentConnections (DTLS handshakes under way included)"
	case refusedUnverified:
		return "DTLS cookie never returned (source unverified)"
	case refusedEvicted:
		return "evicted before the cookie came back, for a newer hello at maxConcurrentConnections"
	case refusedBacklog:
		return fmt.Sprintf("dropped before any handshake: more than %d new sources waiting to be accepted (the oldest go first)", dtlsBacklog)
	case refusedOverflow:
		return "dropped by the kernel, the socket's receive buffer full (sources not seen)"
	default:
		return fmt.Sprintf("a DTLS source's unread datagrams over %d KiB (%d KiB before its cookie came back)", dtlsPeerBuffer>>10, dtlsUnverifiedBuffer>>10)
	}
}

// refusalTally counts one reason's refusals since the last summary.
type refusalTally struct {
	count   uint64
	sources map[netip.Prefix]struct{}
	more    bool // sources beyond maxSummarisedSources were not counted
}

// refusals gathers the refusals to summarise; its own lock, taken on refusals only.
type refusals struct {
	mu        sync.Mutex
	tally     [refusalReasons]refusalTally
	transport v1alpha1.Transport
	pending   bool // a summary is scheduled
	timer     *time.Timer
}

// refuse counts a refusal of peer for the next summary, and schedules one if none is.
func (c *Connector) refuse(reason refusalReason, peer netip.AddrPort, transport v1alpha1.Transport, prefixV6 int) {
	switch reason {
	case refusedRate:
		c.rateLimited.Add(1)
	case refusedUnverified:
		c.unverified.Add(1)
	case refusedEvicted:
		c.evicted.Add(1)
	case refusedBacklog:
		c.backlogDropped.Add(1)
	case refusedBufferFull:
		c.bufferDropped.Add(1)
	default:
		c.rejected.Add(1)
	}
	r := &c.refusals
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.count(c, reason, 1, transport)
	if t.sources == nil {
		t.sources = map[netip.Prefix]struct{}{}
	}
	src := sourceOf(peer.Addr(), prefixV6)
	if _, seen := t.sources[src]; !seen {
		if len(t.sources) < maxSummarisedSources {
			t.sources[src] = struct{}{}
		} else {
			t.more = true
		}
	}
}

// refuseUnseen counts n datagrams the kernel dropped from a full receive buffer, whose
// sources nobody saw, for the next summary.
func (c *Connector) refuseUnseen(n uint64, transport v1alpha1.Transport) {
	c.overflowDropped.Add(n)
	r := &c.refusals
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count(c, refusedOverflow, n, transport)
}

// count adds n refusals for reason to its tally, which it returns, and schedules a summary
// if none is. Called with mu held.
func (r *refusals) count(c *Connector, reason refusalReason, n uint64, transport v1alpha1.Transport) *refusalTally {
	t := &r.tally[reason]
	t.count += n
	r.transport = transport
	if !r.pending {
		r.pending = true
		r.timer = time.AfterFunc(c.opts.RefusalSummaryInterval, func() { c.tasks.run(c.summariseRefusals) })
	}
	return t
}

// summariseRefusals records one Rejected activity per reason refused since the last one.
// The connector records the last summary as it stops, before ConnectorStopped.
func (c *Connector) summariseRefusals() {
	r := &c.refusals
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
	}
	r.pending = false
	var out []*v1alpha1.ActivityRecord
	for reason := range refusalReasons {
		t := &r.tally[reason]
		if t.count == 0 {
			continue
		}
		sources := " from " + countOf(len(t.sources), "source")
		if t.more {
			sources = " from more than " + countOf(len(t.sources), "source")
		}
		if reason == refusedOverflow {
			sources = ""
		}
		noun := "datagram"
		if reason == refusedHandshakeCap || reason == refusedUnverified || reason == refusedEvicted || reason == refusedBacklog {
			noun = "DTLS hello"
		}
		out = append(out, &v1alpha1.ActivityRecord{
			Time: nowMicro(), Type: v1alpha1.ActivityRejected,
			Connection: &v1alpha1.ConnectionRef{Transport: r.transport},
			Message: fmt.Sprintf("%s%s refused since the last summary (at most every %v): %s",
				countOf(int(t.count), noun), sources, c.opts.RefusalSummaryInterval, reason.what(c)),
		})
		t.count, t.more = 0, false
		clear(t.sources)
	}
	r.mu.Unlock()
	for _, a := range out {
		c.record(a)
	}
}

// countOf is "1 source", "2 sources".
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
