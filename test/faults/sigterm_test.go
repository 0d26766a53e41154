package faults

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sqspool/sqspool/sqsfake"
)

// abandonGrace is how long a stop waits, past its deadline, for the
// handlers it cancelled to return (pool.go); the stop's bound is the
// deadline plus this.
const abandonGrace = time.Second

// TestSIGTERM is scenario 3: the child consumer gets SIGTERM while
// handlers run. A graceful stop finishes the running handlers, flushes
// their deletes (no completed message is ever handled again), gives the
// received but unstarted messages back at once (visible right after the
// exit, not after their visibility timeout), and exits within the
// configured deadline. Handlers that outlast the deadline are cancelled;
// one that ignores cancellation is abandoned one grace second later.
//
// The queue is FIFO with four groups and the child receives two messages
// at a time, so that each group has one message running and one waiting
// behind it: those four are the unstarted ones. The child runs one poller
// and holds one message per worker (no heartbeat), which keeps this so on
// the emulator too, which does not lock a group while it is in flight.
func TestSIGTERM(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		const n, groups, deadline = 40, 4, 5 * time.Second
		url := b.newQueue(t, "sigterm", map[string]string{"FifoQueue": "true", "VisibilityTimeout": "30"})
		b.sendBatch(t, url, jobEntries(n, groups))
		logPath := filepath.Join(t.TempDir(), "events.log")
		common := []string{"-queue", url, "-log", logPath, "-wait", "1s"}

		first := startChild(t, b.env, append(common, "-workers", "8", "-max", "2", "-pollers", "1", "-heartbeat=false", "-work", "1500ms", "-shutdown", deadline.String())...)
		eventually(t, 30*time.Second, "8 messages received and 4 handlers running", func() bool {
			evs := readEvents(t, logPath)
			_, received := count(evs, "", "R")
			running, _ := count(evs, "", "H")
			return received >= 2*groups && running >= groups
		})
		if b.fake != nil {
			// The final flush meets a failed DeleteMessageBatch call first.
			b.fake.FailNext(sqsfake.OpDeleteMessageBatch, 1, nil)
		}
		sent := first.signal(t, syscall.SIGTERM)
		code := first.wait(t, 30*time.Second)
		took := first.exited.Sub(sent)
		visible, inFlight, _ := b.depth(t, url) // right after the exit
		evs := readEvents(t, logPath)
		x := lastExit(t, evs, first.pid())
		assert.Equal(t, 0, code, "clean exit; stderr: %s", first.stderr.String())
		assert.Equal(t, "nil", x.err)
		assert.Less(t, took, deadline, "exit within the shutdown deadline")
		h, _ := count(evs, first.pid(), "H")
		ok, _ := count(evs, first.pid(), "OK")
		assert.Equal(t, groups, h, "one running handler per group")
		assert.Equal(t, groups, ok, "every running handler finished")
		assert.EqualValues(t, groups, x.stats.Processed)
		assert.EqualValues(t, groups, x.stats.Deleted, "deletes flushed before the exit")
		assert.EqualValues(t, groups, x.stats.Returned, "the waiting message of each group given back")
		assert.Equal(t, x.stats.Received, x.stats.Processed+x.stats.Returned, "every received message finished or given back")
		assert.Zero(t, inFlight, "nothing left in flight: unstarted messages visible at once, finished ones deleted")
		assert.Equal(t, n-groups, visible)

		// A second run handles the rest; no message is handled twice.
		second := startChild(t, b.env, append(common, "-workers", "8")...)
		eventually(t, 60*time.Second, "queue drained by the second run", func() bool { return b.empty(t, url) })
		second.signal(t, syscall.SIGTERM)
		assert.Equal(t, 0, second.wait(t, 30*time.Second), "stderr: %s", second.stderr.String())
		evs = readEvents(t, logPath)
		handled := map[string]int{}
		for _, e := range evs {
			if e.kind == "H" {
				handled[e.args[0]]++
			}
		}
		assert.Len(t, handled, n)
		for id, k := range handled {
			assert.Equal(t, 1, k, "message %s handled %d times", id, k)
		}
		ok, _ = count(evs, "", "OK")
		assert.Equal(t, n, ok)

		// Handlers that outlast the deadline: cancelled at the deadline
		// (they return at once), or abandoned after the grace when they
		// ignore cancellation.
		slow := func(deaf bool) (time.Duration, exitLine, int) {
			url := b.newQueue(t, "sigterm-slow", map[string]string{"VisibilityTimeout": "30"})
			b.sendBatch(t, url, jobEntries(4, 0))
			logPath := filepath.Join(t.TempDir(), "slow.log")
			args := []string{"-queue", url, "-log", logPath, "-wait", "1s", "-workers", "4", "-work", "20s", "-shutdown", "1s"}
			if deaf {
				args = append(args, "-deaf")
			}
			c := startChild(t, b.env, args...)
			eventually(t, 30*time.Second, "4 handlers running", func() bool {
				h, _ := count(readEvents(t, logPath), "", "H")
				return h == 4
			})
			sent := c.signal(t, syscall.SIGTERM)
			code := c.wait(t, 30*time.Second)
			return c.exited.Sub(sent), lastExit(t, readEvents(t, logPath), c.pid()), code
		}
		cancelTook, cx, cancelCode := slow(false)
		assert.Equal(t, 3, cancelCode, "a stop cut short exits 3")
		assert.Contains(t, cx.err, "4_handlers_cancelled")
		assert.NotContains(t, cx.err, "still_running")
		assert.GreaterOrEqual(t, cancelTook, time.Second)
		assert.Less(t, cancelTook, time.Second+abandonGrace, "handlers that honour cancellation end the stop at the deadline")
		assert.Zero(t, cx.stats.Deleted, "cancelled work is not deleted")

		deafTook, dx, deafCode := slow(true)
		assert.Equal(t, 3, deafCode)
		assert.Contains(t, dx.err, "4_handlers_still_running")
		assert.GreaterOrEqual(t, deafTook, time.Second+abandonGrace)
		assert.Less(t, deafTook, time.Second+abandonGrace+time.Second, "a hung handler holds the exit for the grace only")

		figures(t, "scenario 3 ("+b.name+"): SIGTERM",
			fmt.Sprintf("in-flight work done: SIGTERM to exit %v (handlers had ~1.5s of work left at most; deadline %v); child's own stop %dms; %d finished and deleted, %d returned unstarted, %d visible and %d in flight right after the exit",
				took.Round(time.Millisecond), deadline, x.millis, x.stats.Processed, x.stats.Returned, visible, inFlight),
			fmt.Sprintf("handlers past the deadline (1s): honouring cancellation, exit after %v (%s); ignoring it, exit after %v (%s)",
				cancelTook.Round(time.Millisecond), strings.ReplaceAll(cx.err, "_", " "), deafTook.Round(time.Millisecond), strings.ReplaceAll(dx.err, "_", " ")),
			fmt.Sprintf("handler calls per message over both runs: %d messages, each once", len(handled)),
		)
	})
}
