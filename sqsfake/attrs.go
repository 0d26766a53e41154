package sqsfake

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/ascii"
)

// SQS limits the fake enforces.
const (
	maxMessageSize       = 1 << 20 // 1 MiB: body plus message attributes, and a whole SendMessageBatch
	maxBatchEntries      = 10
	maxVisibilityTimeout = 43200 // 12 h
	maxDelaySeconds      = 900
	maxWaitTimeSeconds   = 20
	maxMessageAttributes = 10
	dedupWindowSeconds   = 300
	purgeIntervalSeconds = 60
	defaultVisibility    = 30
	defaultRetention     = 345600 // 4 days
)

// queueConfig is a queue's settable attributes, parsed.
type queueConfig struct {
	queueSettings
	other map[string]string // attributes the fake stores but does not model
}

type queueSettings struct {
	fifo            bool
	visibility      int // seconds
	delay           int
	wait            int
	retention       int
	maxSize         int
	redrivePolicy   string // as set, "" when none
	dlqARN          string
	maxReceiveCount int
	contentDedup    bool
	dedupScope      string // FIFO: "queue" or "messageGroup"
	throughputLimit string // FIFO: "perQueue" or "perMessageGroupId"
}

func defaultConfig(fifo bool) queueConfig {
	c := queueConfig{queueSettings: queueSettings{fifo: fifo, visibility: defaultVisibility, retention: defaultRetention, maxSize: maxMessageSize}}
	if fifo {
		c.dedupScope = "queue"
		c.throughputLimit = "perQueue"
	}
	return c
}

func (c queueConfig) equal(o queueConfig) bool {
	return c.queueSettings == o.queueSettings && maps.Equal(c.other, o.other)
}

// Attributes stored and returned verbatim: the fake does not model them.
var passThroughAttributes = map[string]bool{
	"Policy": true, "KmsMasterKeyId": true, "KmsDataKeyReusePeriodSeconds": true,
	"SqsManagedSseEnabled": true, "RedriveAllowPolicy": true,
}

// withAttributes returns c changed by attrs. FifoQueue is only accepted
// with the value the queue already has.
func (c queueConfig) withAttributes(attrs map[string]string) (queueConfig, error) {
	c.other = maps.Clone(c.other)
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[k]
		var err error
		switch k {
		case "VisibilityTimeout":
			c.visibility, err = intAttribute(k, v, 0, maxVisibilityTimeout)
		case "DelaySeconds":
			c.delay, err = intAttribute(k, v, 0, maxDelaySeconds)
		case "ReceiveMessageWaitTimeSeconds":
			c.wait, err = intAttribute(k, v, 0, maxWaitTimeSeconds)
		case "MessageRetentionPeriod":
			c.retention, err = intAttribute(k, v, 60, 1209600)
		case "MaximumMessageSize":
			c.maxSize, err = intAttribute(k, v, 1024, maxMessageSize)
		case "RedrivePolicy":
			err = c.setRedrivePolicy(v)
		case "FifoQueue":
			if v != strconv.FormatBool(c.fifo) {
				err = errInvalidAttributeValue("Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.")
			}
		case "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit":
			err = c.setFIFOAttribute(k, v)
		default:
			if !passThroughAttributes[k] {
				return c, errInvalidAttributeName(k)
			}
			if c.other == nil {
				c.other = map[string]string{}
			}
			c.other[k] = v
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func intAttribute(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errInvalidAttributeValue("Invalid value for the parameter %s. Reason: must be an integer from %d to %d.", name, lo, hi)
	}
	return n, nil
}

func (c *queueConfig) setRedrivePolicy(v string) error {
	if v == "" {
		c.redrivePolicy, c.dlqARN, c.maxReceiveCount = "", "", 0
		return nil
	}
	var p struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return errInvalidAttributeValue("Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is not a valid JSON map.")
	}
	// maxReceiveCount may be a number or a string holding one.
	n, err := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	if err != nil || n < 1 || n > 1000 {
		return errInvalidAttributeValue("Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: must be an integer from 1 to 1000.", v)
	}
	if p.DeadLetterTargetArn == "" {
		return errInvalidAttributeValue("Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: deadLetterTargetArn.", v)
	}
	c.redrivePolicy, c.dlqARN, c.maxReceiveCount = v, p.DeadLetterTargetArn, n
	return nil
}

