package sqsfake

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool/internal/clock"
)

// Defaults of New.
const (
	DefaultRegion        = "us-east-1"
	DefaultAccount       = "000000000000"
	DefaultInFlightLimit = 120_000
)

// Fake is an in-memory Amazon SQS. Its methods have the signatures of
// *sqs.Client's, so it plugs in wherever code depends on an interface that
// *sqs.Client satisfies. It is safe for concurrent use. The zero value is not
// usable; call New.
type Fake struct {
	clock         clock.Clock
	region        string
	account       string
	arnPrefix     string
	inFlightLimit int
	abandonPolls  bool
	handleKey     uint32 // mixed into receipt-handle checksums
	idPrefix      uint64 // high half of every id this fake mints
	idSeq         atomic.Uint64
	queueSeq      atomic.Uint64

	// mu guards queues. A queue's lock may be held while taking mu for
	// reading (to find a dead-letter queue), never the other way round,
	// and no two queue locks are ever held at once.
	mu     sync.RWMutex
	queues map[string]*queue // by name

	calls [numOps]atomic.Int64

	faults      atomic.Pointer[faultTable]
	hook        atomic.Pointer[Hook]
	failMu      sync.Mutex
	failNext    map[op][]failure
	failPending atomic.Int32

	rngMu sync.Mutex
	rng   *rand.Rand
}

// Option configures New.
type Option func(*options)

type options struct {
	clock         clock.Clock
	seed          uint64
	region        string
	account       string
	inFlightLimit int
	abandonPolls  bool
}

func init() { clock.Register(withClock) }

