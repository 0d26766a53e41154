package sqspool

import (
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/clock"
)

// record is the one in-flight entry of a message in this process, from
// receive until it is deleted or given back. It serves dedup (one record per
// MessageId), deletes and visibility changes (the newest receipt handle), and
// FIFO ordering (the group queue).
type record struct {
	msg      *Message
	deadline time.Time // when the handler's context ends

	mu     sync.Mutex
	handle string // newest receipt handle
	gen    uint32 // bumped whenever handle changes
}

// receipt returns the newest receipt handle and its generation.
func (r *record) receipt() (string, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handle, r.gen
}

func (r *record) setReceipt(h string) {
	r.mu.Lock()
	r.handle = h
	r.gen++
	r.mu.Unlock()
}

// dispatcher turns received SQS messages into records, drops duplicates of
// messages already in flight here, keeps FIFO groups in order, and queues
// the rest for the workers.
type dispatcher struct {
	queueURL string
	fifo     bool
	deadline func(receivedAt time.Time) time.Time
	clock    clock.Clock
	credits  *credits
	counters *counters
	work     chan *record

	inflight sync.Map // MessageId -> *record

	groupsMu sync.Mutex
	groups   map[string][]*record // FIFO: a group with a running message -> its waiting messages
}

// dispatch is called by pollers with what one receive returned. It never
// blocks: the work channel holds as many records as there are slots.
func (d *dispatcher) dispatch(msgs []types.Message) {
	now := d.clock.Now()
	d.counters.received.Add(int64(len(msgs)))
	for i := range msgs {
		m := newMessage(d.queueURL, msgs[i], now)
		rec := &record{msg: m, handle: deref(msgs[i].ReceiptHandle), deadline: d.deadline(now)}
		if old, loaded := d.inflight.LoadOrStore(m.ID, rec); loaded {
			// A second delivery of a message still in flight here: keep only
			// its newest receipt handle, which is the one SQS honours.
			old.(*record).setReceipt(rec.handle)
			d.counters.duplicates.Add(1)
			d.credits.release(1)
			continue
		}
		if d.fifo && !d.enterGroup(rec) {
			continue
		}
		d.work <- rec
	}
}

// enterGroup reports whether rec may start now; if its group is busy, rec
// waits behind the group's running message.
func (d *dispatcher) enterGroup(rec *record) bool {
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	g := rec.msg.GroupID
	if waiting, busy := d.groups[g]; busy {
		d.groups[g] = append(waiting, rec)
		return false
	}
	d.groups[g] = nil
	return true
}

// next is called when rec's handling ended. On a FIFO queue it returns the
// group's next message if rec succeeded. If rec failed, the group's waiting
// messages are returned as released: handling them now would break the
// group's order, so they go back to the queue.
func (d *dispatcher) next(rec *record, ok bool) (next *record, released []*record) {
	if !d.fifo {
		return nil, nil
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	g := rec.msg.GroupID
	waiting := d.groups[g]
	if !ok || len(waiting) == 0 {
		delete(d.groups, g)
		return nil, waiting
	}
	d.groups[g] = waiting[1:]
	return waiting[0], nil
}

// drainGroups removes every FIFO message still waiting behind its group.
func (d *dispatcher) drainGroups() []*record {
	if !d.fifo {
		return nil
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	var out []*record
	for g, waiting := range d.groups {
		out = append(out, waiting...)
		d.groups[g] = nil
	}
	return out
}

// forget ends rec's in-flight life in this process.
func (d *dispatcher) forget(rec *record) {
	d.inflight.CompareAndDelete(rec.msg.ID, rec)
}
