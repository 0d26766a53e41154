package sqspool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// simClient stands between the pool and the fake. It draws each call's
// latency (request and reply legs apart, so that calls overtake each other)
// and faults from the seed, and tells the oracle what SQS did: which
// deliveries the pool got, which deletes and visibility changes took effect.
type simClient struct {
	fake *sqsfake.Fake
	sc   *simScenario
	or   *simOracle
}

var _ Client = (*simClient)(nil)

func simAPIError(op, code string, fault smithy.ErrorFault) error {
	return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: &smithy.GenericAPIError{
		Code: code, Message: "injected by the simulator", Fault: fault,
	}}
}

// leg sleeps one leg of a call's latency, in the bubble's time. key names
// the call: the receive's number, or a batch's first entry (see entryKeys).
func (c *simClient) leg(ctx context.Context, op string, key uint64, leg string) error {
	d := c.sc.d.dur(0, c.sc.latMax, "latency", uint64(len(op)), key, uint64(len(leg)))
	if c.sc.grain > 0 {
		d = c.sc.q(d)
	} else {
		d += time.Microsecond
	}
	return sleep(ctx, clock.Real, d)
}

// batchCall begins a batch call: it names the call and its entries (see
// entryKeys), sleeps the request leg and draws the call's own failure.
func (c *simClient) batchCall(ctx context.Context, op string, n int, handle func(i int) string) ([]uint64, error) {
	c.or.callStart(op)
	keys := c.or.entryKeys(op, n, handle)
	if err := c.leg(ctx, op, keys[0], "req"); err != nil {
		return nil, err
	}
	return keys, c.before(op, keys[0])
}

// before fails a call before it takes effect, as a throttle or a server error.
func (c *simClient) before(op string, key uint64) error {
	switch {
	case c.sc.d.chance(c.sc.pThrottle, "throttle", uint64(len(op)), key):
		return simAPIError(op, "RequestThrottled", smithy.FaultClient)
	case c.sc.d.chance(c.sc.pErr, "error", uint64(len(op)), key):
		return simAPIError(op, "InternalError", smithy.FaultServer)
	}
	return nil
}

// reply sleeps the reply leg of a call that took effect, and may lose it.
func (c *simClient) reply(ctx context.Context, op string, key uint64) error {
	if err := c.leg(ctx, op, key, "reply"); err != nil {
		return err
	}
	if c.sc.d.chance(c.sc.pLost, "lost", uint64(len(op)), key) {
		return simAPIError(op, "InternalError", smithy.FaultServer)
	}
	return nil
}

func (c *simClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	c.or.callStart(sqsfake.OpReceiveMessage)
	// Pollers race to make their calls; the instant a call is made names
	// it, whichever poller makes it.
	n := uint64(time.Since(c.or.t0))
	defer c.or.receiveEnded()
	if err := c.leg(ctx, sqsfake.OpReceiveMessage, n, "req"); err != nil {
		return nil, err
	}
	if err := c.before(sqsfake.OpReceiveMessage, n); err != nil {
		return nil, err
	}
	out, err := c.fake.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, err
	}
	for i := range out.Messages {
		m := &out.Messages[i]
		k, nth := c.or.delivered(aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle), m.Attributes, aws.ToString(m.Body))
		if c.sc.d.chance(c.sc.pDup, "dup", k, nth) {
			// At-least-once: the message is also left visible, so that a
			// later receive hands it out again with a new handle.
			_, _ = c.fake.ChangeMessageVisibility(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityInput{
				QueueUrl: in.QueueUrl, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
			})
		}
	}
	if err := c.reply(ctx, sqsfake.OpReceiveMessage, n); err != nil {
		return nil, err // the deliveries are lost with the reply
	}
	for i := range out.Messages {
		m := &out.Messages[i]
		k, _ := parseSimBody(aws.ToString(m.Body))
		if c.sc.d.chance(c.sc.pEqualCount, "equal-count", uint64(k), uint64(c.or.deliveries(k))) {
			// ApproximateReceiveCount is approximate: report the count of
			// the delivery before this one.
			if prev, ok := c.or.previousCount(aws.ToString(m.MessageId)); ok {
				m.Attributes = maps.Clone(m.Attributes)
				m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)] = strconv.Itoa(prev)
			}
		}
		count, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		c.or.returned(aws.ToString(m.ReceiptHandle), count)
	}
	return out, nil
}

// entryFault decides the fate of a batch entry before SQS sees it: a
// transient failure, a refusal of a stale handle, or nothing.
func (c *simClient) entryFault(op string, key uint64, handle string) *types.BatchResultErrorEntry {
	id := aws.String("")
	if c.sc.d.chance(c.sc.pEntryFail, "entry", uint64(len(op)), key) {
		return &types.BatchResultErrorEntry{Id: id, Code: aws.String("InternalError"), SenderFault: false, Message: aws.String("injected by the simulator")}
	}
	if op == sqsfake.OpDeleteMessageBatch && c.sc.refuseStale && c.or.stale(handle) {
		return &types.BatchResultErrorEntry{Id: id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true,
			Message: aws.String("The receipt handle has expired.")}
	}
	return nil
}