// withClock makes the fake read time and arm timers on c: visibility
// timeouts, delays, long-poll waits, deduplication windows and timestamps.
// Pass a *clock.Manual to drive them from a test. The default is clock.Real.
// Injected latency is the exception: it models the network and always runs
// on the wall clock.
// Not part of the API (the repo's tests reach it with clock.Option; a
// user's tests get fake time from testing/synctest).
func withClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithSeed seeds the random source of the fault injection (and of the ids
// the fake mints), so that a single-goroutine test sees the same faults on
// every run. The default seed is 1.
func WithSeed(seed int64) Option { return func(o *options) { o.seed = uint64(seed) } }

// WithRegion sets the region that appears in queue URLs and ARNs.
func WithRegion(region string) Option { return func(o *options) { o.region = region } }

// WithAccount sets the 12-digit account id that appears in queue URLs and
// ARNs.
func WithAccount(id string) Option { return func(o *options) { o.account = id } }

// WithInFlightLimit sets how many messages a queue may have in flight. At the
// limit a short poll fails with OverLimit and a long poll waits, as with SQS.
// The default is SQS's 120,000.
func WithInFlightLimit(n int) Option { return func(o *options) { o.inFlightLimit = n } }

// WithAbandonedPolls makes a long poll outlive its caller, as on SQS, where a
// client that cancels a ReceiveMessage (or whose connection drops) does not
// end the receive on the server: the poll keeps waiting until its
// WaitTimeSeconds end, and the first messages that become receivable
// meanwhile go to it and stay in flight for its visibility timeout,
// delivered to nobody. A receive that took messages after its caller's
// context ended fails with the context's error, as when the response is
// still on the wire. The fake hands messages to an abandoned poll when the
// queue is next received from, while the poll's wait would still be running,
// and counts them in Stats.Abandoned. Without this option a cancelled long
// poll takes nothing.
func WithAbandonedPolls() Option { return func(o *options) { o.abandonPolls = true } }

// New returns an empty fake SQS.
func New(opts ...Option) *Fake {
	o := options{clock: clock.Real, seed: 1, region: DefaultRegion, account: DefaultAccount, inFlightLimit: DefaultInFlightLimit}
	for _, fn := range opts {
		fn(&o)
	}
	rng := rand.New(rand.NewPCG(o.seed, 0x5135_fa4e))
	return &Fake{
		clock:         o.clock,
		region:        o.region,
		account:       o.account,
		arnPrefix:     "arn:aws:sqs:" + o.region + ":" + o.account + ":",
		inFlightLimit: o.inFlightLimit,
		abandonPolls:  o.abandonPolls,
		handleKey:     rng.Uint32(),
		idPrefix:      rng.Uint64(),
		queues:        map[string]*queue{},
		failNext:      map[op][]failure{},
		rng:           rng,
	}
}

// QueueURL returns the URL that a queue of this name has (or would have) in
// this fake: https://sqs.REGION.amazonaws.com/ACCOUNT/NAME.
func (f *Fake) QueueURL(name string) string {
	return "https://sqs." + f.region + ".amazonaws.com/" + f.account + "/" + name
}

// QueueARN returns the ARN that a queue of this name has (or would have) in
// this fake: arn:aws:sqs:REGION:ACCOUNT:NAME. Use it in a RedrivePolicy.
func (f *Fake) QueueARN(name string) string { return f.arnPrefix + name }

// lookupURL finds a live queue by URL. Only the account and name segments
// are compared, so a URL with another host (a local endpoint, say) works.
func (f *Fake) lookupURL(url string) (*queue, error) {
	i := strings.LastIndexByte(url, '/')
	if i < 0 {
		return nil, errQueueDoesNotExist()
	}
	name, rest := url[i+1:], url[:i]
	j := strings.LastIndexByte(rest, '/')
	if j < 0 || rest[j+1:] != f.account {
		return nil, errQueueDoesNotExist()
	}
	return f.lookupName(name)
}

func (f *Fake) lookupName(name string) (*queue, error) {
	f.mu.RLock()
	q := f.queues[name]
	f.mu.RUnlock()
	if q == nil {
		return nil, errQueueDoesNotExist()
	}
	return q, nil
}

// lookupARN finds a live queue by ARN, or returns nil.
func (f *Fake) lookupARN(arn string) *queue {
	name, ok := strings.CutPrefix(arn, f.arnPrefix)
	if !ok {
		return nil
	}
	q, _ := f.lookupName(name)
	return q
}

// mustQueue resolves a queue URL or bare name for the test helpers.
func (f *Fake) mustQueue(urlOrName string) *queue {
	var q *queue
	var err error
	if strings.Contains(urlOrName, "/") {
		q, err = f.lookupURL(urlOrName)
	} else {
		q, err = f.lookupName(urlOrName)
	}
	if err != nil {
		panic(fmt.Sprintf("sqsfake: no queue %q", urlOrName))
	}
	return q
}

// sortedQueueNames lists the live queues' names in order.
func (f *Fake) sortedQueueNames() []string {
	f.mu.RLock()
	names := make([]string, 0, len(f.queues))
	for name := range f.queues {
		names = append(names, name)
	}
	f.mu.RUnlock()
	sort.Strings(names)
	return names
}

// newID mints a UUID-shaped id, unique within this fake.
func (f *Fake) newID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], f.idPrefix)
	binary.BigEndian.PutUint64(b[8:], f.idSeq.Add(1))
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Receipt handles carry the queue incarnation, the message serial within the
// queue and the receive generation, sealed with a checksum so that a
// malformed or foreign handle is told apart from a stale one.
const handlePrefix = "AQEB"

type handle struct {
	queue  uint64
	serial uint64
	gen    uint32
}

func (f *Fake) encodeHandle(h handle) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], h.queue)
	binary.BigEndian.PutUint64(b[8:], h.serial)
	binary.BigEndian.PutUint32(b[16:], h.gen)
	binary.BigEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b[:20])^f.handleKey)
	return handlePrefix + base64.StdEncoding.EncodeToString(b[:])
}

func (f *Fake) decodeHandle(s string) (handle, bool) {
	raw, ok := strings.CutPrefix(s, handlePrefix)
	if !ok || base64.StdEncoding.DecodedLen(len(raw)) != 24 {
		return handle{}, false
	}
	var b [24]byte
	if n, err := base64.StdEncoding.Decode(b[:], []byte(raw)); err != nil || n != 24 {
		return handle{}, false
	}
	if binary.BigEndian.Uint32(b[20:]) != crc32.ChecksumIEEE(b[:20])^f.handleKey {
		return handle{}, false
	}
	return handle{
		queue:  binary.BigEndian.Uint64(b[0:]),
		serial: binary.BigEndian.Uint64(b[8:]),
		gen:    binary.BigEndian.Uint32(b[16:]),
	}, true
}

