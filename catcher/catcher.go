package catcher

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/sendbatch"
)

// Client is the part of *sqs.Client the handler uses: GetQueueAttributes
// once in New, SendMessageBatch for the messages.
type Client interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

var _ Client = (*sqs.Client)(nil)

// answerMargin is the time kept, after a send timed out, to write the
// answer before the server's write deadline.
const answerMargin = 250 * time.Millisecond

// Handler is the http.Handler that enqueues request bodies. Create it with
// New; it is safe for concurrent use. Call Close when done.
type Handler struct {
	client   Client
	queueURL string
	queue    queueInfo
	maxBody  int64 // WithMaxBodyBytes, at most the queue's limit
	cfg      config
	sender   *sendbatch.Sender
	closed   atomic.Bool
	stats    counters
	mem      memory
	dedup    *dedupTable // FIFO queues only

	// testHookQueued, when set, runs after a request joined a batch.
	testHookQueued func()
}

// queueInfo is what New learns from GetQueueAttributes.
type queueInfo struct {
	fifo         bool
	maxSize      int  // MaximumMessageSize: body plus attributes
	contentDedup bool // ContentBasedDeduplication
	groupScope   bool // DeduplicationScope messageGroup
}

// item is one request's message on its way through the sender.
type item struct {
	msg    sendbatch.Message
	body   string   // msg.Entry.MessageBody points here
	first  [1]byte  // the body's first byte, read before any chunk
	answer [64]byte // the 202 answer: a UUID's fits
}

type result struct {
	messageID string
	rej       *rejection
}

// New returns a Handler that sends messages to queueURL with client. It
// reads the queue's attributes with GetQueueAttributes (the caller needs
// that permission besides sqs:SendMessage): a FIFO queue gets FIFO ids (see
// the package doc), and bodies plus attributes are held to the queue's
// MaximumMessageSize. Invalid options and a failed GetQueueAttributes are
// returned as an error.
func New(ctx context.Context, client Client, queueURL string, opts ...Option) (*Handler, error) {
	if client == nil {
		return nil, errors.New("catcher: New: nil client")
	}
	if queueURL == "" {
		return nil, errors.New("catcher: New: empty queue URL")
	}
	h := &Handler{client: client, queueURL: queueURL, cfg: defaultConfig()}
	for _, o := range opts {
		o(&h.cfg)
	}
	if err := h.cfg.err(); err != nil {
		return nil, err
	}
	if h.cfg.maxMemory < 2*h.cfg.maxBody {
		return nil, fmt.Errorf("catcher: WithMaxBodyMemory(%d) must hold two bodies of WithMaxBodyBytes(%d)", h.cfg.maxMemory, h.cfg.maxBody)
	}
	q, err := readQueue(ctx, client, queueURL)
	if err != nil {
		return nil, err
	}
	h.queue = q
	h.maxBody = min(h.cfg.maxBody, int64(q.maxSize))
	h.mem.max = h.cfg.maxMemory
	if q.fifo {
		if h.cfg.fifo == nil {
			WithFIFOHeaders(HeaderMessageGroupID, HeaderDeduplicationID)(&h.cfg)
		}
		h.dedup = newDedupTable(dedupTableSize)
	} else if h.cfg.namespace != nil {
		return nil, fmt.Errorf("catcher: WithDedupNamespace: %s is not a FIFO queue", queueURL)
	}
	h.sender = sendbatch.New(client, sendbatch.Options{
		QueueURL:    queueURL,
		Linger:      h.cfg.linger,
		MaxInFlight: h.cfg.maxInFlight,
		SendTimeout: h.cfg.sendTimeout,
		MaxWaiting:  h.cfg.maxWaiting,
		Clock:       h.cfg.clock,
		OnError:     h.log,
		OnQueued: func() {
			if h.testHookQueued != nil {
				h.testHookQueued()
			}
		},
	})
	return h, nil
}

// readQueue reads the attributes the handler depends on.
func readQueue(ctx context.Context, client Client, queueURL string) (queueInfo, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameFifoQueue, types.QueueAttributeNameMaximumMessageSize,
			types.QueueAttributeNameContentBasedDeduplication, types.QueueAttributeNameDeduplicationScope,
		},
	})
	if err != nil {
		return queueInfo{}, fmt.Errorf("catcher: New: GetQueueAttributes of %s: %w", queueURL, err)
	}
	a := out.Attributes
	q := queueInfo{
		fifo:         a[string(types.QueueAttributeNameFifoQueue)] == "true",
		maxSize:      MaxMessageBytes,
		contentDedup: a[string(types.QueueAttributeNameContentBasedDeduplication)] == "true",
		groupScope:   a[string(types.QueueAttributeNameDeduplicationScope)] == "messageGroup",
	}
	if v, ok := a[string(types.QueueAttributeNameMaximumMessageSize)]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return queueInfo{}, fmt.Errorf("catcher: New: %s has MaximumMessageSize %q", queueURL, v)
		}
		q.maxSize = min(n, MaxMessageBytes)
	}
	return q, nil
}