func (c *simClient) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	const op = sqsfake.OpDeleteMessageBatch
	keys, err := c.batchCall(ctx, op, len(in.Entries), func(i int) string { return aws.ToString(in.Entries[i].ReceiptHandle) })
	if err != nil {
		return nil, err
	}
	n := keys[0]
	out := &sqs.DeleteMessageBatchOutput{}
	fwd := &sqs.DeleteMessageBatchInput{QueueUrl: in.QueueUrl}
	var refused []string
	for i, e := range in.Entries {
		h := aws.ToString(e.ReceiptHandle)
		if f := c.entryFault(op, keys[i], h); f != nil {
			f.Id = e.Id
			out.Failed = append(out.Failed, *f)
			if aws.ToString(f.Code) == "ReceiptHandleIsInvalid" {
				refused = append(refused, h)
			}
			continue
		}
		fwd.Entries = append(fwd.Entries, e)
	}
	var applied []string
	if len(fwd.Entries) > 0 {
		res, err := c.fake.DeleteMessageBatch(context.WithoutCancel(ctx), fwd)
		if err != nil {
			return nil, err
		}
		handles := map[string]string{}
		for _, e := range fwd.Entries {
			handles[aws.ToString(e.Id)] = aws.ToString(e.ReceiptHandle)
		}
		for _, s := range res.Successful {
			applied = append(applied, handles[aws.ToString(s.Id)])
		}
		c.or.deletesApplied(applied)
		out.Successful = append(out.Successful, res.Successful...)
		out.Failed = append(out.Failed, res.Failed...)
	}
	if err := c.reply(ctx, op, n); err != nil {
		return nil, err
	}
	c.or.deleteReplies(applied, refused)
	c.or.deletesConfirmed(len(out.Successful))
	return out, nil
}

func (c *simClient) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	const op = sqsfake.OpChangeMessageVisibilityBatch
	sent := time.Now()
	c.or.changesSent(in.Entries, sent)
	keys, err := c.batchCall(ctx, op, len(in.Entries), func(i int) string { return aws.ToString(in.Entries[i].ReceiptHandle) })
	if err != nil {
		return nil, err
	}
	n := keys[0]
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	fwd := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: in.QueueUrl}
	for i, e := range in.Entries {
		if f := c.entryFault(op, keys[i], aws.ToString(e.ReceiptHandle)); f != nil {
			f.Id = e.Id
			out.Failed = append(out.Failed, *f)
			continue
		}
		fwd.Entries = append(fwd.Entries, e)
	}
	if len(fwd.Entries) > 0 {
		res, err := c.fake.ChangeMessageVisibilityBatch(context.WithoutCancel(ctx), fwd)
		if err != nil {
			return nil, err
		}
		byID := map[string]types.ChangeMessageVisibilityBatchRequestEntry{}
		for _, e := range fwd.Entries {
			byID[aws.ToString(e.Id)] = e
		}
		for _, s := range res.Successful {
			e := byID[aws.ToString(s.Id)]
			c.or.changeApplied(aws.ToString(e.ReceiptHandle), e.VisibilityTimeout, sent)
		}
		for _, f := range res.Failed {
			e := byID[aws.ToString(f.Id)]
			c.or.changeRefused(aws.ToString(e.ReceiptHandle), e.VisibilityTimeout, aws.ToString(f.Code), aws.ToString(f.Message))
		}
		out.Successful = append(out.Successful, res.Successful...)
		out.Failed = append(out.Failed, res.Failed...)
	}
	if err := c.reply(ctx, op, n); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *simClient) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	c.or.callStart(sqsfake.OpGetQueueUrl)
	return c.fake.GetQueueUrl(ctx, in)
}

func (c *simClient) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	c.or.callStart(sqsfake.OpGetQueueAttributes)
	return c.fake.GetQueueAttributes(ctx, in)
}

// simDecode is the pool's decoder in a simulation: a body is {"k":N}, or
// malformed; some decodes panic.
func (o *simOracle) decode(body string, v *simBody) error {
	k, malformed := parseSimBody(body)
	idx := o.decodeStart(k)
	if o.sc.d.chance(o.sc.pDecodePanic, "decode-panic", uint64(k), uint64(idx)) {
		o.decodeEnded(k, true)
		o.announcePanic("decoder")
		panic(fmt.Sprintf("simulated decoder panic on message %d", k))
	}
	if malformed {
		o.decodeEnded(k, true)
		return errors.New("simulated malformed body")
	}
	o.decodeEnded(k, false)
	v.K = k
	return nil
}

type simBody struct{ K int }

func simBodyOf(s simSend) string {
	if s.malformed {
		return "<" + strconv.Itoa(s.k) + ">"
	}
	return `{"k":` + strconv.Itoa(s.k) + `}`
}

func parseSimBody(body string) (k int, malformed bool) {
	if len(body) > 2 && body[0] == '<' {
		k, _ = strconv.Atoi(body[1 : len(body)-1])
		return k, true
	}
	k, _ = strconv.Atoi(body[len(`{"k":`) : len(body)-1])
	return k, false
}
