package otelsqspool

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

func TestParseTraceHeader(t *testing.T) {
	const (
		traceID = "5759e988bd862e3fe1be46a994272793"
		spanID  = "53995c3f42cd8ad8"
	)
	for _, c := range []struct {
		header  string
		ok      bool
		sampled bool
	}{
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", true, true},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", true, false},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?", true, false},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", true, false},
		{"Sampled=1;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793", true, true},
		{"Root=1-5759E988-BD862E3FE1BE46A994272793; Parent=53995C3F42CD8AD8; Sampled=1", true, true},
		{"Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5", true, true},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", false, false},               // no parent
		{"Parent=53995c3f42cd8ad8;Sampled=1", false, false},                                // no root
		{"Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", false, false}, // version
		{"Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8", false, false},  // short
		{"Root=1-5759e988xbd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", false, false}, // separator
		{"Root=1-5759e988-bd862e3fe1be46a99427279g;Parent=53995c3f42cd8ad8", false, false}, // not hex
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad", false, false},  // short parent
		{"Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8", false, false}, // zero trace id
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000", false, false}, // zero span id
		{"", false, false},
		{";;=;Root", false, false},
	} {
		t.Run(c.header, func(t *testing.T) {
			sc, ok := parseTraceHeader(c.header)
			assert.Equal(t, c.ok, ok)
			if !c.ok {
				return
			}
			assert.Equal(t, traceID, sc.TraceID().String())
			assert.Equal(t, spanID, sc.SpanID().String())
			assert.Equal(t, c.sampled, sc.IsSampled())
			assert.True(t, sc.IsRemote())
		})
	}
}

func FuzzParseTraceHeader(f *testing.F) {
	f.Add("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	f.Add("Root=1-;Parent=;Sampled=")
	f.Fuzz(func(t *testing.T, h string) {
		sc, ok := parseTraceHeader(h)
		if ok != sc.IsValid() {
			t.Fatalf("ok %v but valid %v", ok, sc.IsValid())
		}
		if ok && sc.TraceFlags()&^trace.FlagsSampled != 0 {
			t.Fatalf("flags %v", sc.TraceFlags())
		}
	})
}

type typedError struct{}

func (typedError) Error() string { return "typed" }

func TestErrorType(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue"}, "AWS.SimpleQueueService.NonExistentQueue"},
		{fmt.Errorf("delete: %w", &smithy.OperationError{OperationName: "DeleteMessageBatch", Err: &smithy.GenericAPIError{Code: "ThrottlingException"}}), "ThrottlingException"},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), "context.DeadlineExceeded"},
		{context.Canceled, "context.Canceled"},
		{errors.New("plain"), "*errors.errorString"},
		{fmt.Errorf("wrapped: %w", typedError{}), "github.com/sqspool/sqspool/otelsqspool.typedError"},
	} {
		assert.Equal(t, c.want, errorType(c.err), "%v", c.err)
	}
}

func TestQueueName(t *testing.T) {
	assert.Equal(t, "orders", queueName("https://sqs.us-east-1.amazonaws.com/123456789012/orders"))
	assert.Equal(t, "jobs.fifo", queueName("http://localhost:9324/000000000000/jobs.fifo"))
	assert.Equal(t, "bare", queueName("bare"))
}

func TestUsableFallsBackToNoop(t *testing.T) {
	var errs []error
	fallback := metric.Int64Counter(noop.Int64Counter{})
	got := usable[metric.Int64Counter](nil, errors.New("bad name"), &errs, fallback)
	assert.Equal(t, fallback, got)
	assert.Len(t, errs, 1)
	got.Add(context.Background(), 1) // usable, not nil
}