// call runs one API call: it counts it, applies the injected faults that act
// before the call takes effect, runs do, then applies the faults that act
// after, and dresses any error as *sqs.Client would.
func call[In any, Out any](ctx context.Context, f *Fake, o op, in *In, do func(*In, *Fault) (*Out, error)) (*Out, error) {
	if in == nil {
		in = new(In)
	}
	flt, err := f.before(ctx, o, in)
	if err == nil {
		var out *Out
		out, err = do(in, flt)
		if err == nil {
			if !f.roll(flt.LostReplyRate) {
				return out, nil
			}
			err = errInternal("injected lost reply: the call took effect")
		}
	}
	return nil, f.wrapError(o, err)
}

// The methods below have exactly the signatures of *sqs.Client's. Their
// optFns are accepted for compatibility and ignored.

// ReceiveMessage receives up to MaxNumberOfMessages (1..10, default 1)
// messages. With a WaitTimeSeconds (or, when it is 0, the queue's
// ReceiveMessageWaitTimeSeconds) above zero it long-polls: it returns as soon
// as a message is available, when the wait has elapsed on the fake's clock,
// or with the context's error when ctx is done.
func (f *Fake) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return call(ctx, f, opReceiveMessage, in, func(in *sqs.ReceiveMessageInput, flt *Fault) (*sqs.ReceiveMessageOutput, error) {
		return f.receiveMessage(ctx, in, flt)
	})
}

// DeleteMessage deletes a message by its receipt handle. As with SQS, a
// stale handle (from an earlier receive of a message that has since been
// received again) succeeds without deleting anything, and so does a handle of
// a message already deleted.
func (f *Fake) DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	return call(ctx, f, opDeleteMessage, in, f.deleteMessage)
}

// DeleteMessageBatch deletes up to 10 messages. Entries that fail are
// reported in Failed, with the call itself succeeding.
func (f *Fake) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	return call(ctx, f, opDeleteMessageBatch, in, f.deleteMessageBatch)
}

// ChangeMessageVisibility sets how long from now an in-flight message stays
// invisible. 0 makes it visible at once.
func (f *Fake) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	return call(ctx, f, opChangeMessageVisibility, in, f.changeMessageVisibility)
}

// ChangeMessageVisibilityBatch changes the visibility of up to 10 messages.
func (f *Fake) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	return call(ctx, f, opChangeMessageVisibilityBatch, in, f.changeMessageVisibilityBatch)
}

// SendMessage enqueues one message.
func (f *Fake) SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return call(ctx, f, opSendMessage, in, f.sendMessage)
}

// SendMessageBatch enqueues up to 10 messages.
func (f *Fake) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return call(ctx, f, opSendMessageBatch, in, f.sendMessageBatch)
}

// GetQueueUrl returns the URL of a queue by name.
func (f *Fake) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return call(ctx, f, opGetQueueUrl, in, f.getQueueURL)
}

// GetQueueAttributes returns the requested attributes ("All" for all).
func (f *Fake) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return call(ctx, f, opGetQueueAttributes, in, f.getQueueAttributes)
}

// SetQueueAttributes changes queue attributes. FifoQueue cannot change.
func (f *Fake) SetQueueAttributes(ctx context.Context, in *sqs.SetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error) {
	return call(ctx, f, opSetQueueAttributes, in, f.setQueueAttributes)
}

// CreateQueue creates a queue, or returns the existing one's URL when one of
// that name exists with the same attributes.
func (f *Fake) CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	return call(ctx, f, opCreateQueue, in, f.createQueue)
}

// DeleteQueue deletes a queue and its messages at once. Receivers
// long-polling it fail with QueueDoesNotExist.
func (f *Fake) DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, optFns ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error) {
	return call(ctx, f, opDeleteQueue, in, f.deleteQueue)
}

// PurgeQueue deletes every message of a queue. As with SQS, a second purge
// within 60 seconds (on the fake's clock) fails with PurgeQueueInProgress.
func (f *Fake) PurgeQueue(ctx context.Context, in *sqs.PurgeQueueInput, optFns ...func(*sqs.Options)) (*sqs.PurgeQueueOutput, error) {
	return call(ctx, f, opPurgeQueue, in, f.purgeQueue)
}

// ListQueues lists queue URLs in name order, filtered by QueueNamePrefix and
// paginated by MaxResults and NextToken.
func (f *Fake) ListQueues(ctx context.Context, in *sqs.ListQueuesInput, optFns ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error) {
	return call(ctx, f, opListQueues, in, f.listQueues)
}