func (c *queueConfig) setFIFOAttribute(k, v string) error {
	if !c.fifo {
		return errInvalidAttributeName(k)
	}
	ok := false
	switch k {
	case "ContentBasedDeduplication":
		c.contentDedup, ok = v == "true", v == "true" || v == "false"
	case "DeduplicationScope":
		c.dedupScope, ok = v, v == "queue" || v == "messageGroup"
	case "FifoThroughputLimit":
		c.throughputLimit, ok = v, v == "perQueue" || v == "perMessageGroupId"
	}
	if !ok {
		return errInvalidAttributeValue("Invalid value for the parameter %s.", k)
	}
	return nil
}

// RedrivePolicy returns the JSON of a RedrivePolicy attribute that sends a
// message to the queue dlqARN once it has been received maxReceiveCount
// times without being deleted.
func RedrivePolicy(dlqARN string, maxReceiveCount int) string {
	b, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlqARN, "maxReceiveCount": maxReceiveCount})
	return string(b)
}

// Queue attribute names GetQueueAttributes knows, in the order "All" lists
// them.
var queueAttributeNames = []string{
	"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
	"ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp",
	"VisibilityTimeout", "DelaySeconds", "ReceiveMessageWaitTimeSeconds", "MessageRetentionPeriod",
	"MaximumMessageSize", "RedrivePolicy", "FifoQueue", "ContentBasedDeduplication",
	"DeduplicationScope", "FifoThroughputLimit", "Policy", "KmsMasterKeyId",
	"KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled", "RedriveAllowPolicy",
}

// attributeLocked returns one attribute of q, and whether q has it.
func (q *queue) attributeLocked(name string) (string, bool) {
	c := &q.cfg
	itoa := strconv.Itoa
	switch name {
	case "QueueArn":
		return q.arn, true
	case "ApproximateNumberOfMessages":
		return itoa(q.nVisible), true
	case "ApproximateNumberOfMessagesNotVisible":
		return itoa(q.nInFlight), true
	case "ApproximateNumberOfMessagesDelayed":
		return itoa(q.nDelayed), true
	case "CreatedTimestamp":
		return strconv.FormatInt(q.created.Unix(), 10), true
	case "LastModifiedTimestamp":
		return strconv.FormatInt(q.lastModified.Unix(), 10), true
	case "VisibilityTimeout":
		return itoa(c.visibility), true
	case "DelaySeconds":
		return itoa(c.delay), true
	case "ReceiveMessageWaitTimeSeconds":
		return itoa(c.wait), true
	case "MessageRetentionPeriod":
		return itoa(c.retention), true
	case "MaximumMessageSize":
		return itoa(c.maxSize), true
	case "RedrivePolicy":
		return c.redrivePolicy, c.redrivePolicy != ""
	case "FifoQueue":
		return "true", c.fifo
	case "ContentBasedDeduplication":
		return strconv.FormatBool(c.contentDedup), c.fifo
	case "DeduplicationScope":
		return c.dedupScope, c.fifo
	case "FifoThroughputLimit":
		return c.throughputLimit, c.fifo
	}
	v, ok := c.other[name]
	return v, ok
}

// Message system attributes.
const (
	sysSenderID uint16 = 1 << iota
	sysSentTimestamp
	sysApproximateReceiveCount
	sysApproximateFirstReceiveTimestamp
	sysSequenceNumber
	sysMessageDeduplicationID
	sysMessageGroupID
	sysAWSTraceHeader
	sysDeadLetterQueueSourceArn
	sysAll = 1<<iota - 1
)

var systemAttributeBits = map[string]uint16{
	"All":                              sysAll,
	"SenderId":                         sysSenderID,
	"SentTimestamp":                    sysSentTimestamp,
	"ApproximateReceiveCount":          sysApproximateReceiveCount,
	"ApproximateFirstReceiveTimestamp": sysApproximateFirstReceiveTimestamp,
	"SequenceNumber":                   sysSequenceNumber,
	"MessageDeduplicationId":           sysMessageDeduplicationID,
	"MessageGroupId":                   sysMessageGroupID,
	"AWSTraceHeader":                   sysAWSTraceHeader,
	"DeadLetterQueueSourceArn":         sysDeadLetterQueueSourceArn,
}

