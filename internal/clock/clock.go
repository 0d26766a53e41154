// Package clock is the small time abstraction sqspool and its fakes share, so
// that visibility timeouts, delete lingers and backoffs can be driven by a
// manual clock in tests instead of by sleeping.
//
// Production code uses Real. Tests use NewManual and move time with Advance;
// BlockUntil lets a test wait, without sleeping, until the code under test has
// armed the timers it expects.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and arms timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer whose channel receives once after d.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the part of *time.Timer that sqspool uses.
type Timer interface {
	// C is nil for timers made by AfterFunc.
	C() <-chan time.Time
	// Stop reports whether it stopped the timer before it fired.
	Stop() bool
}

// Real is the wall clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// Manual is a clock that moves only when Advance is called. It is safe for
// concurrent use.
type Manual struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*manualTimer
	changed chan struct{} // closed and replaced whenever the timer set changes
}

// NewManual returns a manual clock that reads start.
func NewManual(start time.Time) *Manual {
	return &Manual{now: start, changed: make(chan struct{})}
}

// Now returns the clock's current time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// NewTimer arms a timer that fires when the clock is advanced past d.
func (m *Manual) NewTimer(d time.Duration) Timer {
	return m.add(d, make(chan time.Time, 1), nil)
}

// AfterFunc arms f to run, in its own goroutine, when the clock passes d.
func (m *Manual) AfterFunc(d time.Duration, f func()) Timer {
	return m.add(d, nil, f)
}

func (m *Manual) add(d time.Duration, c chan time.Time, f func()) *manualTimer {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &manualTimer{clock: m, when: m.now.Add(d), c: c, f: f}
	if d <= 0 {
		t.fire(m.now)
		return t
	}
	m.timers = append(m.timers, t)
	m.notifyLocked()
	return t
}

// Advance moves the clock forward by d and fires every timer that is due, in
// deadline order.
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(d)
	sort.SliceStable(m.timers, func(i, j int) bool { return m.timers[i].when.Before(m.timers[j].when) })
	kept := m.timers[:0]
	for _, t := range m.timers {
		if t.when.After(m.now) {
			kept = append(kept, t)
			continue
		}
		t.fire(m.now)
	}
	clear(m.timers[len(kept):])
	m.timers = kept
	m.notifyLocked()
}

// Timers returns how many timers are armed and not yet fired or stopped.
func (m *Manual) Timers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

// BlockUntil waits until at least n timers are armed, or done is closed. It
// reports whether the count was reached. Tests use it to know that the code
// under test is waiting on the clock before they Advance it.
func (m *Manual) BlockUntil(n int, done <-chan struct{}) bool {
	for {
		m.mu.Lock()
		if len(m.timers) >= n {
			m.mu.Unlock()
			return true
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}

func (m *Manual) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

type manualTimer struct {
	clock *Manual
	when  time.Time
	c     chan time.Time
	f     func()
}

// fire runs with the clock's lock held.
func (t *manualTimer) fire(now time.Time) {
	if t.f != nil {
		go t.f()
		return
	}
	select {
	case t.c <- now:
	default:
	}
}

func (t *manualTimer) C() <-chan time.Time { return t.c }

func (t *manualTimer) Stop() bool {
	m := t.clock
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, o := range m.timers {
		if o == t {
			m.timers = append(m.timers[:i], m.timers[i+1:]...)
			m.notifyLocked()
			return true
		}
	}
	return false
}
