package catcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/batch"
)

// Client is the part of *sqs.Client the handler uses.
type Client interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ Client = (*sqs.Client)(nil)

// Handler is the http.Handler that enqueues request bodies. Create it with
// New; it is safe for concurrent use. Call Close when done.
type Handler struct {
	client   Client
	queueURL string
	fifo     bool
	cfg      config
	batcher  *batch.Batcher[*item]
	closed   atomic.Bool
	stats    counters

	// testHookQueued, when set, runs after a request joined a batch.
	testHookQueued func()
}

// States of an item: the request and the flush race to move it out of
// queued, so that exactly one of them decides whether it is sent.
const (
	stateQueued    int32 = iota
	stateSending         // claimed by a flush: the request waits for the result
	stateAbandoned       // the request gave up first: the flush skips it
)

// item is one request's message on its way through the batcher.
type item struct {
	entry types.SendMessageBatchRequestEntry // Id is set by the flush
	size  int
	ctx   context.Context // the request's
	state atomic.Int32
	done  chan result // buffered: the flush never blocks on it
}

type result struct {
	messageID string
	rej       *rejection
}

// New returns a Handler that sends messages to queueURL with client. A
// queueURL ending in ".fifo" is a FIFO queue: see the package doc. Invalid
// options panic.
func New(client Client, queueURL string, opts ...Option) *Handler {
	if client == nil {
		panic("catcher: New: nil client")
	}
	if queueURL == "" {
		panic("catcher: New: empty queue URL")
	}
	h := &Handler{client: client, queueURL: queueURL, fifo: strings.HasSuffix(queueURL, ".fifo"), cfg: defaultConfig()}
	for _, o := range opts {
		o(&h.cfg)
	}
	if h.fifo && h.cfg.fifo == nil {
		WithFIFOHeaders(HeaderMessageGroupID, HeaderDeduplicationID)(&h.cfg)
	}
	h.batcher = batch.New(context.Background(), batch.Options{
		MaxItems:    maxBatchEntries,
		MaxBytes:    MaxMessageBytes,
		Linger:      h.cfg.linger,
		MaxInFlight: h.cfg.maxInFlight,
		Clock:       h.cfg.clock,
	}, func(it *item) int { return it.size }, h.flush)
	return h
}

// Stats returns the counters since New.
func (h *Handler) Stats() Stats { return h.stats.snapshot() }

// Close stops taking requests (they get 503), sends what is pending and
// waits until every request in progress has its answer. If ctx ends first,
// the calls still running are cancelled, their requests get 503, and Close
// returns ctx.Err(). No goroutine of the handler is left after Close
// returns. Close the http.Server first (Serve does), so that no request
// arrives after Close. Close may be called more than once.
func (h *Handler) Close(ctx context.Context) error {
	h.closed.Store(true)
	if err := h.batcher.Close(ctx); err != nil {
		return fmt.Errorf("catcher: close: %w", err)
	}
	return nil
}

// ServeHTTP enqueues the request body as one message and answers once SQS
// has accepted or refused it. See the package doc for the statuses.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, reject(http.StatusMethodNotAllowed, ReasonMethod, "method not allowed, use POST", nil))
		return
	}
	if h.closed.Load() {
		h.fail(w, errClosed) // before reading a body we would throw away
		return
	}
	it, rej := h.prepare(w, r)
	if rej != nil {
		h.fail(w, rej)
		return
	}
	if err := h.batcher.Add(it); err != nil { // only batch.ErrClosed
		h.fail(w, errClosed)
		return
	}
	if h.testHookQueued != nil {
		h.testHookQueued()
	}
	var res result
	select {
	case res = <-it.done:
	case <-r.Context().Done():
		if it.state.CompareAndSwap(stateQueued, stateAbandoned) {
			h.fail(w, errCancelled)
			return
		}
		// A flush has it: SQS may store it, so wait for the truth. The
		// wait is bounded by the send timeout.
		res = <-it.done
	}
	if res.rej != nil {
		h.fail(w, res.rej)
		return
	}
	h.stats.accepted.Add(1)
	writeJSON(w, http.StatusAccepted, struct {
		MessageID string `json:"messageId"`
	}{res.messageID})
}