// systemAttributeMask combines the names asked for through the deprecated
// AttributeNames and through MessageSystemAttributeNames. Names that are not
// message system attributes are ignored, as SQS does.
func systemAttributeMask(a []types.QueueAttributeName, b []types.MessageSystemAttributeName) uint16 {
	var mask uint16
	for _, n := range a {
		mask |= systemAttributeBits[string(n)]
	}
	for _, n := range b {
		mask |= systemAttributeBits[string(n)]
	}
	return mask
}

func (f *Fake) systemAttributes(m *message, mask uint16) map[string]string {
	if mask == 0 {
		return nil
	}
	out := make(map[string]string, 8)
	put := func(bit uint16, name, v string) {
		if mask&bit != 0 && v != "" {
			out[name] = v
		}
	}
	millis := func(t int64) string { return strconv.FormatInt(t, 10) }
	put(sysSenderID, "SenderId", f.account)
	put(sysSentTimestamp, "SentTimestamp", millis(m.sentAt.UnixMilli()))
	put(sysApproximateReceiveCount, "ApproximateReceiveCount", strconv.Itoa(m.receiveCount))
	put(sysApproximateFirstReceiveTimestamp, "ApproximateFirstReceiveTimestamp", millis(m.firstReceive.UnixMilli()))
	put(sysSequenceNumber, "SequenceNumber", m.seq)
	put(sysMessageDeduplicationID, "MessageDeduplicationId", m.dedupID)
	put(sysMessageGroupID, "MessageGroupId", m.groupID)
	if m.traceHeader != nil {
		put(sysAWSTraceHeader, "AWSTraceHeader", *m.traceHeader)
	}
	put(sysDeadLetterQueueSourceArn, "DeadLetterQueueSourceArn", m.dlqSource)
	return out
}

// selectMessageAttributes returns copies of the attributes that names
// select: "All", ".*", an exact name, or "prefix.*".
func selectMessageAttributes(attrs map[string]types.MessageAttributeValue, names []string) map[string]types.MessageAttributeValue {
	if len(attrs) == 0 || len(names) == 0 {
		return nil
	}
	var out map[string]types.MessageAttributeValue
	for name, v := range attrs {
		if !attributeSelected(name, names) {
			continue
		}
		if out == nil {
			out = make(map[string]types.MessageAttributeValue, len(attrs))
		}
		out[name] = copyAttributeValue(v)
	}
	return out
}

func attributeSelected(name string, names []string) bool {
	for _, sel := range names {
		if sel == "All" || sel == ".*" || sel == name {
			return true
		}
		if prefix, ok := strings.CutSuffix(sel, "*"); ok && strings.HasSuffix(prefix, ".") && strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

func copyAttributeValue(v types.MessageAttributeValue) types.MessageAttributeValue {
	return types.MessageAttributeValue{
		DataType:         copyPtr(v.DataType),
		StringValue:      copyPtr(v.StringValue),
		BinaryValue:      slices.Clone(v.BinaryValue),
		StringListValues: slices.Clone(v.StringListValues),
		BinaryListValues: cloneBytesList(v.BinaryListValues),
	}
}

func copyAttributes(attrs map[string]types.MessageAttributeValue) map[string]types.MessageAttributeValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]types.MessageAttributeValue, len(attrs))
	for k, v := range attrs {
		out[k] = copyAttributeValue(v)
	}
	return out
}

