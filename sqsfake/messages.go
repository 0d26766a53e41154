package sqsfake

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/clock"
)

// sendParams is what SendMessage and one SendMessageBatch entry have in
// common.
type sendParams struct {
	body     *string
	delay    int32
	attrs    map[string]types.MessageAttributeValue
	sysAttrs map[string]types.MessageSystemAttributeValue
	groupID  *string
	dedupID  *string
	// digests, when set, were computed before the queue's lock was taken.
	digests *digests
}

// digests are the pure work of storing a message: its MD5s and its own
// copy of the attributes. A batch computes them before it locks the queue,
// so that concurrent senders wait on the lock only for the queue's part.
type digests struct {
	md5Body, md5Attrs string
	attrs             map[string]types.MessageAttributeValue
}

func digestOf(body string, attrs map[string]types.MessageAttributeValue) digests {
	d := digests{md5Body: md5Hex(body), attrs: copyAttributes(attrs)}
	d.md5Attrs = md5OfAttributes(d.attrs)
	return d
}

type sent struct {
	id, md5Body, md5Attrs, md5SysAttrs, seq string
}

// prepare validates p against q and builds the message, without queueing
// it. q.mu is held.
func (f *Fake) prepare(q *queue, p *sendParams) (*message, time.Duration, error) {
	cfg := &q.cfg
	if p.body == nil || *p.body == "" {
		return nil, 0, errMissingParameter("MessageBody")
	}
	if err := checkMessageChars(*p.body); err != nil {
		return nil, 0, err
	}
	attrSize, err := checkMessageAttributes(p.attrs)
	if err != nil {
		return nil, 0, err
	}
	if len(*p.body)+attrSize > cfg.maxSize {
		return nil, 0, errInvalidParameter("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", cfg.maxSize)
	}
	if p.delay < 0 || p.delay > maxDelaySeconds {
		return nil, 0, errInvalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= %d.", p.delay, maxDelaySeconds)
	}
	d := p.digests
	if d == nil {
		own := digestOf(*p.body, p.attrs)
		d = &own
	}
	m := &message{body: *p.body, md5Body: d.md5Body, attrs: d.attrs, md5Attrs: d.md5Attrs, heapIdx: -1}
	if err := m.setSystemAttributes(p.sysAttrs); err != nil {
		return nil, 0, err
	}
	delay := time.Duration(cfg.delay) * time.Second
	if p.delay != 0 {
		delay = time.Duration(p.delay) * time.Second
	}
	if p.groupID != nil {
		if err := checkFIFOTag("MessageGroupId", *p.groupID); err != nil {
			return nil, 0, err
		}
		m.groupID = *p.groupID
	}
	if !q.fifo {
		if p.dedupID != nil {
			return nil, 0, errInvalidParameter("The request includes parameter MessageDeduplicationId that is not valid for this queue type.")
		}
		return m, delay, nil
	}
	switch {
	case p.delay != 0:
		return nil, 0, errInvalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.", p.delay)
	case p.groupID == nil:
		return nil, 0, errMissingParameter("MessageGroupId")
	case p.dedupID != nil:
		if err := checkFIFOTag("MessageDeduplicationId", *p.dedupID); err != nil {
			return nil, 0, err
		}
		m.dedupID = *p.dedupID
	case cfg.contentDedup:
		sum := sha256.Sum256([]byte(*p.body))
		m.dedupID = hex.EncodeToString(sum[:])
	default:
		return nil, 0, errInvalidParameter("The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
	}
	return m, delay, nil
}

// setSystemAttributes takes the one system attribute senders may set,
// AWSTraceHeader.
func (m *message) setSystemAttributes(attrs map[string]types.MessageSystemAttributeValue) error {
	for name, v := range attrs {
		if name != "AWSTraceHeader" {
			return errInvalidParameter("Message system attribute name '%s' is invalid.", name)
		}
		if _, err := checkAttributeValue(name, v.DataType, v.StringValue, v.BinaryValue); err != nil {
			return err
		}
		if deref(v.DataType) != "String" {
			return errInvalidParameter("The message system attribute 'AWSTraceHeader' must have type 'String'.")
		}
		m.traceHeader = ptr(*v.StringValue)
		m.md5SysAttrs = md5OfAttributes(map[string]types.MessageAttributeValue{
			name: {DataType: v.DataType, StringValue: v.StringValue},
		})
	}
	return nil
}

// sendLocked queues m, or, on a FIFO queue, reports the message it duplicates.
// q.mu is held.
func (f *Fake) sendLocked(q *queue, m *message, delay time.Duration, now time.Time) sent {
	if q.fifo {
		q.pruneDedup(now)
		key := m.dedupID
		if q.cfg.dedupScope == "messageGroup" {
			key = m.groupID + "\x00" + key
		}
		if e, ok := q.dedup[key]; ok {
			q.stats.Deduplicated++
			return sent{id: e.messageID, md5Body: m.md5Body, md5Attrs: m.md5Attrs, md5SysAttrs: m.md5SysAttrs, seq: e.seq}
		}
		q.seq++
		m.seq = fmt.Sprintf("%020d", q.seq)
		m.id = f.newID()
		exp := now.Add(dedupWindowSeconds * time.Second)
		q.dedup[key] = dedupEntry{messageID: m.id, seq: m.seq, expires: exp}
		q.dedupOrder.push(dedupKey{key: key, expires: exp})
	} else {
		m.id = f.newID()
	}
	m.sentAt = now
	q.enqueue(m, now, delay)
	q.stats.Sent++
	return sent{id: m.id, md5Body: m.md5Body, md5Attrs: m.md5Attrs, md5SysAttrs: m.md5SysAttrs, seq: m.seq}
}

func (f *Fake) sendMessage(in *sqs.SendMessageInput, _ *Fault) (*sqs.SendMessageOutput, error) {
	if err := requireParams("SendMessageInput", required("QueueUrl", in.QueueUrl), required("MessageBody", in.MessageBody)); err != nil {
		return nil, err
	}
	q, now, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	p := sendParams{body: in.MessageBody, delay: in.DelaySeconds, attrs: in.MessageAttributes,
		sysAttrs: in.MessageSystemAttributes, groupID: in.MessageGroupId, dedupID: in.MessageDeduplicationId}
	m, delay, err := f.prepare(q, &p)
	if err != nil {
		return nil, err
	}
	s := f.sendLocked(q, m, delay, now)
	return &sqs.SendMessageOutput{
		MessageId: &s.id, MD5OfMessageBody: &s.md5Body, MD5OfMessageAttributes: nonEmpty(s.md5Attrs),
		MD5OfMessageSystemAttributes: nonEmpty(s.md5SysAttrs), SequenceNumber: nonEmpty(s.seq),
	}, nil
}

func (f *Fake) sendMessageBatch(in *sqs.SendMessageBatchInput, flt *Fault) (*sqs.SendMessageBatchOutput, error) {
	if err := requireParams("SendMessageBatchInput", required("QueueUrl", in.QueueUrl), requiredSlice("Entries", in.Entries)); err != nil {
		return nil, err
	}
	ids := make([]*string, len(in.Entries))
	pre := make([]digests, len(in.Entries))
	total := 0
	for i, e := range in.Entries {
		if e.MessageBody == nil {
			return nil, requireParams("SendMessageBatchRequestEntry", required("MessageBody", e.MessageBody))
		}
		ids[i] = e.Id
		pre[i] = digestOf(*e.MessageBody, e.MessageAttributes)
		total += len(*e.MessageBody)
		n, _ := checkMessageAttributes(e.MessageAttributes)
		total += n
	}
	if err := f.checkBatch(in.QueueUrl, ids); err != nil {
		return nil, err
	}
	if total > maxMessageSize {
		return nil, errBatchRequestTooLong(total)
	}
	q, now, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	out := &sqs.SendMessageBatchOutput{Successful: make([]types.SendMessageBatchResultEntry, 0, len(ids))}
	out.Failed = f.eachEntry(ids, flt, func(i int) error {
		e := &in.Entries[i]
		p := sendParams{body: e.MessageBody, delay: e.DelaySeconds, attrs: e.MessageAttributes,
			sysAttrs: e.MessageSystemAttributes, groupID: e.MessageGroupId, dedupID: e.MessageDeduplicationId, digests: &pre[i]}
		m, delay, err := f.prepare(q, &p)
		if err != nil {
			return err
		}
		s := f.sendLocked(q, m, delay, now)
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{
			Id: ptr(*e.Id), MessageId: &s.id, MD5OfMessageBody: &s.md5Body, MD5OfMessageAttributes: nonEmpty(s.md5Attrs),
			MD5OfMessageSystemAttributes: nonEmpty(s.md5SysAttrs), SequenceNumber: nonEmpty(s.seq),
		})
		return nil
	})
	return out, nil
}

