package sqsfake

import (
	"container/heap"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// The model. Every live message of a queue is in q.msgs by serial and is in
// exactly one state:
//
//   - delayed: in q.timed until its delay ends;
//   - visible: waiting for a receive. Standard queues keep visible messages
//     in q.visible, a FIFO list; FIFO queues keep every message of a group,
//     whatever its state, in the group's list in send order, and keep the
//     groups that can deliver (no message in flight, visible head) in
//     q.ready;
//   - in flight: received, in q.timed until its visibility timeout ends.
//
// q.timed is a min-heap on visibleAt, so a receive costs O(k log n) for k
// messages moved or delivered, never a scan of the queue. Deleting a visible
// message (with the newest handle after its timeout ran out) leaves a
// tombstone in q.visible that receives skip.
type msgState uint8

const (
	stateGone msgState = iota
	stateDelayed
	stateVisible
	stateInFlight
)

type message struct {
	serial      uint64
	id          string
	body        string
	md5Body     string
	attrs       map[string]types.MessageAttributeValue
	md5Attrs    string
	traceHeader *string // the AWSTraceHeader system attribute
	md5SysAttrs string
	sentAt      time.Time
	groupID     string
	dedupID     string
	seq         string // FIFO sequence number
	dlqSource   string // ARN of the queue it was moved from

	receiveCount int
	firstReceive time.Time
	receivedAt   time.Time // of the newest receive
	visibleAt    time.Time // end of the delay or of the visibility timeout
	gen          uint32    // generation of the newest receipt handle
	state        msgState
	heapIdx      int
	group        *group // FIFO queues only
}

// clone copies what a message carries from queue to queue under a redrive
// policy. Attribute maps are shared: they are never modified after send.
func (m *message) clone() *message {
	return &message{
		id: m.id, body: m.body, md5Body: m.md5Body, attrs: m.attrs, md5Attrs: m.md5Attrs, traceHeader: m.traceHeader,
		md5SysAttrs: m.md5SysAttrs, sentAt: m.sentAt, groupID: m.groupID,
		dedupID: m.dedupID, seq: m.seq, dlqSource: m.dlqSource, heapIdx: -1,
	}
}

type group struct {
	id       string
	msgs     deque[*message]
	inFlight int
	queued   bool // in q.ready
}

type dedupEntry struct {
	messageID string
	seq       string
	expires   time.Time
}

type dedupKey struct {
	key     string
	expires time.Time
}

type queue struct {
	name, url, arn string
	incarnation    uint64
	fifo           bool
	created        time.Time

	mu           sync.Mutex
	cfg          queueConfig
	lastModified time.Time
	gone         bool // deleted
	msgs         map[uint64]*message
	nextSerial   uint64
	visible      deque[*message]
	timed        timedHeap
	groups       map[string]*group
	ready        deque[*group]
	dedup        map[string]dedupEntry
	dedupOrder   deque[dedupKey]
	seq          uint64
	lastPurge    time.Time
	purged       bool
	abandoned    []abandonedPoll // oldest first; see WithAbandonedPolls
	wake         chan struct{}   // closed when something may have become receivable

	nVisible, nInFlight, nDelayed int
	stats                         Stats
}

func newQueue(name, url, arn string, incarnation uint64, cfg queueConfig, now time.Time) *queue {
	return &queue{
		name: name, url: url, arn: arn, incarnation: incarnation, fifo: cfg.fifo,
		created: now, cfg: cfg, lastModified: now,
		msgs: map[uint64]*message{}, groups: map[string]*group{}, dedup: map[string]dedupEntry{},
	}
}

// waitChan returns a channel closed at the next wakeLocked.
func (q *queue) waitChan() <-chan struct{} {
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	return q.wake
}

// wakeLocked wakes long-polling receivers to look again.
func (q *queue) wakeLocked() {
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}

// promote makes visible the messages whose delay or visibility timeout has
// ended by now.
func (q *queue) promote(now time.Time) {
	for len(q.timed) > 0 && !q.timed[0].visibleAt.After(now) {
		m := heap.Pop(&q.timed).(*message)
		q.leaveTimed(m)
		q.makeVisible(m)
	}
}

// leaveTimed updates the counts for a message that left q.timed.
func (q *queue) leaveTimed(m *message) {
	switch m.state {
	case stateInFlight:
		q.nInFlight--
		if m.group != nil {
			m.group.inFlight--
		}
	case stateDelayed:
		q.nDelayed--
	}
}

func (q *queue) makeVisible(m *message) {
	m.state = stateVisible
	q.nVisible++
	if q.fifo {
		q.checkGroup(m.group)
		return
	}
	q.visible.push(m)
	q.wakeLocked()
}

// checkGroup queues g in q.ready if it can deliver.
func (q *queue) checkGroup(g *group) {
	if g.queued || !g.available() {
		return
	}
	g.queued = true
	q.ready.push(g)
	q.wakeLocked()
}

func (g *group) available() bool {
	return g.inFlight == 0 && g.msgs.len() > 0 && g.msgs.at(0).state == stateVisible
}

// enqueue adds a new message, delayed by delay.
func (q *queue) enqueue(m *message, now time.Time, delay time.Duration) {
	q.nextSerial++
	m.serial = q.nextSerial
	m.heapIdx = -1
	q.msgs[m.serial] = m
	if q.fifo {
		g := q.groups[m.groupID]
		if g == nil {
			g = &group{id: m.groupID}
			q.groups[m.groupID] = g
		}
		m.group = g
		g.msgs.push(m)
	}
	if delay > 0 {
		m.state = stateDelayed
		m.visibleAt = now.Add(delay)
		q.nDelayed++
		heap.Push(&q.timed, m)
		return
	}
	q.makeVisible(m)
}

// remove takes a live message out of the queue for good.
func (q *queue) remove(m *message) {
	switch m.state {
	case stateVisible:
		q.nVisible--
	case stateDelayed, stateInFlight:
		heap.Remove(&q.timed, m.heapIdx)
		q.leaveTimed(m)
	}
	m.state = stateGone
	delete(q.msgs, m.serial)
	if g := m.group; g != nil {
		for i := range g.msgs.len() {
			if g.msgs.at(i) == m {
				g.msgs.removeAt(i)
				break
			}
		}
		q.checkGroup(g)
		q.dropGroupIfEmpty(g)
	}
}

func (q *queue) dropGroupIfEmpty(g *group) {
	if g.msgs.len() == 0 && q.groups[g.id] == g {
		delete(q.groups, g.id)
	}
}

// deliver moves a visible message in flight for vis.
func (q *queue) deliver(m *message, now time.Time, vis time.Duration) {
	q.markReceived(m, now)
	q.nVisible--
	q.nInFlight++
	m.state = stateInFlight
	m.visibleAt = now.Add(vis)
	heap.Push(&q.timed, m)
	if m.group != nil {
		m.group.inFlight++
	}
}

// markReceived counts a receive and mints a new receipt handle generation.
func (q *queue) markReceived(m *message, now time.Time) {
	m.receiveCount++
	if m.receiveCount == 1 {
		m.firstReceive = now
	}
	m.gen++
	m.receivedAt = now
	q.stats.Received++
}

// receiveRequest is what receiveLocked needs from a ReceiveMessage call.
type receiveRequest struct {
	max        int
	visibility time.Duration
	dlq        *queue      // where messages over maxReceiveCount go; nil: nowhere
	duplicate  func() bool // nil: never
}

// abandonedPoll is a long poll whose caller has gone. As on SQS, it keeps
// waiting on the server until its wait ends, and takes the first messages
// that become receivable meanwhile: they go in flight, and nobody gets them.
type abandonedPoll struct {
	until      time.Time
	max        int
	visibility time.Duration
}

// receiveLocked delivers up to r.max messages, after the abandoned polls
// still waiting took theirs. Messages that are over the redrive policy's
// maxReceiveCount are taken out and returned in moved, to be put in the
// dead-letter queue once q is unlocked.
func (q *queue) receiveLocked(now time.Time, r receiveRequest, inFlightLimit int) (got, moved []*message) {
	q.promote(now)
	for len(q.abandoned) > 0 {
		a := q.abandoned[0]
		if now.Before(a.until) {
			lost, mv := q.takeLocked(now, receiveRequest{max: a.max, visibility: a.visibility, dlq: r.dlq}, inFlightLimit)
			moved = append(moved, mv...)
			if len(lost) == 0 {
				break // it keeps waiting, first in line
			}
			q.stats.Abandoned += int64(len(lost))
		}
		q.abandoned = q.abandoned[1:]
	}
	got, mv := q.takeLocked(now, r, inFlightLimit)
	return got, append(moved, mv...)
}

// takeLocked delivers up to r.max messages; see receiveLocked.
func (q *queue) takeLocked(now time.Time, r receiveRequest, inFlightLimit int) (got, moved []*message) {
	limit := min(r.max, inFlightLimit-q.nInFlight)
	overMax := func(m *message) bool {
		return r.dlq != nil && m.receiveCount >= q.cfg.maxReceiveCount
	}
	if !q.fifo {
		var dups []*message
		for len(got) < limit {
			m, ok := q.visible.pop()
			if !ok {
				break
			}
			if m.state != stateVisible {
				continue // tombstone
			}
			if overMax(m) {
				q.remove(m)
				q.stats.MovedToDLQ++
				moved = append(moved, m)
				continue
			}
			if r.duplicate != nil && r.duplicate() {
				// Delivered, and left visible for a later receive,
				// which makes this receipt handle stale.
				q.markReceived(m, now)
				q.stats.Duplicates++
				dups = append(dups, m)
			} else {
				q.deliver(m, now, r.visibility)
			}
			got = append(got, m)
		}
		// Queued again only now, so that no response holds a message twice.
		for _, m := range dups {
			q.visible.push(m)
		}
		return got, moved
	}
	for len(got) < limit {
		g, ok := q.ready.pop()
		if !ok {
			break
		}
		g.queued = false
		if !g.available() {
			continue // stale entry
		}
		for i := 0; i < g.msgs.len() && len(got) < limit; {
			m := g.msgs.at(i)
			if m.state != stateVisible {
				break
			}
			if overMax(m) {
				q.remove(m)
				q.stats.MovedToDLQ++
				moved = append(moved, m)
				continue
			}
			q.deliver(m, now, r.visibility)
			got = append(got, m)
			i++
		}
		// A group that delivered nothing (all moved out) may be able to
		// deliver later; one that delivered is locked until its messages
		// are deleted or become visible.
		q.checkGroup(g)
		q.dropGroupIfEmpty(g)
	}
	return got, moved
}

// nextDeadline returns when the earliest delay or visibility timeout ends.
func (q *queue) nextDeadline() (time.Time, bool) {
	if len(q.timed) == 0 {
		return time.Time{}, false
	}
	return q.timed[0].visibleAt, true
}

// purgeLocked deletes every message.
func (q *queue) purgeLocked() {
	for _, m := range q.msgs {
		m.state = stateGone
	}
	q.stats.Purged += int64(len(q.msgs))
	q.msgs = map[uint64]*message{}
	q.visible = deque[*message]{}
	q.timed = nil
	q.groups = map[string]*group{}
	q.ready = deque[*group]{}
	q.abandoned = nil
	q.nVisible, q.nInFlight, q.nDelayed = 0, 0, 0
}

// pruneDedup forgets deduplication ids older than the window.
func (q *queue) pruneDedup(now time.Time) {
	for q.dedupOrder.len() > 0 {
		k := q.dedupOrder.at(0)
		if k.expires.After(now) {
			return
		}
		q.dedupOrder.pop()
		if e, ok := q.dedup[k.key]; ok && !e.expires.After(now) {
			delete(q.dedup, k.key)
		}
	}
}

// timedHeap orders delayed and in-flight messages by visibleAt.
type timedHeap []*message

func (h timedHeap) Len() int           { return len(h) }
func (h timedHeap) Less(i, j int) bool { return h[i].visibleAt.Before(h[j].visibleAt) }
func (h timedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *timedHeap) Push(x any) {
	m := x.(*message)
	m.heapIdx = len(*h)
	*h = append(*h, m)
}

func (h *timedHeap) Pop() any {
	old := *h
	n := len(old) - 1
	m := old[n]
	old[n] = nil
	m.heapIdx = -1
	*h = old[:n]
	return m
}

// deque is a ring buffer.
type deque[T any] struct {
	buf  []T
	head int
	n    int
}

func (d *deque[T]) len() int { return d.n }

func (d *deque[T]) at(i int) T { return d.buf[(d.head+i)%len(d.buf)] }

func (d *deque[T]) push(v T) {
	if d.n == len(d.buf) {
		buf := make([]T, max(16, 2*len(d.buf)))
		for i := range d.n {
			buf[i] = d.at(i)
		}
		d.buf, d.head = buf, 0
	}
	d.buf[(d.head+d.n)%len(d.buf)] = v
	d.n++
}

func (d *deque[T]) pop() (T, bool) {
	var zero T
	if d.n == 0 {
		return zero, false
	}
	v := d.buf[d.head]
	d.buf[d.head] = zero
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	return v, true
}

// removeAt removes the i-th element, shifting the ones before it; it costs
// O(i), and callers remove near the front.
func (d *deque[T]) removeAt(i int) {
	for j := i; j > 0; j-- {
		d.buf[(d.head+j)%len(d.buf)] = d.at(j - 1)
	}
	d.pop()
}
