package sqsfake

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Stats is a queue's counts at one moment: how many messages are in each
// state, and what has happened to messages since the queue was created.
type Stats struct {
	Visible  int // ready to receive (ApproximateNumberOfMessages)
	InFlight int // received, not deleted, visibility timeout running
	Delayed  int // sent with a delay that has not ended

	Sent         int64 // messages sent and queued (FIFO duplicates excluded)
	Deduplicated int64 // FIFO sends dropped as duplicates within 5 minutes
	MovedIn      int64 // messages moved in by a source queue's redrive policy
	Received     int64 // deliveries; a message received twice counts twice
	Deleted      int64 // messages deleted with their newest receipt handle
	// StaleDeletes counts deletes that succeeded with an older receipt
	// handle of a message that had since been received again, and so
	// deleted nothing. SQS behaves the same; a consumer that deletes with
	// the newest handle keeps this at zero.
	StaleDeletes int64
	// RedundantDeletes counts deletes of messages already gone (deleted,
	// purged or moved to the dead-letter queue). They succeed.
	RedundantDeletes int64
	MovedToDLQ       int64 // messages moved out to the dead-letter queue
	Duplicates       int64 // deliveries left visible by Fault.DuplicateRate
	Purged           int64 // messages deleted by PurgeQueue or DeleteQueue
	// Abandoned counts deliveries to long polls whose caller had gone
	// (WithAbandonedPolls): in flight until their visibility timeout ends.
	Abandoned int64
}

// Stats returns the counts of a queue, given by URL or name. It is meant for
// tests and panics if there is no such queue.
func (f *Fake) Stats(queue string) Stats {
	q := f.mustQueue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promote(f.clock.Now())
	s := q.stats
	s.Visible, s.InFlight, s.Delayed = q.nVisible, q.nInFlight, q.nDelayed
	return s
}

// MessageState is where a stored message is in its life.
type MessageState string

// The states of a stored message.
const (
	StateVisible  MessageState = "visible"
	StateInFlight MessageState = "in-flight"
	StateDelayed  MessageState = "delayed"
)

// StoredMessage is a snapshot of one message in a queue.
type StoredMessage struct {
	MessageID       string
	Body            string
	Attributes      map[string]types.MessageAttributeValue
	GroupID         string // MessageGroupId, if any
	DeduplicationID string // FIFO queues
	SequenceNumber  string // FIFO queues
	ReceiveCount    int
	State           MessageState
	SentAt          time.Time
	// VisibleAt is when a delayed or in-flight message becomes visible.
	VisibleAt time.Time
	// SourceQueueARN is the queue that moved the message here under its
	// redrive policy; empty for a message sent to this queue.
	SourceQueueARN string
}

// Messages returns a snapshot of every message in a queue, given by URL or
// name, in the order they were queued. It is meant for tests, for example to
// check what a dead-letter queue holds, and panics if there is no such
// queue.
func (f *Fake) Messages(queue string) []StoredMessage {
	q := f.mustQueue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promote(f.clock.Now())
	serials := make([]uint64, 0, len(q.msgs))
	for s := range q.msgs {
		serials = append(serials, s)
	}
	slices.Sort(serials)
	out := make([]StoredMessage, 0, len(serials))
	for _, s := range serials {
		m := q.msgs[s]
		sm := StoredMessage{
			MessageID: m.id, Body: m.body, Attributes: copyAttributes(m.attrs), GroupID: m.groupID,
			DeduplicationID: m.dedupID, SequenceNumber: m.seq, ReceiveCount: m.receiveCount,
			SentAt: m.sentAt, SourceQueueARN: m.dlqSource,
		}
		switch m.state {
		case stateVisible:
			sm.State = StateVisible
		case stateInFlight:
			sm.State, sm.VisibleAt = StateInFlight, m.visibleAt
		case stateDelayed:
			sm.State, sm.VisibleAt = StateDelayed, m.visibleAt
		}
		out = append(out, sm)
	}
	return out
}

// The Must helpers below set a test up. They bypass fault injection, the
// hook and the call counters, and panic on error.

// MustCreateQueue creates a queue (or finds the existing one with the same
// attributes) and returns its URL. attrs may be nil.
func (f *Fake) MustCreateQueue(name string, attrs map[string]string) string {
	out, err := f.createQueue(&sqs.CreateQueueInput{QueueName: &name, Attributes: attrs}, &noFault)
	if err != nil {
		panic(fmt.Sprintf("sqsfake: create queue %s: %v", name, err))
	}
	return *out.QueueUrl
}

// MustSend sends body to a standard queue and returns the MessageId.
func (f *Fake) MustSend(queueURL, body string) string {
	return *f.MustSendMessage(&sqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: &body}).MessageId
}

// MustSendJSON sends v, encoded as JSON, to a standard queue and returns the
// MessageId.
func (f *Fake) MustSendJSON(queueURL string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sqsfake: encode message: %v", err))
	}
	return f.MustSend(queueURL, string(b))
}

// MustSendMessage sends a message described in full, for example to a FIFO
// queue or with attributes.
func (f *Fake) MustSendMessage(in *sqs.SendMessageInput) *sqs.SendMessageOutput {
	out, err := f.sendMessage(in, &noFault)
	if err != nil {
		panic(fmt.Sprintf("sqsfake: send message: %v", err))
	}
	return out
}
