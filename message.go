package sqspool

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message is what SQS told us about a delivery, next to the typed body the
// handler receives. A handler reads it with MessageFrom(ctx).
type Message struct {
	// ID is the SQS MessageId. It is the same on every delivery of a message.
	ID string
	// Body is the raw body as SQS returned it.
	Body string
	// QueueURL is the queue the message came from.
	QueueURL string
	// ReceiveCount is ApproximateReceiveCount: 1 on the first delivery.
	ReceiveCount int
	// SentAt is when SQS accepted the message (SentTimestamp).
	SentAt time.Time
	// FirstReceivedAt is ApproximateFirstReceiveTimestamp.
	FirstReceivedAt time.Time
	// ReceivedAt is when this process received this delivery.
	ReceivedAt time.Time
	// GroupID and DeduplicationID are set on FIFO queues.
	GroupID         string
	DeduplicationID string
	// Attributes holds the system attributes (ApproximateReceiveCount,
	// SentTimestamp, AWSTraceHeader, ...) as SQS returned them.
	Attributes map[string]string
	// MessageAttributes holds the producer's message attributes.
	MessageAttributes map[string]types.MessageAttributeValue
}

type messageKey struct{}

// MessageFrom returns the metadata of the message whose handler received ctx.
// It is how a handler, which is given only the decoded body, learns the
// MessageId, receive count, attributes and timestamps of its delivery.
func MessageFrom(ctx context.Context) (*Message, bool) {
	m, ok := ctx.Value(messageKey{}).(*Message)
	return m, ok
}

// fillMessage copies what the consumer needs out of an SQS message into msg,
// in place: a record holds its Message, which saves an allocation each.
func fillMessage(msg *Message, queueURL string, m types.Message, receivedAt time.Time) {
	*msg = Message{
		ID:                deref(m.MessageId),
		Body:              deref(m.Body),
		QueueURL:          queueURL,
		ReceivedAt:        receivedAt,
		Attributes:        m.Attributes,
		MessageAttributes: m.MessageAttributes,
	}
	a := m.Attributes
	if a == nil {
		return
	}
	msg.ReceiveCount, _ = strconv.Atoi(a[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	msg.SentAt = epochMillis(a[string(types.MessageSystemAttributeNameSentTimestamp)])
	msg.FirstReceivedAt = epochMillis(a[string(types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp)])
	msg.GroupID = a[string(types.MessageSystemAttributeNameMessageGroupId)]
	msg.DeduplicationID = a[string(types.MessageSystemAttributeNameMessageDeduplicationId)]
}

func epochMillis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
