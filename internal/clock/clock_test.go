package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestManualFiresTimersInOrderWhenAdvanced(t *testing.T) {
	start := time.Unix(1000, 0)
	m := NewManual(start)
	late := m.NewTimer(2 * time.Second)
	early := m.NewTimer(time.Second)
	ran := make(chan struct{})
	m.AfterFunc(1500*time.Millisecond, func() { close(ran) })
	require.Equal(t, 3, m.Timers())

	m.Advance(time.Second)
	assert.Equal(t, start.Add(time.Second), <-early.C())
	select {
	case <-late.C():
		t.Fatal("timer fired early")
	default:
	}
	m.Advance(time.Second)
	<-ran
	assert.Equal(t, start.Add(2*time.Second), <-late.C())
	assert.Zero(t, m.Timers())
}

func TestManualStop(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	tm := m.NewTimer(time.Second)
	assert.True(t, tm.Stop())
	assert.False(t, tm.Stop(), "a stopped timer stops once")
	m.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("stopped timer fired")
	default:
	}
}

func TestBlockUntilWaitsForArmedTimers(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	armed := make(chan struct{})
	go func() {
		defer close(armed)
		m.NewTimer(time.Minute)
	}()
	assert.True(t, m.BlockUntil(1, nil))
	<-armed
	done := make(chan struct{})
	close(done)
	assert.False(t, m.BlockUntil(5, done), "BlockUntil gives up when done is closed")
}

func TestZeroDurationFiresAtOnce(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	tm := m.NewTimer(0)
	<-tm.C()
	assert.Zero(t, m.Timers())
}

func TestRealClock(t *testing.T) {
	tm := Real.NewTimer(time.Millisecond)
	<-tm.C()
	done := make(chan struct{})
	Real.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	assert.WithinDuration(t, time.Now(), Real.Now(), time.Second)
}