func cloneBytesList(l [][]byte) [][]byte {
	if l == nil {
		return nil
	}
	out := make([][]byte, len(l))
	for i, b := range l {
		out[i] = slices.Clone(b)
	}
	return out
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// checkMessageAttributes validates user message attributes as SQS does and
// returns the bytes they count toward the message size.
func checkMessageAttributes(attrs map[string]types.MessageAttributeValue) (int, error) {
	if len(attrs) > maxMessageAttributes {
		return 0, errInvalidParameter("Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), maxMessageAttributes)
	}
	size := 0
	for name, v := range attrs {
		if err := checkAttributeName(name); err != nil {
			return 0, err
		}
		n, err := checkAttributeValue(name, v.DataType, v.StringValue, v.BinaryValue)
		if err != nil {
			return 0, err
		}
		size += len(name) + n
	}
	return size, nil
}

func checkAttributeName(name string) error {
	bad := name == "" || len(name) > 256 || strings.Contains(name, "..") ||
		strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".")
	lower := strings.ToLower(name)
	bad = bad || strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.")
	for _, r := range name {
		if !(r == '-' || r == '_' || r == '.' || r < utf8.RuneSelf && isAlnum(byte(r))) {
			bad = true
		}
	}
	if bad {
		return errInvalidParameter("Message (user) attribute name '%s' is invalid.", name)
	}
	return nil
}

// checkAttributeValue validates one attribute value and returns the bytes
// its data type and value count toward the message size.
func checkAttributeValue(name string, dataType, str *string, bin []byte) (int, error) {
	if dataType == nil || *dataType == "" {
		return 0, errInvalidParameter("The message attribute '%s' must contain non-empty message attribute type.", name)
	}
	base, _, _ := strings.Cut(*dataType, ".")
	switch base {
	case "String", "Number":
		if str == nil || *str == "" {
			return 0, errInvalidParameter("The message attribute '%s' with type '%s' must use field 'String'.", name, base)
		}
		if base == "Number" {
			if _, err := strconv.ParseFloat(*str, 64); err != nil {
				return 0, errInvalidParameter("Can't cast the value of message (user) attribute '%s' to a number.", name)
			}
		}
		if err := checkMessageChars(*str); err != nil {
			return 0, err
		}
		return len(*dataType) + len(*str), nil
	case "Binary":
		if len(bin) == 0 {
			return 0, errInvalidParameter("The message attribute '%s' with type 'Binary' must use field 'Binary'.", name)
		}
		return len(*dataType) + len(bin), nil
	}
	return 0, errInvalidParameter("The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// checkMessageChars allows what SQS allows: #x9 | #xA | #xD | #x20 to #xD7FF
// | #xE000 to #xFFFD | #x10000 to #x10FFFF, as valid UTF-8.
func checkMessageChars(s string) error {
	s = s[ascii.PrintablePrefix(s):] // printable ASCII is all allowed
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return errInvalidMessageContents("Invalid binary character in the message body: not valid UTF-8.")
			}
		}
		if r < 0x20 && r != 0x9 && r != 0xA && r != 0xD || r >= 0xD800 && r <= 0xDFFF || r == 0xFFFE || r == 0xFFFF {
			return errInvalidMessageContents("Invalid binary character '#x" + strconv.FormatInt(int64(r), 16) + "' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF")
		}
	}
	return nil
}

func md5Hex(s string) string {
	// md5 reads the bytes and keeps none: no copy of the body is needed.
	sum := md5.Sum(unsafe.Slice(unsafe.StringData(s), len(s)))
	var b [2 * md5.Size]byte
	hex.Encode(b[:], sum[:])
	return string(b[:])
}

// md5OfAttributes is SQS's digest of message attributes: for each attribute
// in name order, the length-prefixed name and data type, a transport byte (1
// string, 2 binary) and the length-prefixed value.
func md5OfAttributes(attrs map[string]types.MessageAttributeValue) string {
	if len(attrs) == 0 {
		return ""
	}
	h := md5.New()
	var n [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[name]
		put([]byte(name))
		put([]byte(deref(v.DataType)))
		if v.StringValue != nil {
			h.Write([]byte{1})
			put([]byte(*v.StringValue))
		} else {
			h.Write([]byte{2})
			put(v.BinaryValue)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// checkBatchEntryID validates a batch entry id: 1 to 80 alphanumerics, hyphens and
// underscores.
func checkBatchEntryID(id string) bool {
	if id == "" || len(id) > 80 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// checkFIFOTag validates a MessageGroupId or MessageDeduplicationId: 1 to
// 128 alphanumerics and ASCII punctuation.
func checkFIFOTag(name, v string) error {
	ok := v != "" && len(v) <= 128
	for i := 0; ok && i < len(v); i++ {
		c := v[i]
		ok = c > 0x20 && c < 0x7f
	}
	if !ok {
		return errInvalidParameter("Value %s for parameter %s is invalid. Reason: it must be 1 to 128 alphanumeric or punctuation characters.", v, name)
	}
	return nil
}

// checkQueueName validates a queue name; FIFO names end in ".fifo".
func checkQueueName(name string, fifo bool) error {
	base := name
	if fifo {
		var ok bool
		if base, ok = strings.CutSuffix(name, ".fifo"); !ok {
			return errInvalidParameter("The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.")
		}
	}
	ok := base != "" && len(name) <= 80
	for i := 0; ok && i < len(base); i++ {
		c := base[i]
		ok = isAlnum(c) || c == '-' || c == '_'
	}
	if !ok {
		return errInvalidParameter("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length.")
	}
	return nil
}