// checkBatch applies the rules every batch call shares: the queue exists,
// 1 to 10 entries, ids well-formed and distinct.
func (f *Fake) checkBatch(url *string, ids []*string) error {
	if _, err := f.lookupURL(*url); err != nil {
		return err
	}
	if len(ids) == 0 {
		return errEmptyBatch()
	}
	if len(ids) > maxBatchEntries {
		return errTooManyEntries(len(ids))
	}
	for i, id := range ids {
		if id == nil {
			return requireParams("BatchRequestEntry", required("Id", id))
		}
		if !checkBatchEntryID(*id) {
			return errInvalidBatchEntryID(*id)
		}
		// At most ten ids: comparing with those before costs less than a map.
		if slices.ContainsFunc(ids[:i], func(p *string) bool { return *p == *id }) {
			return errIdsNotDistinct(*id)
		}
	}
	return nil
}

func entryFailure(id *string, err error) types.BatchResultErrorEntry {
	e := types.BatchResultErrorEntry{Id: ptr(*id), Code: ptr(CodeInternalError), Message: ptr(err.Error())}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		e.Code = ptr(apiErr.ErrorCode())
		e.Message = ptr(apiErr.ErrorMessage())
		e.SenderFault = apiErr.ErrorFault() != smithy.FaultServer
	}
	return e
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return ptr(s) // &s would move s to the heap for the empty ones too
}

