package catcher

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDedupTable(t *testing.T) {
	now := epoch
	key := func(id string) digest { return dedupKey("ns", id, "") }
	a, b := fingerprint("ns", "id", "g", []byte("a")), fingerprint("ns", "id", "g", []byte("b"))
	require.NotEqual(t, a, b)
	assert.NotEqual(t, fingerprint("ns", "idg", "", nil), fingerprint("ns", "id", "g", nil), "parts are length-prefixed")

	tb := newDedupTable(2)
	c1, ok := tb.claim(key("1"), a, now)
	require.True(t, ok)
	_, ok = tb.claim(key("1"), b, now)
	assert.False(t, ok, "in progress with another message")
	c2, ok := tb.claim(key("1"), a, now)
	require.True(t, ok, "the same message may be in progress twice")
	tb.release(c2, false, now)
	tb.release(c1, false, now)
	c3, ok := tb.claim(key("1"), b, now)
	require.True(t, ok, "never stored: the id is free again")
	tb.release(c3, true, now)

	_, ok = tb.claim(key("1"), a, now.Add(dedupWindow-time.Nanosecond))
	assert.False(t, ok, "stored: the id stands for b for the window")
	c4, ok := tb.claim(key("1"), a, now.Add(dedupWindow))
	require.True(t, ok, "the window is over")
	tb.release(c4, false, now.Add(dedupWindow))
	assert.Empty(t, tb.entries)
	assert.Empty(t, tb.order)

	// Past max entries the oldest stored ids are forgotten.
	for _, id := range []string{"x", "y", "z"} {
		c, ok := tb.claim(key(id), a, now)
		require.True(t, ok)
		tb.release(c, true, now)
	}
	assert.Len(t, tb.entries, 2)
	_, ok = tb.claim(key("x"), b, now)
	assert.True(t, ok, "x was forgotten")
	_, ok = tb.claim(key("z"), b, now)
	assert.False(t, ok, "z is remembered")
}
