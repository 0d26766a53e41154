package sink

import (
	"sync"
	"time"
)

// earlyCutFill is the average fill, of the items a batch may hold, that
// early cuts of partial batches must keep (see batch.Options.TargetItems):
// 90 % of 25 items is at most 45 calls per 1,000 items.
const earlyCutFill = 0.9

// callersWindow is how long the most callers seen waiting at once counts as
// the number of callers the sink has.
const callersWindow = time.Second

// callers counts the Puts waiting on the batcher and the most seen waiting
// at once in the current and the last window: once that many wait, every
// caller is waiting and no item is coming for the partial batch.
// (Uncertain: a caller that has not come for a window is forgotten.)
type callers struct {
	mu       sync.Mutex
	waiting  int
	peak     int // this window's
	lastPeak int // the window before's
	since    time.Time
}

// wait counts one more waiting caller.
func (c *callers) wait(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting++
	switch gap := now.Sub(c.since); {
	case gap >= 2*callersWindow: // idle for a window: nothing of old counts
		c.lastPeak, c.peak, c.since = 0, 0, now
	case gap >= callersWindow:
		c.lastPeak, c.peak, c.since = c.peak, 0, now
	}
	c.peak = max(c.peak, c.waiting)
}

// allWaiting reports whether every caller seen lately is waiting. It needs
// a whole window seen first: while callers start up, the count of those
// seen so far says little about how many there are.
func (c *callers) allWaiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastPeak > 0 && c.waiting >= max(c.peak, c.lastPeak)
}

// leave counts one waiting caller less: its items are settled or it gave up.
func (c *callers) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting--
}
