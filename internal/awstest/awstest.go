// Package awstest gives integration tests real AWS SDK clients and
// throw-away SQS queues (internal/ddbtest, a module of its own so that the
// root module does not require the DynamoDB SDK, adds DynamoDB tables). It
// is for tests only.
//
// Integration tests run only when SQSPOOL_INTEGRATION is set to a true value
// (1, true); otherwise every helper here skips the test. ./scripts/test
// starts local emulators (local-aws-sqs for SQS, dynalite for DynamoDB; see
// scripts/emulators.sh) and sets SQSPOOL_INTEGRATION=1 together with
// AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_DYNAMODB.
//
// Nothing here is tied to the emulators: clients come from the SDK's default
// configuration chain (config.LoadDefaultConfig), so the same tests run
// against real AWS when SQSPOOL_INTEGRATION=1 is set with real credentials
// and no endpoint overrides. Every queue and table gets a unique name and is
// deleted when the test ends.
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/sdkhttp"
)

// EnvIntegration is the variable that turns integration tests on.
const EnvIntegration = "SQSPOOL_INTEGRATION"

// SkipMessage is why integration tests skip when EnvIntegration is not set.
const SkipMessage = "integration tests need SQSPOOL_INTEGRATION=1 and AWS endpoints; run ./scripts/test"

// Timeouts for one control-plane call (create, delete, attributes) and for
// waiting until a new table is ACTIVE. Emulators answer in milliseconds; real
// AWS creates an on-demand table in a few seconds.
const (
	CallTimeout  = 15 * time.Second
	TableTimeout = 2 * time.Minute
)

// Enabled reports whether integration tests should run: SQSPOOL_INTEGRATION
// holds a true value as understood by strconv.ParseBool (1, t, true, ...).
func Enabled() bool {
	on, err := strconv.ParseBool(os.Getenv(EnvIntegration))
	return err == nil && on
}

// Config skips the test unless integration tests are enabled, and otherwise
// returns the SDK's default configuration: region, credentials and
// endpoints from the environment and shared config files, including
// AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_DYNAMODB.
func Config(t testing.TB) aws.Config {
	t.Helper()
	if !Enabled() {
		t.Skip(SkipMessage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatalf("awstest: loading AWS config: %v", err)
	}
	if cfg.Region == "" {
		t.Fatalf("awstest: %s is set but no AWS region is configured (set AWS_REGION)", EnvIntegration)
	}
	// Emulators answer quickly enough to meet the SDK race that cuts a
	// response and retries the call (see internal/sdkhttp): a ReceiveMessage
	// retried so leaves its messages in flight for a visibility timeout.
	cfg.HTTPClient = sdkhttp.Wrap(cfg.HTTPClient)
	return cfg
}

// SQS returns an SQS client from Config (skipping the test when integration
// tests are off).
func SQS(t testing.TB) *sqs.Client {
	t.Helper()
	return sqs.NewFromConfig(Config(t))
}

// NewQueue creates a queue named namePrefix plus a random suffix (namePrefix
// may be empty) with the given attributes (nil for none) and deletes it when
// the test ends. It is a FIFO queue, with the ".fifo" suffix, when attrs has
// FifoQueue=true. It returns the queue URL.
func NewQueue(t testing.TB, client *sqs.Client, namePrefix string, attrs map[string]string) (url string) {
	t.Helper()
	name := UniqueName(namePrefix, "sqspool-test", 80-len(".fifo"))
	if isFIFO(attrs) {
		name += ".fifo"
	}
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: attrs,
	})
	if err != nil {
		t.Fatalf("awstest: creating queue %s: %v", name, err)
	}
	url = aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
		defer cancel()
		_, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		var gone *sqstypes.QueueDoesNotExist
		if err != nil && !errors.As(err, &gone) {
			t.Errorf("awstest: deleting queue %s: %v", url, err)
		}
	})
	return url
}

// NewQueueWithDLQ creates a dead-letter queue and a source queue whose
// RedrivePolicy moves a message to it once it has been received more than
// maxReceiveCount times. attrs (nil for none) apply to the source queue; if
// they make it FIFO, the DLQ is FIFO too, as SQS requires. Both queues are
// deleted when the test ends.
func NewQueueWithDLQ(t testing.TB, client *sqs.Client, maxReceiveCount int, attrs map[string]string) (url, dlqURL string) {
	t.Helper()
	var dlqAttrs map[string]string
	if isFIFO(attrs) {
		dlqAttrs = map[string]string{string(sqstypes.QueueAttributeNameFifoQueue): "true"}
	}
	dlqURL = NewQueue(t, client, "sqspool-test-dlq", dlqAttrs)
	dlqARN := QueueARN(t, client, dlqURL)

	policy, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": dlqARN,
		"maxReceiveCount":     strconv.Itoa(maxReceiveCount),
	})
	if err != nil {
		t.Fatalf("awstest: encoding redrive policy: %v", err)
	}
	srcAttrs := make(map[string]string, len(attrs)+1)
	for k, v := range attrs {
		srcAttrs[k] = v
	}
	srcAttrs[string(sqstypes.QueueAttributeNameRedrivePolicy)] = string(policy)
	url = NewQueue(t, client, "sqspool-test-src", srcAttrs)
	return url, dlqURL
}

// QueueARN returns the ARN of the queue at url.
func QueueARN(t testing.TB, client *sqs.Client, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("awstest: reading QueueArn of %s: %v", url, err)
	}
	arn := out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if arn == "" {
		t.Fatalf("awstest: queue %s has no QueueArn attribute", url)
	}
	return arn
}

// isFIFO reports whether queue attributes ask for a FIFO queue.
func isFIFO(attrs map[string]string) bool {
	return strings.EqualFold(attrs[string(sqstypes.QueueAttributeNameFifoQueue)], "true")
}

// UniqueName returns prefix (or def if prefix is empty), reduced to the
// characters both SQS and DynamoDB allow in names, plus "-" and 12 random hex
// digits, in at most maxLen characters.
func UniqueName(prefix, def string, maxLen int) string {
	if prefix == "" {
		prefix = def
	}
	var b strings.Builder
	for _, r := range prefix {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix) // crypto/rand.Read never fails (Go 1.24+).
	tail := "-" + hex.EncodeToString(suffix)
	clean := b.String()
	if len(clean) > maxLen-len(tail) {
		clean = clean[:maxLen-len(tail)]
	}
	return clean + tail
}