// Stats returns the counters since New.
func (h *Handler) Stats() Stats { return h.stats.snapshot(h.sender.Stats()) }

// Close stops taking requests (they get 503), sends what is pending and
// waits until every request in progress has its answer. If ctx ends first,
// the calls still running are cancelled, their requests get 503, and Close
// returns ctx.Err(). No goroutine of the handler is left after Close
// returns. Close the http.Server first (Serve does), so that no request
// arrives after Close. Close may be called more than once.
func (h *Handler) Close(ctx context.Context) error {
	h.closed.Store(true)
	if err := h.sender.Close(ctx); err != nil {
		return fmt.Errorf("catcher: close: %w", err)
	}
	return nil
}

// ServeHTTP enqueues the request body as one message and answers once SQS
// has accepted or refused it. See the package doc for the statuses.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.cfg.clock.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, reject(http.StatusMethodNotAllowed, ReasonMethod, "method not allowed, use POST", nil))
		return
	}
	if h.closed.Load() {
		h.fail(w, errClosed) // before reading a body we would throw away
		return
	}
	if h.sender.Full() {
		closeAfter(w)
		h.fail(w, errFull) // do not read a body that cannot be sent
		return
	}
	it := &item{}
	claim, rej := h.prepare(w, r, it)
	if rej != nil {
		h.fail(w, rej)
		return
	}
	defer h.mem.give(int64(len(it.body)))
	res := h.send(r, it, h.sendBy(r, start))
	if claim != nil {
		h.dedup.release(claim, res.messageID != "", h.cfg.clock.Now())
	}
	if res.rej != nil {
		h.fail(w, res.rej)
		return
	}
	h.stats.accepted.Add(1)
	writeAccepted(w, res.messageID, it.answer[:0])
}

// sendBy returns the last moment at which the request's message may be
// handed to SQS so that the answer still meets the server's write deadline
// (WriteTimeout from the end of the headers): a send may take the whole
// send timeout. Zero when the server sets no write deadline.
func (h *Handler) sendBy(r *http.Request, start time.Time) time.Time {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil || srv.WriteTimeout <= 0 {
		return time.Time{}
	}
	return start.Add(srv.WriteTimeout - h.cfg.sendTimeout - answerMargin)
}

// send hands the item to the sender and maps its result. A request that
// cannot be sent in time, or whose client has gone, is taken back before it
// is sent; once a call carries it, the request waits for what SQS said,
// which the send timeout bounds.
func (h *Handler) send(r *http.Request, it *item, sendBy time.Time) result {
	res := h.sender.Send(r.Context(), &it.msg, sendBy)
	if res.Err == nil {
		return result{messageID: res.MessageID}
	}
	return result{rej: rejectionOf(res.Err)}
}

// prepare reads and checks the request and builds its entry. Everything
// that can reject a request happens here, before it joins a batch. The
// body's bytes stay charged to h.mem until the request ends.
func (h *Handler) prepare(w http.ResponseWriter, r *http.Request, it *item) (*dedupClaim, *rejection) {
	body, rej := h.readBody(w, r, h.maxBody, it.first[:])
	if rej != nil {
		return nil, rej
	}
	claim, rej := h.entry(r, body, it)
	if rej != nil {
		h.mem.give(int64(len(body)))
		return nil, rej
	}
	return claim, nil
}

