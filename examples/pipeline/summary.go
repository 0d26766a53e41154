package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/sink"
)

// Summary is what flowed through one run.
type Summary struct {
	Requests    int  // requests the run was to send
	Interrupted bool // the run was stopped early (SIGINT)
	Sent        int  // requests the load generator sent (retries not counted)
	Accepted    int  // requests answered 202: messages in the queue
	// CutShort counts requests whose answer the stop cut off: their
	// messages may or may not be in the queue. Sent - Accepted - CutShort
	// requests were refused.
	CutShort int
	Retries  int // requests sent again after a 503
	Stored   int // distinct requests whose result is durable
	// QueueVisible and QueueInFlight are the messages left in the queue
	// after the stop.
	QueueVisible, QueueInFlight int
	Elapsed                     time.Duration

	Catcher catcher.Stats
	Pool    sqspool.Stats
	Sink    sink.DynamoDBStats
}

// SQSCalls counts the SQS requests of the catcher and the pool by API.
func (s Summary) SQSCalls() map[string]int64 {
	calls := maps.Clone(s.Pool.Calls)
	calls["SendMessageBatch"] = int64(s.Catcher.Calls)
	return calls
}

// DynamoDBCalls counts the sink's DynamoDB requests by API.
func (s Summary) DynamoDBCalls() map[string]int64 {
	d := s.Sink
	calls := map[string]int64{
		"BatchWriteItem": d.BatchWriteItemCalls, "PutItem": d.PutItemCalls, "UpdateItem": d.UpdateItemCalls,
		"DeleteItem": d.DeleteItemCalls, "GetItem": d.GetItemCalls,
	}
	maps.DeleteFunc(calls, func(_ string, n int64) bool { return n == 0 })
	return calls
}

// Print writes the summary for people.
func (s Summary) Print(w io.Writer) {
	var rejected uint64
	for _, n := range s.Catcher.Rejected {
		rejected += n
	}
	p := s.Pool
	if s.Interrupted {
		fmt.Fprintf(w, "interrupted after %d of %d requests, in %v\n", s.Sent, s.Requests, s.Elapsed.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "%d requests in %v\n", s.Sent, s.Elapsed.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "  clients   %d accepted, %d refused, %d cut short by the stop\n",
		s.Accepted, s.Sent-s.Accepted-s.CutShort, s.CutShort)
	fmt.Fprintf(w, "  catcher   %d accepted, %d rejected, %d retried; %d SendMessageBatch calls (%.0f per 1000 messages)\n",
		s.Catcher.Accepted, rejected, s.Retries, s.Catcher.Calls, s.Catcher.CallsPer1000())
	fmt.Fprintf(w, "  pool      %d received, %d processed, %d failed, %d duplicates dropped; %d deleted\n",
		p.Received, p.Processed, p.Failed, p.Duplicates, p.Deleted)
	fmt.Fprintf(w, "  sink      %d items stored, %d repeats skipped by the idempotency table\n",
		s.Sink.ItemsWritten, s.Sink.DuplicatesSkipped)
	fmt.Fprintf(w, "  queue     %d visible, %d in flight after the stop\n", s.QueueVisible, s.QueueInFlight)
	fmt.Fprintf(w, "  SQS       %s\n", formatCalls(s.SQSCalls(), s.Accepted))
	fmt.Fprintf(w, "  DynamoDB  %s\n", formatCalls(s.DynamoDBCalls(), s.Accepted))
}

// formatCalls lists calls by API with their total per 1000 messages.
func formatCalls(calls map[string]int64, messages int) string {
	var b strings.Builder
	var total int64
	for _, api := range slices.Sorted(maps.Keys(calls)) {
		fmt.Fprintf(&b, "%s %d, ", api, calls[api])
		total += calls[api]
	}
	fmt.Fprintf(&b, "total %d calls", total)
	if messages > 0 {
		fmt.Fprintf(&b, " (%.0f per 1000 messages)", float64(total)*1000/float64(messages))
	}
	return b.String()
}