// receiveMessage is ReceiveMessage after the faults that act before it.
func (f *Fake) receiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, flt *Fault) (*sqs.ReceiveMessageOutput, error) {
	if err := requireParams("ReceiveMessageInput", required("QueueUrl", in.QueueUrl)); err != nil {
		return nil, err
	}
	q, err := f.lookupURL(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	maxMessages := int(in.MaxNumberOfMessages)
	switch {
	case maxMessages == 0:
		maxMessages = 1
	case maxMessages < 1 || maxMessages > maxBatchEntries:
		return nil, errInvalidParameter("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", maxMessages)
	}
	if in.WaitTimeSeconds < 0 || in.WaitTimeSeconds > maxWaitTimeSeconds {
		return nil, errInvalidParameter("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", in.WaitTimeSeconds)
	}
	if in.VisibilityTimeout < 0 || in.VisibilityTimeout > maxVisibilityTimeout {
		return nil, errInvalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", in.VisibilityTimeout)
	}
	mask := systemAttributeMask(in.AttributeNames, in.MessageSystemAttributeNames) //nolint:staticcheck // SA1019: clients still send the deprecated parameter, and SQS honours it
	r := receiveRequest{max: maxMessages}
	if flt.DuplicateRate > 0 {
		r.duplicate = func() bool { return f.roll(flt.DuplicateRate) }
	}

	var deadline time.Time
	var shortPoll bool
	for first := true; ; first = false {
		q.mu.Lock()
		if q.gone {
			q.mu.Unlock()
			return nil, errQueueDoesNotExist()
		}
		now := f.clock.Now()
		if first {
			// Read the queue's defaults (0 in the SDK's input means "not
			// given") once, at the start of the call.
			wait, vis := int(in.WaitTimeSeconds), int(in.VisibilityTimeout)
			if wait == 0 {
				wait = q.cfg.wait
			}
			shortPoll = wait == 0
			if vis == 0 {
				vis = q.cfg.visibility
			}
			deadline = now.Add(time.Duration(wait) * time.Second)
			r.visibility = time.Duration(vis) * time.Second
		}
		r.dlq = f.deadLetterQueue(q)
		got, moved := q.receiveLocked(now, r, f.inFlightLimit)
		var out []types.Message
		for _, m := range got {
			out = append(out, f.output(q, m, mask, in.MessageAttributeNames))
		}
		overLimit := shortPoll && len(got) == 0 && q.nInFlight >= f.inFlightLimit
		var wake <-chan struct{}
		next := deadline
		if len(got) == 0 && now.Before(deadline) {
			wake = q.waitChan()
			if t, ok := q.nextDeadline(); ok && t.Before(next) {
				next = t
			}
		}
		q.mu.Unlock()
		f.moveToDeadLetterQueue(q, r.dlq, moved, now)

		switch {
		case len(got) > 0 && f.abandonPolls && ctx.Err() != nil:
			return nil, ctx.Err() // the response is lost on the way
		case len(got) > 0:
			return &sqs.ReceiveMessageOutput{Messages: out}, nil
		case overLimit:
			return nil, errOverLimit(f.inFlightLimit)
		case wake == nil:
			return &sqs.ReceiveMessageOutput{}, nil
		}
		if err := f.wait(ctx, wake, now, next); err != nil {
			if f.abandonPolls {
				f.abandon(q, abandonedPoll{until: deadline, max: r.max, visibility: r.visibility})
			}
			return nil, err
		}
	}
}

// abandon leaves a long poll waiting on the server after its caller went.
func (f *Fake) abandon(q *queue, a abandonedPoll) {
	q.mu.Lock()
	if !q.gone {
		q.abandoned = append(q.abandoned, a)
	}
	q.mu.Unlock()
}

// staleWait is how far a test clock may move between reading it and arming
// a timer before wait looks again instead of waiting: a timer armed after a
// manual clock's Advance would fire that much late. The wall clock moves
// only a little in between, and looking again could spin under load.
const staleWait = time.Millisecond

// wait blocks until wake is closed, the clock reaches until (reckoned from
// now, when the caller read it), or ctx is done.
func (f *Fake) wait(ctx context.Context, wake <-chan struct{}, now, until time.Time) error {
	t := f.clock.NewTimer(until.Sub(now))
	defer t.Stop()
	if f.clock != clock.Real && f.clock.Now().Sub(now) > staleWait {
		return nil // the clock moved: look again
	}
	select {
	case <-wake:
	case <-t.C():
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// output renders a delivered message. q.mu is held.
func (f *Fake) output(q *queue, m *message, mask uint16, attrNames []string) types.Message {
	h := f.encodeHandle(handle{queue: q.incarnation, serial: m.serial, gen: m.gen})
	out := types.Message{
		MessageId:     ptr(m.id),
		ReceiptHandle: &h,
		Body:          ptr(m.body),
		MD5OfBody:     ptr(m.md5Body),
		Attributes:    f.systemAttributes(m, mask),
	}
	if attrs := selectMessageAttributes(m.attrs, attrNames); attrs != nil {
		out.MessageAttributes = attrs
		out.MD5OfMessageAttributes = ptr(md5OfAttributes(attrs))
	}
	return out
}

// deadLetterQueue returns q's dead-letter queue, if it has a redrive policy
// and the queue exists. q.mu is held.
func (f *Fake) deadLetterQueue(q *queue) *queue {
	if q.cfg.dlqARN == "" {
		return nil
	}
	return f.lookupARN(q.cfg.dlqARN)
}

// moveToDeadLetterQueue puts messages taken out of src into dlq, with their
// MessageId and body, a fresh receive count and DeadLetterQueueSourceArn set.
func (f *Fake) moveToDeadLetterQueue(src, dlq *queue, moved []*message, now time.Time) {
	if len(moved) == 0 {
		return
	}
	dlq.mu.Lock()
	defer dlq.mu.Unlock()
	if dlq.gone {
		return
	}
	for _, m := range moved {
		c := m.clone()
		c.dlqSource = src.arn
		if dlq.fifo {
			dlq.seq++
			c.seq = fmt.Sprintf("%020d", dlq.seq)
		}
		dlq.enqueue(c, now, 0)
		dlq.stats.MovedIn++
	}
}

// resolve finds the message a receipt handle names. It returns nil and no
// error for a well-formed handle of a message no longer in the queue.
func (f *Fake) resolve(q *queue, receipt string) (*message, handle, error) {
	h, ok := f.decodeHandle(receipt)
	if !ok || h.queue != q.incarnation {
		return nil, h, errReceiptHandleIsInvalid(receipt)
	}
	return q.msgs[h.serial], h, nil
}

// deleteLocked deletes by receipt handle. q.mu is held.
func (f *Fake) deleteLocked(q *queue, receipt string) error {
	m, h, err := f.resolve(q, receipt)
	switch {
	case err != nil:
		return err
	case m == nil:
		q.stats.RedundantDeletes++
	case m.gen != h.gen:
		q.stats.StaleDeletes++
	default:
		wasAtLimit := q.nInFlight >= f.inFlightLimit
		q.remove(m)
		q.stats.Deleted++
		if wasAtLimit {
			q.wakeLocked()
		}
	}
	return nil
}

// lockQueue looks a queue up and locks it, bringing it up to date with the
// clock.
func (f *Fake) lockQueue(url string) (*queue, time.Time, error) {
	q, err := f.lookupURL(url)
	if err != nil {
		return nil, time.Time{}, err
	}
	q.mu.Lock()
	if q.gone {
		q.mu.Unlock()
		return nil, time.Time{}, errQueueDoesNotExist()
	}
	now := f.clock.Now()
	q.promote(now)
	return q, now, nil
}

func (f *Fake) deleteMessage(in *sqs.DeleteMessageInput, _ *Fault) (*sqs.DeleteMessageOutput, error) {
	if err := requireParams("DeleteMessageInput", required("QueueUrl", in.QueueUrl), required("ReceiptHandle", in.ReceiptHandle)); err != nil {
		return nil, err
	}
	q, _, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	if err := f.deleteLocked(q, *in.ReceiptHandle); err != nil {
		return nil, err
	}
	return &sqs.DeleteMessageOutput{}, nil
}

func (f *Fake) deleteMessageBatch(in *sqs.DeleteMessageBatchInput, flt *Fault) (*sqs.DeleteMessageBatchOutput, error) {
	if err := requireParams("DeleteMessageBatchInput", required("QueueUrl", in.QueueUrl), requiredSlice("Entries", in.Entries)); err != nil {
		return nil, err
	}
	ids, receipts := make([]*string, len(in.Entries)), make([]*string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i], receipts[i] = e.Id, e.ReceiptHandle
	}
	out := &sqs.DeleteMessageBatchOutput{Successful: []types.DeleteMessageBatchResultEntry{}}
	var err error
	out.Failed, err = f.receiptBatch(*in.QueueUrl, ids, receipts, flt, func(q *queue, _ time.Time, i int) error {
		if err := f.deleteLocked(q, *receipts[i]); err != nil {
			return err
		}
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: ptr(*ids[i])})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// receiptBatch runs the entries of a DeleteMessageBatch or
// ChangeMessageVisibilityBatch: it checks the request, then applies each
// entry with the queue locked.
func (f *Fake) receiptBatch(url string, ids, receipts []*string, flt *Fault, apply func(q *queue, now time.Time, i int) error) ([]types.BatchResultErrorEntry, error) {
	for _, r := range receipts {
		if r == nil {
			return nil, requireParams("BatchRequestEntry", required("ReceiptHandle", r))
		}
	}
	if err := f.checkBatch(&url, ids); err != nil {
		return nil, err
	}
	q, now, err := f.lockQueue(url)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	return f.eachEntry(ids, flt, func(i int) error { return apply(q, now, i) }), nil
}

// eachEntry applies a batch's entries in order and returns the failures:
// entries whose apply failed and entries that the PartialFailureRate picked,
// which are not applied.
func (f *Fake) eachEntry(ids []*string, flt *Fault, apply func(i int) error) []types.BatchResultErrorEntry {
	failed := []types.BatchResultErrorEntry{}
	for i, id := range ids {
		var err error
		if f.roll(flt.PartialFailureRate) {
			err = errInternal("injected by PartialFailureRate")
		} else {
			err = apply(i)
		}
		if err != nil {
			failed = append(failed, entryFailure(id, err))
		}
	}
	return failed
}

// changeVisibilityLocked sets an in-flight message's visibility timeout to
// timeout seconds from now. q.mu is held.
func (f *Fake) changeVisibilityLocked(q *queue, receipt string, timeout int32, now time.Time) error {
	m, h, err := f.resolve(q, receipt)
	if err != nil {
		return err
	}
	if timeout < 0 || timeout > maxVisibilityTimeout {
		return errInvalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.", timeout)
	}
	if m == nil {
		return errInvalidParameter("Value %s for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", receipt)
	}
	if m.gen != h.gen || m.state != stateInFlight {
		return errMessageNotInflight()
	}
	until := now.Add(time.Duration(timeout) * time.Second)
	if until.Sub(m.receivedAt) > maxVisibilityTimeout*time.Second {
		return errInvalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]", timeout)
	}
	if timeout == 0 {
		heap.Remove(&q.timed, m.heapIdx)
		q.leaveTimed(m)
		q.makeVisible(m)
		return nil
	}
	m.visibleAt = until
	heap.Fix(&q.timed, m.heapIdx)
	q.wakeLocked() // a receiver may be waiting on a later deadline
	return nil
}

func (f *Fake) changeMessageVisibility(in *sqs.ChangeMessageVisibilityInput, _ *Fault) (*sqs.ChangeMessageVisibilityOutput, error) {
	if err := requireParams("ChangeMessageVisibilityInput", required("QueueUrl", in.QueueUrl), required("ReceiptHandle", in.ReceiptHandle)); err != nil {
		return nil, err
	}
	q, now, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	if err := f.changeVisibilityLocked(q, *in.ReceiptHandle, in.VisibilityTimeout, now); err != nil {
		return nil, err
	}
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *Fake) changeMessageVisibilityBatch(in *sqs.ChangeMessageVisibilityBatchInput, flt *Fault) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if err := requireParams("ChangeMessageVisibilityBatchInput", required("QueueUrl", in.QueueUrl), requiredSlice("Entries", in.Entries)); err != nil {
		return nil, err
	}
	ids, receipts := make([]*string, len(in.Entries)), make([]*string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i], receipts[i] = e.Id, e.ReceiptHandle
	}
	out := &sqs.ChangeMessageVisibilityBatchOutput{Successful: []types.ChangeMessageVisibilityBatchResultEntry{}}
	var err error
	out.Failed, err = f.receiptBatch(*in.QueueUrl, ids, receipts, flt, func(q *queue, now time.Time, i int) error {
		if err := f.changeVisibilityLocked(q, *receipts[i], in.Entries[i].VisibilityTimeout, now); err != nil {
			return err
		}
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: ptr(*ids[i])})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