// prepare reads and checks the request and builds its entry. Everything
// that can reject a request happens here, before it joins a batch.
func (h *Handler) prepare(w http.ResponseWriter, r *http.Request) (*item, *rejection) {
	body, rej := h.readBody(w, r)
	if rej != nil {
		return nil, rej
	}
	msg := string(body) // the one copy: MessageBody is a string
	if i := firstInvalidChar(msg); i >= 0 {
		return nil, reject(http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("body holds a character SQS does not accept at byte %d (SQS takes XML 1.0 characters in UTF-8; encode binary data, e.g. as base64)", i), nil)
	}
	if h.cfg.json && !json.Valid(body) {
		return nil, reject(http.StatusBadRequest, ReasonBadRequest, "body is not valid JSON", nil)
	}
	if h.cfg.validate != nil {
		if err := h.cfg.validate(body, r); err != nil {
			return nil, validationRejection(err)
		}
	}
	entry := types.SendMessageBatchRequestEntry{MessageBody: &msg}
	size := len(msg)
	if h.cfg.fifo != nil {
		group, dedup, err := h.cfg.fifo(r, body)
		if err != nil {
			return nil, validationRejection(err)
		}
		if rej := h.setFIFO(&entry, group, dedup); rej != nil {
			return nil, rej
		}
	}
	for _, a := range h.cfg.attributes {
		v := r.Header.Get(a.header)
		if v == "" {
			continue // SQS refuses empty attribute values
		}
		if firstInvalidChar(v) >= 0 {
			return nil, reject(http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("header %s holds a character SQS does not accept", a.header), nil)
		}
		if entry.MessageAttributes == nil {
			entry.MessageAttributes = make(map[string]types.MessageAttributeValue, len(h.cfg.attributes))
		}
		entry.MessageAttributes[a.attribute] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		// SQS counts name, type and value against the message size.
		size += len(a.attribute) + len("String") + len(v)
	}
	if size > MaxMessageBytes {
		return nil, reject(http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body and attributes exceed the SQS limit of %d bytes", MaxMessageBytes), nil)
	}
	return &item{entry: entry, size: size, ctx: r.Context(), done: make(chan result, 1)}, nil
}

// readBody reads the whole body, but never more than the limit plus one
// byte: http.MaxBytesReader stops the read (and makes the server close the
// connection) so that a huge body costs us the limit, not its size.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *rejection) {
	limit := h.cfg.maxBody
	tooLarge := reject(http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body exceeds %d bytes", limit), nil)
	if r.ContentLength > limit {
		return nil, tooLarge // declared too large: do not read at all
	}
	if r.Body == nil { // a hand-made request; servers always set one
		return nil, reject(http.StatusBadRequest, ReasonEmpty, "empty body", nil)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // one allocation
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, tooLarge
	case isTimeout(err):
		return nil, reject(http.StatusRequestTimeout, ReasonReadError, "timed out reading the body", err)
	case err != nil:
		return nil, reject(http.StatusBadRequest, ReasonReadError, "could not read the body", err)
	case buf.Len() == 0:
		return nil, reject(http.StatusBadRequest, ReasonEmpty, "empty body", nil)
	}
	return buf.Bytes(), nil
}

// setFIFO checks and sets the FIFO ids of an entry.
func (h *Handler) setFIFO(e *types.SendMessageBatchRequestEntry, group, dedup string) *rejection {
	if group == "" && h.fifo {
		return reject(http.StatusBadRequest, ReasonBadRequest, "a FIFO queue needs a message group id", nil)
	}
	for _, f := range []struct {
		what, id string
		dst      **string
	}{{"message group id", group, &e.MessageGroupId}, {"deduplication id", dedup, &e.MessageDeduplicationId}} {
		if f.id == "" {
			continue
		}
		if err := checkFIFOID(f.what, f.id); err != nil {
			return reject(http.StatusBadRequest, ReasonBadRequest, strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": "), err)
		}
		*f.dst = aws.String(f.id)
	}
	return nil
}