// entry checks the body and headers and fills in it.
func (h *Handler) entry(r *http.Request, body []byte, it *item) (*dedupClaim, *rejection) {
	// The body is complete and no callback may keep or change it
	// (ValidateFunc and FIFOFunc must not), so the message shares its bytes.
	it.body = unsafe.String(unsafe.SliceData(body), len(body))
	if i := sendbatch.FirstInvalidChar(it.body); i >= 0 {
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
	it.msg.Entry.MessageBody = &it.body
	size := len(body)
	var claim *dedupClaim
	if h.cfg.fifo != nil {
		var rej *rejection
		if claim, rej = h.setFIFO(&it.msg.Entry, r, body); rej != nil {
			return nil, rej
		}
	}
	attrSize, rej := h.setAttributes(&it.msg.Entry, r)
	if rej == nil && size+attrSize > h.queue.maxSize {
		rej = reject(http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body and attributes exceed the queue's limit of %d bytes", h.queue.maxSize), nil)
	}
	if rej != nil {
		if claim != nil {
			h.dedup.release(claim, false, h.cfg.clock.Now())
		}
		return nil, rej
	}
	it.msg.Size = size + attrSize
	return claim, nil
}

// setAttributes adds the header-derived attributes and returns their size
// as SQS counts it (name, type and value).
func (h *Handler) setAttributes(e *types.SendMessageBatchRequestEntry, r *http.Request) (int, *rejection) {
	size := 0
	for _, a := range h.cfg.attributes {
		v := r.Header.Get(a.header)
		if v == "" {
			continue // SQS refuses empty attribute values
		}
		if a.header == HeaderTraceparent && !validTraceparent(v) {
			// W3C trace context: a receiver that cannot parse traceparent
			// ignores it and starts a new trace; so does the consumer.
			h.stats.droppedTraceparents.Add(1)
			continue
		}
		if len(v) > h.cfg.maxAttr {
			return 0, reject(http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("header %s is longer than %d bytes", a.header, h.cfg.maxAttr), nil)
		}
		if sendbatch.FirstInvalidChar(v) >= 0 {
			return 0, reject(http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("header %s holds a character SQS does not accept", a.header), nil)
		}
		if e.MessageAttributes == nil {
			e.MessageAttributes = make(map[string]types.MessageAttributeValue, len(h.cfg.attributes))
		}
		e.MessageAttributes[a.attribute] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		size += len(a.attribute) + len("String") + len(v)
	}
	return size, nil
}

// setFIFO checks and sets the FIFO ids of an entry. On a FIFO queue the
// deduplication id sent is a hash of the namespace, the client's id, the
// group and the body, so that SQS deduplicates only a true repeat and a
// 202 never names another request's message; a reused id with another
// group or body is caught by h.dedup and answered 409.
func (h *Handler) setFIFO(e *types.SendMessageBatchRequestEntry, r *http.Request, body []byte) (*dedupClaim, *rejection) {
	group, dedup, err := h.cfg.fifo(r, body)
	if err != nil {
		return nil, validationRejection(err)
	}
	if group == "" && h.queue.fifo {
		return nil, reject(http.StatusBadRequest, ReasonBadRequest, "a FIFO queue needs a message group id", nil)
	}
	for _, f := range []struct{ what, id string }{{"message group id", group}, {"deduplication id", dedup}} {
		if f.id == "" {
			continue
		}
		if err := checkFIFOID(f.what, f.id); err != nil {
			return nil, reject(http.StatusBadRequest, ReasonBadRequest, strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": "), err)
		}
	}
	if group != "" {
		e.MessageGroupId = aws.String(group)
	}
	if !h.queue.fifo {
		if dedup != "" {
			e.MessageDeduplicationId = aws.String(dedup) // SQS answers for it
		}
		return nil, nil
	}
	if dedup == "" && !h.queue.contentDedup {
		return nil, reject(http.StatusBadRequest, ReasonBadRequest, "the FIFO queue does not deduplicate by content: the request needs a deduplication id", nil)
	}
	var ns string
	if h.cfg.namespace != nil {
		if ns, err = h.cfg.namespace(r); err != nil {
			return nil, validationRejection(err)
		}
	}
	fp := fingerprint(ns, dedup, group, body)
	e.MessageDeduplicationId = aws.String(hex.EncodeToString(fp[:]))
	if dedup == "" {
		return nil, nil // content-based: a different body is a different id
	}
	scope := ""
	if h.queue.groupScope {
		scope = group
	}
	claim, ok := h.dedup.claim(dedupKey(ns, dedup, scope), fp, h.cfg.clock.Now())
	if !ok {
		return nil, errConflict
	}
	return claim, nil
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

var (
	contentTypeJSON = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen for the structs of strings we pass
		panic(fmt.Sprintf("catcher: encoding answer: %v", err))
	}
	writeAnswer(w, status, append(b, '\n'))
}

// writeAccepted writes the 202 answer, built in buf when it fits. SQS
// message ids are UUIDs, which need no JSON escaping; anything else goes
// through encoding/json.
func writeAccepted(w http.ResponseWriter, messageID string, buf []byte) {
	if !plainID(messageID) {
		writeJSON(w, http.StatusAccepted, struct {
			MessageID string `json:"messageId"`
		}{messageID})
		return
	}
	b := append(buf, `{"messageId":"`...)
	b = append(b, messageID...)
	writeAnswer(w, http.StatusAccepted, append(b, "\"}\n"...))
}

func plainID(s string) bool {
	for i := range len(s) {
		if c := s[i]; !isAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

func writeAnswer(w http.ResponseWriter, status int, body []byte) {
	hdr := w.Header()
	// Shared, never modified slices: no allocation per answer.
	hdr["Content-Type"] = contentTypeJSON
	hdr["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client may be gone; nothing to do
}

// log reports a failed call or entry to the operator: the rejection it
// gives and SQS's own error, which clients never see.
func (h *Handler) log(msg string, err error) {
	if h.cfg.logger != nil {
		rej := rejectionOf(err)
		h.cfg.logger.Warn("catcher: "+msg, "queue", h.queueURL, "status", rej.status, "reason", string(rej.reason), "error", rej.err)
	}
}
