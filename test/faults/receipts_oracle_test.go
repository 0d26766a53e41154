package faults

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// events parses log lines as the children write them ("PROC EVENT ARGS...").
func events(lines ...string) []logEvent {
	evs := make([]logEvent, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		evs = append(evs, logEvent{proc: f[0], kind: f[1], args: f[2:]})
	}
	return evs
}

// TestExplainDLQ feeds the crash suite's oracle recorded receives and logs:
// it must accept a healthy message in the DLQ only when its own failures
// and deliveries cut short by kills spent every receive, and must reject it
// when ErrInProgress (or anything else) spent one.
func TestExplainDLQ(t *testing.T) {
	// Process 1 failed message m once and was killed; process 2 received
	// it and was killed before it logged anything (the receive only the
	// proxy saw); process 3 received it, handled it and was killed mid-Put.
	cut := []receipt{{"1", "m", 7}, {"2", "m", 7}, {"3", "m", 7}}
	cutLog := []string{"1 H m 7 1", "1 E m failing attempt 1 of 1", "3 H m 7 3", "3 W m"}
	killed := map[string]bool{"1": true, "2": true, "3": true}

	for _, tc := range []struct {
		name     string
		receipts []receipt
		log      []string
		killed   map[string]bool
		want     string // "" when explained, else part of the reason
	}{
		{name: "own failure and kills", receipts: cut, log: cutLog, killed: killed},
		{name: "two failures and a kill before the log", receipts: cut[:3], killed: killed,
			log: []string{"1 E m failing attempt 1 of 2", "2 E m failing attempt 2 of 2"}},
		{name: "a success whose delete died with its process", receipts: cut, killed: killed,
			log: append([]string{"2 OK m"}, cutLog...)},
		{name: "ErrInProgress spent a receive", receipts: cut, killed: killed,
			log:  append([]string{"2 E m retry after 1.2s: sink: idempotency key in progress"}, cutLog...),
			want: "ErrInProgress"},
		{name: "ErrInProgress in a process that was killed later", receipts: append(cut[:2:2], receipt{"1", "m", 7}), killed: killed,
			log:  []string{"1 E m failing attempt 1 of 1", "1 E m sink: idempotency key in progress"},
			want: "ErrInProgress"},
		{name: "a receive without outcome by a process that lived on", receipts: cut, log: cutLog,
			killed: map[string]bool{"1": true, "2": true}, want: "lived on"},
		{name: "another error", receipts: cut, killed: killed,
			log: append([]string{"2 E m context deadline exceeded"}, cutLog...), want: "error"},
		{name: "fewer receives than the redrive policy", receipts: cut[:2], log: cutLog, killed: killed, want: "2 receives"},
		{name: "outcomes the receives do not account for", receipts: cut, killed: killed,
			log: append([]string{"1 E m failing attempt 2 of 2"}, cutLog...), want: "more than receives"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Another message's receives and outcomes must not count.
			receipts := append([]receipt{{"2", "x", 8}, {"2", "x", 8}}, tc.receipts...)
			log := append([]string{"2 E x sink: idempotency key in progress", "2 OK x"}, tc.log...)
			explained, unexplained := explainDLQ(receipts, events(log...), tc.killed, 3, []int{7})
			if tc.want == "" {
				assert.Empty(t, unexplained)
				assert.Len(t, explained, 1)
				return
			}
			assert.Empty(t, explained)
			if assert.Len(t, unexplained, 1) {
				assert.Contains(t, unexplained[0], tc.want)
			}
		})
	}
}