// validationRejection maps an error of a ValidateFunc or FIFOFunc: its
// message is the answer, since the user wrote it for the client.
func validationRejection(err error) *rejection {
	if errors.Is(err, ErrBadRequest) {
		return reject(http.StatusBadRequest, ReasonBadRequest, err.Error(), err)
	}
	return reject(http.StatusUnprocessableEntity, ReasonInvalid, err.Error(), err)
}

// fail answers a request that was not accepted and counts it.
func (h *Handler) fail(w http.ResponseWriter, rej *rejection) {
	h.stats.reject(rej.reason)
	if rej.status == http.StatusServiceUnavailable {
		secs := int64(math.Ceil(h.cfg.retryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, rej.status, struct {
		Error string `json:"error"`
	}{rej.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen for the structs of strings we pass
		panic(fmt.Sprintf("catcher: encoding answer: %v", err))
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client may be gone; nothing to do
}

// entryIDs are the batch entry ids, distinct within a call as SQS demands.
var entryIDs = func() (ids [maxBatchEntries]string) {
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	return ids
}()

// flush sends one batch and hands every item its own result. The batcher
// calls it exactly once per item, with a cancelled ctx if Close gave up.
func (h *Handler) flush(ctx context.Context, items []*item) {
	live := make([]*item, 0, len(items))
	for _, it := range items {
		if it.ctx.Err() != nil && it.state.CompareAndSwap(stateQueued, stateAbandoned) {
			it.done <- result{rej: errCancelled} // the client left; do not send
			continue
		}
		if it.state.CompareAndSwap(stateQueued, stateSending) {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return
	}
	if ctx.Err() != nil { // Close gave up before this batch started
		for _, it := range live {
			it.done <- result{rej: errClosed}
		}
		return
	}
	entries := make([]types.SendMessageBatchRequestEntry, len(live))
	for i, it := range live {
		entries[i] = it.entry
		entries[i].Id = aws.String(entryIDs[i])
	}
	sendCtx, cancel := context.WithTimeout(ctx, h.cfg.sendTimeout)
	out, err := h.client.SendMessageBatch(sendCtx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(h.queueURL), Entries: entries})
	cancel()
	h.stats.calls.Add(1)
	h.stats.entries.Add(uint64(len(entries)))
	h.stats.entriesPerCall[len(entries)].Add(1)
	if err != nil {
		h.stats.callErrors.Add(1)
		rej := callRejection(fmt.Errorf("catcher: SendMessageBatch of %d entries: %w", len(entries), err))
		h.log("SendMessageBatch failed", rej)
		for _, it := range live {
			it.done <- result{rej: rej}
		}
		return
	}
	h.deliver(live, out)
}

// deliver hands out the per-entry results of a successful call. An entry
// SQS reported on neither way may or may not be stored: it gets 503, the
// at-least-once answer.
func (h *Handler) deliver(live []*item, out *sqs.SendMessageBatchOutput) {
	results := make([]result, len(live))
	seen := make([]bool, len(live))
	index := func(id *string) (int, bool) {
		i, err := strconv.Atoi(deref(id))
		if err != nil || i < 0 || i >= len(live) || seen[i] {
			return 0, false
		}
		seen[i] = true
		return i, true
	}
	for _, s := range out.Successful {
		if i, ok := index(s.Id); ok && deref(s.MessageId) != "" {
			results[i].messageID = *s.MessageId
		}
	}
	for _, f := range out.Failed {
		if i, ok := index(f.Id); ok {
			results[i].rej = entryRejection(f)
			h.log("SendMessageBatch entry failed", results[i].rej)
		}
	}
	for i, it := range live {
		if results[i].messageID == "" && results[i].rej == nil {
			results[i].rej = reject(http.StatusServiceUnavailable, ReasonUnavailable, "the queue did not confirm the message, retry later",
				fmt.Errorf("catcher: SendMessageBatch reported nothing for entry %d", i))
			h.log("SendMessageBatch entry unreported", results[i].rej)
		}
		if results[i].rej != nil {
			h.stats.entryFailures.Add(1)
		}
		it.done <- results[i]
	}
}

func (h *Handler) log(msg string, rej *rejection) {
	if h.cfg.logger != nil {
		h.cfg.logger.Warn("catcher: "+msg, "queue", h.queueURL, "status", rej.status, "reason", string(rej.reason), "error", rej.err)
	}
}
